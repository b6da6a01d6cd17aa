"""Outputs and assets (SPEC §4, issue 4): bounded text with paging through read_asset,
images as MCP image content plus resources, resources/list and resources/read, refusals of
paths that leave the assets dir, garbage collection with leases, and --offload-outputs-over."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct

import anyio
import nbformat
import pytest

from helpers import cell_by_id, images_of, read_nb, text_of, validate_file, write_nb
from mcp import types
from mcp.shared.exceptions import MCPError

INLINE = 8 * 1024


def links_of(result) -> list[types.ResourceLink]:
    return [i for i in (result.content or []) if getattr(i, "type", None) == "resource_link"]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


async def read_all_pages(c, uri: str, limit: int | None = None) -> tuple[str, int]:
    """Concatenates read_asset pages from offset 0 to eof; returns (text, pages)."""
    offset, parts, pages = 0, [], 0
    while True:
        args = {"asset": uri, "offset": offset}
        if limit:
            args["limit"] = limit
        p = await c.ok("read_asset", **args)
        assert p["offset"] == offset, p
        parts.append(p["text"])
        pages += 1
        if p["eof"]:
            return "".join(parts), pages
        assert p["next_offset"] > offset
        offset = p["next_offset"]


@pytest.mark.timeout(120)
def test_long_log_is_bounded_and_paged_back_byte_for_byte(mcp):
    expected = "".join(f"line {i}\n" for i in range(10_000))

    async def body(c):
        sc = await c.ok("create_notebook", notebook="log.ipynb",
                        cells=[{"cell_type": "code", "source": "for i in range(10000):\n    print(f'line {i}')"}])
        r, res = await c.call("execute_cell", notebook="log.ipynb", cell_id=sc["cell_ids"][0], timeout_s=60)
        assert not res.is_error and r["status"] == "completed", r
        [out] = r["outputs"]
        inline = out["text"]
        assert len(inline.encode()) <= INLINE, len(inline.encode())
        assert inline.startswith("line 0\nline 1\n") and inline.endswith("line 9998\nline 9999\n")
        assert out["truncated"]["total_bytes"] == len(expected)
        uri = out["asset"]
        assert uri.startswith("jupyter-mcp://assets/") and uri.endswith(".txt"), out
        assert out["truncated"]["total_lines"] == 10_000
        # The text tells the model what was left out and how to get it.
        text = text_of(res)
        assert f'read_asset(asset="{uri}", offset={out["truncated"]["next_offset"]})' in text, text[-600:]
        assert "bytes omitted" in text
        assert len(text.encode()) <= INLINE + 1024, len(text.encode())
        # A resource link to the whole text.
        assert [str(link.uri) for link in links_of(res)] == [uri]

        # Page by page through read_asset: byte for byte.
        whole, pages = await read_all_pages(c, uri, limit=2500)
        assert whole == expected
        assert pages == 4
        # From the hint's offset: the omitted part and the tail (a page stops at 64 KiB).
        k = out["truncated"]["next_offset"]
        p = await c.ok("read_asset", asset=uri, offset=k, limit=20000)
        assert not p["eof"] and p["text"].startswith(f"line {k}\n") and len(p["text"]) <= 64 * 1024
        assert inline.split("\n... ")[0] + "\n" == "".join(f"line {i}\n" for i in range(k))
        # resources/read gives the same text.
        rr = await c.session.read_resource(uri)
        assert rr.contents[0].text == expected
        assert rr.contents[0].mime_type == "text/plain"
        # resources/list knows it.
        listed = await c.session.list_resources()
        assert uri in [str(x.uri) for x in listed.resources]

    mcp.run(body)


@pytest.mark.timeout(180)
def test_plots_come_back_as_images_and_resources(mcp):
    plot = ("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
    big = ("fig = plt.figure(figsize=(30, 20), dpi=100)\nplt.plot(range(100))\nplt.show()")
    table = "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})"
    nb_path = mcp.root / "plot.ipynb"
    write_nb(nb_path, [("code", plot), ("code", big), ("code", table)])

    async def body(c):
        sc = await c.ok("read_notebook", notebook="plot.ipynb")
        ids = [cell["id"] for cell in sc["cells"]]
        r, res = await c.call("execute_cell", notebook="plot.ipynb", cell_id=ids[0], timeout_s=90)
        assert r["status"] == "completed", r
        [img] = images_of(res)
        assert img.mime_type == "image/png"
        data = base64.b64decode(img.data)
        w, h = png_size(data)
        assert 100 < w <= 1024 and 100 < h <= 1024, (w, h)
        out = [o for o in r["outputs"] if "image/png" in o.get("mime_types", [])][0]
        uri = out["asset"]
        assert uri.endswith(".png")
        assert uri in [str(link.uri) for link in links_of(res)]
        assert any(link.mime_type == "image/png" for link in links_of(res))
        # The resource is the PNG the notebook holds (not re-encoded).
        rr = await c.session.read_resource(uri)
        blob = base64.b64decode(rr.contents[0].blob)
        assert blob == data  # small enough to be shown as is
        on_disk = read_nb(nb_path)
        disk_png = base64.b64decode(cell_by_id(on_disk, ids[0]).outputs[0]["data"]["image/png"])
        assert hashlib.sha256(disk_png).hexdigest() in uri
        # read_asset returns it as image content.
        _, ra = await c.call("read_asset", asset=uri)
        assert not ra.is_error and base64.b64decode(images_of(ra)[0].data) == data

        # A 3000x2000 figure: downscaled for the agent, full size as the asset.
        r, res = await c.call("execute_cell", notebook="plot.ipynb", cell_id=ids[1], timeout_s=90)
        [img] = images_of(res)
        w, h = png_size(base64.b64decode(img.data))
        out = [o for o in r["outputs"] if "image/png" in o.get("mime_types", [])][0]
        rr = await c.session.read_resource(out["asset"])
        fw, fh = png_size(base64.b64decode(rr.contents[0].blob))  # "tight" bbox trims a little
        assert fw > 2000 and fh > 1400, (fw, fh)
        assert max(w, h) == 1024 and abs(w / h - fw / fh) < 0.01, (w, h, fw, fh)
        assert f"PNG {fw}x{fh}, shown at {w}x{h}" in text_of(res)

        # A DataFrame: its HTML as an asset with a one-line description, text/plain inline.
        r, res = await c.call("execute_cell", notebook="plot.ipynb", cell_id=ids[2], timeout_s=60)
        [out] = r["outputs"]
        assert out["asset"].endswith(".html") and "a  b" in out["text"]
        assert "pandas DataFrame table (HTML)" in text_of(res)
        rr = await c.session.read_resource(out["asset"])
        assert 'class="dataframe"' in rr.contents[0].text and rr.contents[0].mime_type == "text/html"
        la = await c.ok("list_assets", notebook="plot.ipynb")
        assert la["total"] == 3 and all(a["notebook"] == "plot.ipynb" for a in la["assets"])

    mcp.run(body)


@pytest.mark.timeout(90)
def test_references_that_leave_the_assets_dir_are_refused(mcp):
    outside = mcp.base / "outside"
    outside.mkdir()
    sha = "c" * 64
    (outside / f"{sha}.txt").write_text("secret")

    async def body(c):
        for bad in ["../state.db", "/etc/passwd", "file:///etc/passwd", "../../secret.key",
                    "jupyter-mcp://assets/../../state.db",
                    "jupyter-mcp://assets/0123456789abcdef/../../../secret.key",
                    "jupyter-mcp://assets/0123456789abcdef/" + "a" * 63 + ".png",
                    "jupyter-mcp://assets/0123456789ABCDEF/" + "a" * 64 + ".png",
                    "jupyter-mcp://assets/0123456789abcdef/" + "a" * 64 + ".sh",
                    "https://example.com/x.png", "jupyter-mcp://checkpoints/x"]:
            msg = await c.err("read_asset", asset=bad)
            assert "not an asset reference" in msg, (bad, msg)
            with pytest.raises(MCPError) as exc:
                await c.session.read_resource(bad)
            assert "not an asset reference" in str(exc.value), (bad, exc.value)
        # A notebook folder inside the assets dir that is a symlink to elsewhere.
        (mcp.data / "assets").mkdir(parents=True, exist_ok=True)
        os.symlink(outside, mcp.data / "assets" / "fedcba9876543210")
        evil = f"jupyter-mcp://assets/fedcba9876543210/{sha}.txt"
        msg = await c.err("read_asset", asset=evil)
        assert "outside the assets directory" in msg, msg
        with pytest.raises(MCPError):
            await c.session.read_resource(evil)
        missing = "jupyter-mcp://assets/0123456789abcdef/" + "d" * 64 + ".png"
        assert "does not exist" in await c.err("read_asset", asset=missing)

    mcp.run(body)


@pytest.mark.timeout(150)
def test_gc_keeps_referenced_renewed_and_running_assets(mcp):
    lease_s = 3.6
    mcp.extra_args += ["--asset-lease-hours", "0.001"]  # 3.6 s
    nb_path = mcp.root / "gc.ipynb"
    nb = write_nb(nb_path, [("code", "a"), ("code", "b"), ("code", "c")])
    for cell, html in zip(nb.cells, ["<b>kept by the notebook</b>", "<b>orphan</b>", "<b>renewed</b>"]):
        cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": "x"})]
        cell.execution_count = 1
    nbformat.write(nb, str(nb_path))

    async def body(c):
        sc = await c.ok("read_notebook", notebook="gc.ipynb")
        kept, orphan, renewed = (cell["outputs"][0]["asset"] for cell in sc["cells"])
        # Only cell 0 keeps its output on disk.
        disk = read_nb(nb_path)
        disk.cells[1].outputs = []
        disk.cells[2].outputs = []
        nbformat.write(disk, str(nb_path))

        await anyio.sleep(lease_s * 0.7)
        await c.ok("read_asset", asset=renewed)  # renews its lease
        await anyio.sleep(lease_s * 0.5)  # kept and orphan have expired, renewed has not

        dry = await c.ok("prune_assets", dry_run=True)
        deleted = {v["uri"]: v["reason"] for v in dry["deleted"]}
        kept_why = {v["uri"]: v["reason"] for v in dry["kept"]}
        assert list(deleted) == [orphan], dry
        assert "lease expired" in deleted[orphan] and "no notebook" in deleted[orphan]
        assert kept_why[kept] == "referenced by notebook gc.ipynb", kept_why
        assert kept_why[renewed].startswith("lease valid until"), kept_why
        await c.ok("read_asset", asset=orphan)  # a dry run deletes nothing ...
        await anyio.sleep(lease_s * 1.1)  # ... but reading renewed it: let it expire again

        done = await c.ok("prune_assets", notebook="gc.ipynb")
        # Both unreferenced assets have expired by now; the one on disk stays.
        assert {v["uri"] for v in done["deleted"]} == {orphan, renewed}, done
        assert "does not exist" in await c.err("read_asset", asset=orphan)
        await c.ok("read_asset", asset=kept)
        files = list((mcp.data / "assets").rglob("*.html"))
        assert orphan.rsplit("/", 1)[1] not in [f.name for f in files]
        assert kept.rsplit("/", 1)[1] in [f.name for f in files]

        # An execution still producing its output: its asset survives collection.
        code = ("from IPython.display import HTML, display\nimport time\n"
                "display(HTML('<i>still producing</i>'))\ntime.sleep(12)\nprint('done')")
        ins = await c.ok("insert_cell", notebook="gc.ipynb", source=code)
        r = await c.ok("execute_cell", notebook="gc.ipynb", cell_id=ins["cell_id"], timeout_s=4)
        assert r["status"] == "running", r
        live = [o["asset"] for o in r["outputs"] if o.get("asset")]
        assert live and live[0].endswith(".html"), r
        await anyio.sleep(lease_s * 1.2)
        g = await c.ok("prune_assets")
        assert live[0] not in [v["uri"] for v in g["deleted"]], g
        why = {v["uri"]: v["reason"] for v in g["kept"]}[live[0]]
        assert "still running" in why or "stored execution" in why, why
        await c.ok("read_asset", asset=live[0])
        f = await c.wait_done(r["execution_id"], timeout=60)
        assert f["status"] == "completed", f

    mcp.run(body)


@pytest.mark.timeout(120)
def test_offload_writes_links_into_the_file(mcp):
    mcp.extra_args += ["--offload-outputs-over", "20000"]
    expected = "".join(f"row {i:05d}\n" for i in range(10_000))

    async def body(c):
        sc = await c.ok("create_notebook", notebook="off.ipynb",
                        cells=[{"cell_type": "code", "source": "for i in range(10000):\n    print(f'row {i:05d}')"},
                               {"cell_type": "code", "source": "print('small')"}])
        for cid in sc["cell_ids"]:
            r = await c.ok("execute_cell", notebook="off.ipynb", cell_id=cid, timeout_s=60)
            assert r["status"] == "completed"
        nb = validate_file(mcp.root / "off.ipynb")
        big = nb.cells[0].outputs[0]
        assert big["output_type"] == "stream" and len(big["text"]) < 6000
        assert big["text"].startswith("row 00000\n") and big["text"].endswith("row 09999\n")
        uri = next(p for p in big["text"].split('"') if p.startswith("jupyter-mcp://assets/"))
        assert (await read_all_pages(c, uri))[0] == expected
        assert nb.cells[1].outputs[0]["text"] == "small\n"
        # The agent still gets the whole output's size from the execution record.
        r = await c.ok("read_notebook", notebook="off.ipynb")
        assert "jupyter-mcp://assets/" in r["cells"][0]["outputs"][0]["text"]

    mcp.run(body)
