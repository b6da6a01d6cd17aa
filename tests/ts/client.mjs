// Drives `jupyter-mcp serve` with an official TypeScript MCP SDK client (tests/e2e/test_clients.py).
// Usage: node client.mjs <sdk-new|sdk-old> <binary> <root> <data-dir>
// Prints one JSON object: the negotiated protocol version, the tools, every call's outcome
// (the SDK itself validates each result: its shape and, in 1.32, structuredContent against
// the tool's outputSchema), and every warning the SDK printed.
const [sdk, binary, root, data] = process.argv.slice(2);
const { Client } = await import(`${sdk}/client/index.js`);
const { StdioClientTransport } = await import(`${sdk}/client/stdio.js`);
const { LATEST_PROTOCOL_VERSION } = await import(`${sdk}/types.js`);

const warnings = [];
for (const level of ["warn", "error"]) {
  const original = console[level];
  console[level] = (...args) => {
    warnings.push(args.map(String).join(" "));
    original.apply(console, args);
  };
}

const env = { ...process.env };
for (const key of Object.keys(env)) if (key.startsWith("JUPYTER_MCP_")) delete env[key];
const transport = new StdioClientTransport({
  command: binary,
  args: ["serve", "--root", root, "--data-dir", data, "--stop-kernels-on-exit"],
  env,
  stderr: "ignore",
});
const client = new Client({ name: `ts-${sdk}`, version: "0" }, { capabilities: {} });
await client.connect(transport);
const report = {
  sdk,
  protocolVersion: LATEST_PROTOCOL_VERSION, // requested; this server supports both, so it is the one negotiated
  tools: [],
  calls: [],
  warnings,
};
const { tools } = await client.listTools();
report.tools = tools.map((t) => t.name);

const plot =
  "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()";
const steps = [
  ["list_kernelspecs", {}],
  ["create_notebook", { notebook: "ts.ipynb", cells: [{ source: plot }, { source: "print('x' * 200000)" }, { source: "v = 41 + 1\nv" }] }],
  ["list_notebooks", {}],
  ["run_all_cells", { notebook: "ts.ipynb", timeout_s: 120 }],
  ["read_notebook", { notebook: "ts.ipynb", outputs: "full" }],
  ["execute_code", { notebook: "ts.ipynb", code: "plt.plot([2, 1]); plt.show()", timeout_s: 120 }],
  ["insert_cell", { notebook: "ts.ipynb", source: "# note", cell_type: "markdown" }],
  ["list_variables", { notebook: "ts.ipynb" }],
  ["list_kernels", {}],
  ["list_executions", { notebook: "ts.ipynb" }],
  ["read_notebook", { notebook: "missing.ipynb" }],
  ["shutdown_kernel", { notebook: "ts.ipynb" }],
];
for (const [name, args] of steps) {
  try {
    const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 300000 });
    report.calls.push({
      name,
      ok: true,
      isError: Boolean(result.isError),
      contentTypes: (result.content ?? []).map((c) => c.type),
      structured: result.structuredContent !== undefined,
      text: (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n").slice(0, 300),
    });
  } catch (e) {
    report.calls.push({ name, ok: false, error: String(e && e.message ? e.message : e).slice(0, 2000) });
  }
}
await client.close();
process.stdout.write(JSON.stringify(report) + "\n");
