// Drives the jupyter-mcp daemon over Streamable HTTP with the official TypeScript MCP SDK
// (tests/e2e/test_daemon_http.py). Usage: JUPYTER_MCP_TOKEN=T node http_client.mjs <sdk-new> <url>
// Prints one JSON object: the negotiated protocol version, the tools, and every call's outcome
// (the SDK validates each result's structuredContent against the tool's outputSchema itself).
const [sdk, url] = process.argv.slice(2);
const { Client } = await import(`${sdk}/client/index.js`);
const { StreamableHTTPClientTransport } = await import(`${sdk}/client/streamableHttp.js`);

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.JUPYTER_MCP_TOKEN}` } },
});
const client = new Client({ name: `ts-http-${sdk}`, version: "0" }, { capabilities: {} });
await client.connect(transport);
const report = { protocolVersion: transport.protocolVersion, tools: [], calls: [] };
report.tools = (await client.listTools()).tools.map((t) => t.name);
const steps = [
  ["create_notebook", { notebook: "ts-http.ipynb", cells: [{ source: "v = 40 + 2\nv" }] }],
  ["run_all_cells", { notebook: "ts-http.ipynb", timeout_s: 120 }],
  ["execute_code", { notebook: "ts-http.ipynb", code: "print(v)", timeout_s: 120 }],
  ["read_notebook", { notebook: "ts-http.ipynb" }],
  ["list_kernels", {}],
  ["list_executions", { notebook: "ts-http.ipynb" }],
];
for (const [name, args] of steps) {
  try {
    const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 150000 });
    report.calls.push({
      name,
      ok: true,
      isError: Boolean(result.isError),
      structured: result.structuredContent !== undefined,
    });
  } catch (e) {
    report.calls.push({ name, ok: false, error: String(e && e.message ? e.message : e).slice(0, 2000) });
  }
}
await transport.terminateSession();
await client.close();
process.stdout.write(JSON.stringify(report) + "\n");
