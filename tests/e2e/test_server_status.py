"""`server_status` (issue 10 item 8): version, transport, uptime, data dir, kernels by state,
warm pool, queue depth, sessions and storage, as structured content matching the tool's
outputSchema, and a text for the model."""

from __future__ import annotations

import jsonschema
import pytest

from helpers import text_of


@pytest.mark.timeout(120)
def test_server_status_reports_the_server(mcp):
    async def body(c):
        tools = {t.name: t for t in (await c.session.list_tools()).tools}
        schema = tools["server_status"].output_schema
        assert schema, "server_status declares an outputSchema"

        first = await c.ok("server_status")
        jsonschema.validate(first, schema)
        assert first["transport"] == "stdio"
        assert first["sessions"] == 1
        assert first["storage"] == "ok"
        assert first["data_dir"] == str(c.data)
        assert first["version"]
        assert first["kernels"] == {} and first["kernels_total"] == 0
        assert first["queue_depth"] == 0
        assert first["pool"] == {"size": 0, "ready": 0, "pids": []}
        assert first["uptime_seconds"] >= 0

        # A kernel and a queued execution show up.
        await c.ok("create_notebook", notebook="s.ipynb")
        await c.ok("execute_code", notebook="s.ipynb", code="1 + 1")
        slow = await c.ok("execute_code", notebook="s.ipynb", code="import time; time.sleep(30)", timeout_s=0)
        queued = await c.ok("execute_code", notebook="s.ipynb", code="2 + 2", timeout_s=0)
        busy = await c.ok("server_status")
        jsonschema.validate(busy, schema)
        assert busy["kernels_total"] == 1
        assert busy["kernels"].get("busy", 0) + busy["kernels"].get("idle", 0) == 1, busy
        assert busy["queue_depth"] >= 1, "the second execution waits behind the sleeping one"
        assert busy["uptime_seconds"] >= first["uptime_seconds"]
        _, res = await c.call("server_status")
        assert "stdio" in text_of(res) and "queued executions" in text_of(res)

        await c.ok("cancel_execution", execution_id=queued["execution_id"])
        await c.ok("cancel_execution", execution_id=slow["execution_id"])
        after = await c.ok("server_status")
        assert after["queue_depth"] == 0
        assert after["kernels"] == {"idle": 1}, after

    mcp.run(body)
