"""Hostile input over stdio (issue 9 items 4, 5, 13, 14 and its fuzz test).

* Raw malformed frames: each gets the JSON-RPC 2.0 error it deserves (-32700 with id null,
  -32600, -32602), a notification gets nothing, and the server keeps answering.
* Tool calls generated from every tool's inputSchema (own generator, fixed seed): every
  request gets a valid JSON-RPC response within a bound, the server never dies, and a
  canary folder beside the root never changes. JMCP_FUZZ_CALLS sets the number of calls
  (default 2000 in CI), JMCP_FUZZ_SEED the seed.
* Every tool schema uses standard JSON Schema 2020-12 keywords and formats only.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path

import pytest

from test_tasks import RawClient

# --------------------------------------------------------------------------------------
# Raw frames


def _req(rid, method="ping", **extra) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, **extra}).encode()


# (frame, expected id of the answer, expected code); id None means `"id": null`.
MALFORMED: list[tuple[bytes, object, int]] = [
    (b"\xff\xfe{", None, -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"ping"', None, -32700),
    (b'[{"jsonrpc":"2.0","id":"b1","method":"ping"},{"jsonrpc":"2.0","id":"b2","method":"ping"}]', "b1", -32600),
    (b"[]", None, -32600),
    (b'{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}', None, -32600),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', None, -32600),
    (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', None, -32600),
    (b'{"jsonrpc":"2.0","id":"m1"}', "m1", -32600),
    (b'{"jsonrpc":"2.0","id":"m2","method":12}', "m2", -32600),
    (b'{"jsonrpc":"2.0","id":"p1","method":"tools/list","params":[1,2]}', "p1", -32602),
    (b'{"jsonrpc":"2.0","id":"p2","method":"tools/list","params":"x"}', "p2", -32600),
    (b'{"jsonrpc":"1.0","id":"v1","method":"ping"}', "v1", -32600),
    (_req("nul") + b"\x00", None, -32700),
    (b'{"jsonrpc":"2.0","id":"s1","method":"ping","params":{"a":"\\ud800"}}', "s1", -32700),
    (b'{"jsonrpc":"2.0","id":"d1","method":"ping","params":' + b"[" * 200 + b"]" * 200 + b"}", None, -32700),
    (b'{"jsonrpc":"2.0","id":"n1","method":"ping","params":{"a":NaN}}', None, -32700),
    (b'{"jsonrpc":"2.0","id":"n2","method":"ping","params":{"a":Infinity}}', None, -32700),
    (b'{"jsonrpc":"2.0","id":"n3","method":"ping","params":{"a":1e400}}', None, -32700),
    (_req("t1", "tools/call", params={"name": 5}), "t1", -32602),
    (_req("t2", "tools/call", params={"name": "list_notebooks", "arguments": []}), "t2", -32602),
    (_req("r1", "resources/read", params={}), "r1", -32602),
]


@pytest.mark.timeout(120)
def test_malformed_frames_are_answered_and_the_server_stays_up(dirs):
    base, root, data = dirs
    c = RawClient(root, data, base)
    try:
        for frame, rid, code in MALFORMED:
            c.send_raw(frame + b"\n")
            answer = c.next_message(30)
            assert answer.get("jsonrpc") == "2.0", (frame[:80], answer)
            assert answer.get("id", "missing") == rid, (frame[:80], answer)
            assert answer["error"]["code"] == code, (frame[:80], answer)
            assert answer["error"]["message"], answer
            if frame.startswith(b"[{"):  # the batch's second request gets its own error
                assert c.next_message(30)["id"] == "b2"
            assert c.request("ping", timeout=30)["result"] == {}, frame[:80]
        # A malformed notification gets no answer; the next request does.
        c.send_raw(b'{"jsonrpc":"1.0","method":"notifications/initialized"}\n')
        assert c.request("ping", timeout=30)["result"] == {}
        # A line over 16 MiB is discarded with bounded memory and answered; reading goes on.
        c.send_raw(b'{"jsonrpc":"2.0","id":"big","method":"ping","params":{"x":"' + b"a" * (17 << 20) + b'"}}\n')
        big = c.next_message(60)
        assert big["id"] is None and big["error"]["code"] == -32700, big
        assert "16777216" in big["error"]["message"]
        # Argument type errors name the argument and a plain type (a tool error).
        bad = c.request("tools/call", {"name": "read_notebook", "arguments": {"notebook": 1.5}})
        assert bad["result"]["isError"] is True
        text = bad["result"]["content"][0]["text"]
        assert "`notebook`" in text and "must be a string" in text and "1.5" in text, text
        assert c.proc.poll() is None
    finally:
        c.close()


@pytest.mark.timeout(60)
def test_garbage_before_initialize_does_not_end_the_server(dirs):
    """rmcp ends its service on a notification or response before initialize, and the old
    reader stopped on one non-UTF-8 byte; both are absorbed now."""
    base, root, data = dirs
    c = RawClient(root, data, base, version=None)
    try:
        c.send_raw(b"\xc3\x28\n")
        assert c.next_message(30)["error"]["code"] == -32700
        c.send_raw(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        c.send_raw(b'{"jsonrpc":"2.0","id":77,"result":{}}\n')
        init = c.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                        "clientInfo": {"name": "x", "version": "0"}}, timeout=30)
        assert init["result"]["protocolVersion"] == "2025-11-25"
        c.send_raw(b"\xff\n")
        assert c.next_message(30)["error"]["code"] == -32700
        assert c.request("ping", timeout=30)["result"] == {}
    finally:
        c.close()


# --------------------------------------------------------------------------------------
# Schemas

STANDARD_FORMATS = {
    "date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname",
    "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template",
    "json-pointer", "relative-json-pointer", "regex",
}
# JSON Schema 2020-12 core + applicator + validation + meta-data + unevaluated + content.
STANDARD_KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
    "$comment", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas",
    "prefixItems", "items", "contains", "properties", "patternProperties", "additionalProperties",
    "propertyNames", "unevaluatedItems", "unevaluatedProperties", "type", "enum", "const",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
    "maxProperties", "minProperties", "required", "dependentRequired", "title", "description",
    "default", "deprecated", "readOnly", "writeOnly", "examples", "format", "contentEncoding",
    "contentMediaType", "contentSchema",
}
SUBSCHEMA = {"not", "if", "then", "else", "items", "contains", "additionalProperties",
             "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema"}
SUBSCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
SUBSCHEMA_MAPS = {"$defs", "properties", "patternProperties", "dependentSchemas"}


def schema_problems(schema, where: str) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{where}: a {type(schema).__name__} schema ({schema!r}); use an object"]
    out = []
    for key, value in schema.items():
        if key not in STANDARD_KEYWORDS:
            out.append(f"{where}: non-standard keyword {key!r}")
        if key == "format" and value not in STANDARD_FORMATS:
            out.append(f"{where}: non-standard format {value!r}")
        if key in SUBSCHEMA:
            out += schema_problems(value, f"{where}.{key}")
        elif key in SUBSCHEMA_LISTS:
            for i, s in enumerate(value):
                out += schema_problems(s, f"{where}.{key}[{i}]")
        elif key in SUBSCHEMA_MAPS:
            for name, s in value.items():
                out += schema_problems(s, f"{where}.{key}.{name}")
    return out


@pytest.mark.timeout(60)
def test_every_tool_schema_is_standard_json_schema(dirs):
    base, root, data = dirs
    c = RawClient(root, data, base)
    try:
        tools = c.request("tools/list")["result"]["tools"]
    finally:
        c.close()
    problems = []
    for t in tools:
        for key in ("inputSchema", "outputSchema"):
            if key in t:
                problems += schema_problems(t[key], f"{t['name']}.{key}")
    assert len(tools) > 10 and not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------
# Schema-driven fuzzing

STRINGS = [
    "", "f.ipynb", "sub/g.ipynb", "missing.ipynb", "../canary/c.ipynb", "../canary", "..",
    ".", "/", "/etc/passwd", "x\u0000y.ipynb", "adir.ipynb", "link.ipynb", "dangling.ipynb",
    "a" * 300 + ".ipynb", "ü/ß.ipynb", "sub/../../canary/c.ipynb", "f.ipynb/", "~/x.ipynb",
    "1+1", "print('hi')", "x = 1", "raise ValueError('boom')", "def (", "\udcff",
    "python3", "no-such-kernel", "code", "markdown", "raw", "none", "summary", "full",
    "pending", "running", "completed", "00000000-0000-0000-0000-000000000000", "\n" * 5,
]
NUMBERS = [0, 1, 2, -1, 3, 10**6, 2**63, 0.5, 1.5, -0.0, 1e308, -1e308, 0.05]
# Code that could block a kernel (input(), long sleeps) or act outside the root is never
# generated: the strings above are the only code.


def gen_value(schema: dict, defs: dict, rng: random.Random, depth: int = 0):
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    if "anyOf" in schema or "oneOf" in schema:
        return gen_value(rng.choice(schema.get("anyOf") or schema.get("oneOf")), defs, rng, depth)
    if rng.random() < 0.08:  # a wrong type now and then
        return rng.choice([None, True, 7, -2.5, "s", [], {}, [1, "a"], {"k": "v"}])
    types = schema.get("type", "string")
    t = rng.choice(types) if isinstance(types, list) else types
    if t == "string":
        return rng.choice(STRINGS)
    if t == "integer":
        return rng.choice([n for n in NUMBERS if isinstance(n, int)] + [rng.randint(0, 5)] * 4)
    if t == "number":
        return rng.choice(NUMBERS + [0.1, 0.2, 1])
    if t == "boolean":
        return rng.random() < 0.5
    if t == "null":
        return None
    if t == "array":
        if depth > 3:
            return []
        return [gen_value(schema.get("items", {}), defs, rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if t == "object":
        return gen_object(schema, defs, rng, depth + 1)
    return None


def gen_object(schema: dict, defs: dict, rng: random.Random, depth: int = 0) -> dict:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    out = {}
    for name, sub in props.items():
        if name in required and rng.random() < 0.95 or rng.random() < 0.5:
            out[name] = gen_value(sub, defs, rng, depth)
    if rng.random() < 0.05:
        out["unexpected_argument"] = "x"
    return out


def tree_digest(path: Path) -> str:
    """Names, types, sizes and contents of everything under `path` (symlinks not followed)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(path)}|{st.st_mode}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def valid_response(msg: dict, rid) -> str | None:
    if msg.get("jsonrpc") != "2.0" or msg.get("id") != rid:
        return f"bad envelope: {str(msg)[:300]}"
    if ("result" in msg) == ("error" in msg):
        return f"needs exactly one of result/error: {str(msg)[:300]}"
    if "error" in msg:
        e = msg["error"]
        if not isinstance(e.get("code"), int) or not isinstance(e.get("message"), str) or not e["message"]:
            return f"bad error object: {e}"
        return None
    r = msg["result"]
    if not isinstance(r.get("content"), list):
        return f"a tools/call result needs content: {str(r)[:300]}"
    if r.get("isError") and not any(c.get("type") == "text" and c.get("text") for c in r["content"]):
        return f"a tool error without a message: {str(r)[:300]}"
    return None


FUZZ_CALLS = int(os.environ.get("JMCP_FUZZ_CALLS", "2000"))
FUZZ_SEED = int(os.environ.get("JMCP_FUZZ_SEED", "9"))
CALL_BOUND_S = 90.0


@pytest.mark.timeout(900 + FUZZ_CALLS)
def test_schema_driven_fuzz(dirs, capsys):
    base, root, data = dirs
    canary = base / "canary"
    canary.mkdir()
    (canary / "c.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (canary / "secret.txt").write_text("canary\n")
    (root / "sub").mkdir()
    (root / "adir.ipynb").mkdir()
    os.symlink(canary / "c.ipynb", root / "link.ipynb")
    os.symlink(canary / "gone.ipynb", root / "dangling.ipynb")
    before = tree_digest(canary)

    rng = random.Random(FUZZ_SEED)
    c = RawClient(root, data, base)
    totals = {"calls": 0, "tool_errors": 0, "protocol_errors": 0, "invalid": 0, "crashes": 0, "hangs": 0}
    bad: list[str] = []
    try:
        c.tool("create_notebook", notebook="f.ipynb", cells=[{"source": "x = 1"}, {"source": "print(x)"}])
        c.tool("create_notebook", notebook="sub/g.ipynb")
        tools = c.request("tools/list")["result"]["tools"]
        # Kernel-heavy tools are drawn less often so the CI run stays short.
        weights = [0.3 if t["name"] in ("start_kernel", "restart_kernel", "shutdown_kernel",
                                          "save_environment", "load_environment") else 1.0 for t in tools]
        for i in range(FUZZ_CALLS):
            tool = rng.choices(tools, weights)[0]
            schema = tool["inputSchema"]
            args = gen_object(schema, schema.get("$defs", {}), rng)
            for k in ("timeout_s", "wait_s"):  # bounded waits keep each call bounded
                if isinstance(args.get(k), (int, float)) and not isinstance(args[k], bool) and args[k] > 5:
                    args[k] = 5
            c.next_id += 1
            rid = c.next_id
            c.send({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                    "params": {"name": tool["name"], "arguments": args}})
            totals["calls"] += 1
            try:
                msg = c.wait_for(rid, CALL_BOUND_S)
            except TimeoutError:
                totals["hangs"] += 1
                bad.append(f"call {i} hung: {tool['name']}({json.dumps(args)[:200]})")
                break
            except EOFError as exc:
                totals["crashes"] += 1
                bad.append(f"call {i} ended the server: {tool['name']}({json.dumps(args)[:200]}): {exc}")
                break
            problem = valid_response(msg, rid)
            if problem:
                totals["invalid"] += 1
                bad.append(f"call {i} {tool['name']}({json.dumps(args)[:200]}): {problem}")
            elif "error" in msg:
                totals["protocol_errors"] += 1
            elif msg["result"].get("isError"):
                totals["tool_errors"] += 1
        if c.proc.poll() is None:
            for nb in ("f.ipynb", "sub/g.ipynb", "link.ipynb"):
                c.request("tools/call", {"name": "shutdown_kernel", "arguments": {"notebook": nb}})
    finally:
        c.close()
    after = tree_digest(canary)
    totals["escapes"] = int(after != before)
    with capsys.disabled():
        print(f"\nfuzz totals (seed {FUZZ_SEED}): {json.dumps(totals)}")
    assert not bad, "\n".join(bad[:20])
    assert after == before, "the canary folder beside the root changed"
    assert totals["calls"] == FUZZ_CALLS
