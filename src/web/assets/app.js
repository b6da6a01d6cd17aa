// jupyter-mcp web view: state, live updates from /events, and the human's controls.
// Events only change state and mark what is stale; the DOM is updated at most once per
// animation frame (and reads of the JSON API are debounced), so a cell printing 20,000
// lines costs one text update per frame, bounded to the last LIVE_MAX characters.
"use strict";

(function () {
  const { el, esc, highlight, markdown, renderOutput, fmtBytes } = window.JR;
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const LIVE_MAX = 16 * 1024; // characters of a running cell's stream shown live (its tail)
  const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);

  const S = {
    overview: null,
    selected: new URLSearchParams(location.search).get("notebook"),
    nb: null, // notebook JSON of the selected notebook
    timeline: [],
    checkpoints: [],
    live: new Map(), // execution_id -> {cell_id, chunks: [{name, text}], rich: bool, size}
    finals: new Map(), // cell_id -> {at, exec} : outputs of executions that just ended
    connected: false,
    error: null,
  };
  const dirty = new Set();
  let frame = 0;

  function mark(...what) {
    what.forEach((w) => dirty.add(w));
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    const todo = new Set(dirty);
    dirty.clear();
    if (todo.has("header")) renderHeader();
    if (todo.has("notebooks")) renderNotebooks();
    if (todo.has("nbhead")) renderNbHead();
    if (todo.has("cells")) renderCells();
    else if (todo.has("markers")) renderMarkers();
    if (todo.has("live")) renderLive();
    if (todo.has("timeline")) renderTimeline();
    if (todo.has("checkpoints")) renderCheckpoints();
  }

  // ---- API -------------------------------------------------------------------------------
  async function api(path) {
    const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return r.json();
  }

  async function control(action, body) {
    const r = await fetch("/api/view/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(body),
    });
    let j = {};
    try { j = await r.json(); } catch (_) { /* empty */ }
    if (!r.ok) throw new Error(j.error || r.status + " " + r.statusText);
    return j;
  }

  const timers = {};
  function soon(name, fn, ms) {
    if (timers[name]) return;
    timers[name] = setTimeout(() => { timers[name] = 0; fn(); }, ms);
  }

  async function loadOverview() {
    try {
      S.overview = await api("/api/view/overview");
      S.error = null;
      if (!S.selected && S.overview.notebooks.length) select(S.overview.notebooks[0].path);
    } catch (e) { S.error = "overview: " + e.message; }
    mark("header", "notebooks", "nbhead");
  }

  async function loadNotebook() {
    const path = S.selected;
    if (!path) return;
    try {
      const nb = await api("/api/view/notebook?path=" + encodeURIComponent(path));
      if (path !== S.selected) return;
      S.nb = nb;
      // The file catches up with an execution's outputs a moment after it ends.
      const now = Date.now();
      for (const [cell, f] of S.finals) if (now - f.at > 5000) S.finals.delete(cell);
      for (const c of nb.cells) {
        const ex = c.execution;
        if (ex && ex.status === "running" && !S.live.has(ex.execution_id)) {
          S.live.set(ex.execution_id, { cell_id: c.id, chunks: [], size: 0, base: c.outputs });
        }
      }
    } catch (e) {
      S.nb = { path, error: e.message, cells: [] };
    }
    mark("nbhead", "cells");
  }

  async function loadTimeline() {
    try {
      const q = S.selected ? "?limit=100&notebook=" + encodeURIComponent(S.selected) : "?limit=100";
      S.timeline = (await api("/api/view/executions" + q)).executions;
      // An end whose event was lost: settle the cell from the execution itself.
      for (const r of S.timeline) {
        if (S.live.has(r.execution_id) && TERMINAL.has(r.status)) {
          loadExecution(r.execution_id);
          soon("notebook", loadNotebook, 1200);
        }
      }
    } catch (e) { S.error = "timeline: " + e.message; }
    mark("timeline", "header");
  }

  async function loadCheckpoints() {
    if (!S.selected) return;
    try {
      S.checkpoints = (await api("/api/view/checkpoints?notebook=" + encodeURIComponent(S.selected))).checkpoints;
    } catch (e) { S.checkpoints = []; S.error = "checkpoints: " + e.message; }
    mark("checkpoints");
  }

  async function loadExecution(id) {
    try {
      const ex = await api("/api/view/execution?id=" + encodeURIComponent(id));
      if (!ex.cell_id) return;
      if (TERMINAL.has(ex.status)) {
        S.finals.set(ex.cell_id, { at: Date.now(), exec: ex });
        S.live.delete(id);
      } else {
        const l = S.live.get(id) || { cell_id: ex.cell_id, chunks: [], size: 0 };
        l.base = ex.outputs;
        l.chunks = [];
        l.size = 0;
        S.live.set(id, l);
      }
      mark("cells");
    } catch (_) { /* it may have been pruned */ }
  }

  function select(path) {
    if (path === S.selected && S.nb) return;
    S.selected = path;
    S.nb = null;
    S.live.clear();
    S.finals.clear();
    const u = new URL(location.href);
    u.searchParams.set("notebook", path);
    history.replaceState(null, "", u.pathname + u.search);
    mark("notebooks", "nbhead", "cells");
    loadNotebook();
    loadTimeline();
    loadCheckpoints();
  }

  // ---- events ----------------------------------------------------------------------------
  let ws = null;
  let backoff = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/events`);
    ws.onopen = () => {
      S.connected = true;
      backoff = 500;
      mark("header");
      refreshAll();
    };
    ws.onclose = () => {
      S.connected = false;
      mark("header");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (_) { return; }
      onEvent(ev);
    };
  }

  function refreshAll() {
    loadOverview();
    loadNotebook();
    loadTimeline();
    loadCheckpoints();
  }

  function onEvent(ev) {
    switch (ev.type) {
      case "execution": onExecution(ev); break;
      case "output": onOutput(ev); break;
      case "clear_output": onClear(ev); break;
      case "update_display":
        // The updated display may be in this execution's cell or in another cell: read both.
        if (ev.notebook !== S.selected) break;
        if (S.live.has(ev.execution_id)) soon("exec-" + ev.execution_id, () => loadExecution(ev.execution_id), 250);
        soon("notebook", loadNotebook, 800);
        break;
      case "kernel": onKernel(ev); break;
      case "lagged":
        // Events were lost (this page fell behind a flood of output). Live streams carry on
        // with a gap (marked); the lists are read again; a running cell's outputs are read
        // whole when it ends (the timeline tells if that event was among the lost ones).
        for (const l of S.live.values()) { l.cut = true; }
        mark("live");
        soon("overview", loadOverview, 1000);
        soon("timeline", loadTimeline, 1000);
        break;
    }
  }

  function onExecution(ev) {
    const row = S.timeline.find((r) => r.execution_id === ev.execution_id);
    if (row) {
      row.status = ev.status;
      if (ev.status === "running") row.started_at = ev.at;
      if (TERMINAL.has(ev.status)) row.finished_at = ev.at;
      mark("timeline");
    }
    if (!row || TERMINAL.has(ev.status)) soon("timeline", loadTimeline, 300);
    soon("overview", loadOverview, 300);
    if (ev.notebook !== S.selected) return;
    if (S.nb && ev.cell_id) {
      const c = S.nb.cells.find((x) => x.id === ev.cell_id);
      if (c) {
        c.execution = TERMINAL.has(ev.status) ? null : { execution_id: ev.execution_id, status: ev.status };
        if (ev.execution_count != null) c.execution_count = ev.execution_count;
        mark("markers");
      }
    }
    if (ev.status === "running" && ev.cell_id) {
      // JupyterLab clears a cell's outputs when it starts running.
      S.live.set(ev.execution_id, { cell_id: ev.cell_id, chunks: [], size: 0, base: [] });
      S.finals.delete(ev.cell_id);
      mark("cells");
    } else if (TERMINAL.has(ev.status)) {
      if (ev.cell_id) loadExecution(ev.execution_id);
      soon("notebook", loadNotebook, 1200);
      soon("checkpoints", loadCheckpoints, 1500);
    }
  }

  function clearLive(l) {
    l.chunks = [];
    l.base = [];
    l.size = 0;
    l.clearPending = false;
    l.version = (l.version || 0) + 1;
  }

  // clear_output: now, or (wait=True, as nbclient does) when the next output arrives.
  function onClear(ev) {
    if (ev.notebook !== S.selected) return;
    const l = S.live.get(ev.execution_id);
    if (!l) return;
    if (ev.wait) {
      l.clearPending = true;
      return;
    }
    clearLive(l);
    mark("live", "cells");
  }

  function onOutput(ev) {
    if (ev.notebook !== S.selected) return;
    const l = S.live.get(ev.execution_id);
    if (!l) return;
    if (l.clearPending) { clearLive(l); mark("cells"); }
    const o = ev.output || {};
    if (o.output_type === "stream") {
      const text = o.text || "";
      const last = l.chunks[l.chunks.length - 1];
      if (last && last.name === o.name) last.text += text;
      else l.chunks.push({ name: o.name, text });
      l.size += text.length;
      // Keep the tail only: what is cut is in the whole output once the cell ends.
      if (l.size > LIVE_MAX * 4) {
        while (l.size > LIVE_MAX && l.chunks.length) {
          const first = l.chunks[0];
          const drop = Math.min(first.text.length, l.size - LIVE_MAX);
          first.text = first.text.slice(drop);
          l.size -= drop;
          if (!first.text) l.chunks.shift();
        }
        l.cut = true;
      }
      l.version = (l.version || 0) + 1;
      mark("live");
    } else {
      // Events carry no rich payloads: read the execution's outputs so far.
      soon("exec-" + ev.execution_id, () => loadExecution(ev.execution_id), 250);
    }
  }

  function onKernel(ev) {
    const nb = S.overview && S.overview.notebooks.find((n) => n.path === ev.notebook);
    if (nb) {
      nb.kernel = Object.assign({}, nb.kernel || {}, { state: ev.state, pid: ev.pid != null ? ev.pid : (nb.kernel || {}).pid });
      mark("notebooks", "nbhead");
    }
    soon("overview", loadOverview, 400);
  }

  // ---- rendering -------------------------------------------------------------------------
  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    if (s < 86400) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour12: false });
  }

  function duration(a, b) {
    if (!a) return "";
    const ms = (b ? Date.parse(b) : Date.now()) - Date.parse(a);
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
  }

  function renderHeader() {
    const c = document.getElementById("conn");
    c.textContent = S.connected ? "live" : "reconnecting…";
    c.className = "conn " + (S.connected ? "ok" : "bad");
    const s = S.overview && S.overview.server;
    document.getElementById("server").textContent = s
      ? `v${s.version} · root ${s.root} · queued ${s.queue_depth} · up ${ago(new Date(Date.now() - s.uptime_s * 1000).toISOString())}`
      : "";
    const e = document.getElementById("error");
    e.textContent = S.error || "";
    e.hidden = !S.error;
  }

  function kernelLine(n) {
    const k = n.kernel;
    if (!k || k.state === "none") return "no kernel";
    const parts = [k.state];
    if (k.pid) parts.push("pid " + k.pid);
    if (k.memory_bytes) parts.push(fmtBytes(k.memory_bytes));
    if (k.state === "idle" && k.idle_seconds != null) {
      parts.push("idle " + ago(new Date(Date.now() - k.idle_seconds * 1000).toISOString()));
    } else if (k.state === "idle") {
      const since = n.last_finished_at && (!k.started_at || n.last_finished_at > k.started_at) ? n.last_finished_at : k.started_at;
      if (since) parts.push("idle " + ago(since));
    }
    return parts.join(" · ");
  }

  function renderNotebooks() {
    const ul = document.getElementById("notebooks");
    ul.textContent = "";
    const list = (S.overview && S.overview.notebooks) || [];
    if (!list.length) ul.appendChild(el("li", "muted", "no notebooks under the root yet"));
    for (const n of list) {
      const li = el("li", "nb-item" + (n.path === S.selected ? " selected" : ""));
      li.dataset.path = n.path;
      const state = (n.kernel && n.kernel.state) || "none";
      li.appendChild(el("span", "dot state-" + state));
      li.appendChild(el("span", "nb-path", n.path));
      const meta = el("div", "nb-meta", kernelLine(n));
      if (n.queue_depth) meta.appendChild(el("span", "badge pending", `${n.queue_depth} queued`));
      if (n.running) meta.appendChild(el("span", "badge running", "running"));
      li.appendChild(meta);
      li.onclick = () => select(n.path);
      ul.appendChild(li);
    }
  }

  function renderNbHead() {
    const h = document.getElementById("nbhead");
    h.textContent = "";
    if (!S.selected) { h.appendChild(el("p", "muted", "Pick a notebook on the left.")); return; }
    h.appendChild(el("h2", "nb-title", S.selected));
    const n = S.overview && S.overview.notebooks.find((x) => x.path === S.selected);
    h.appendChild(el("span", "kernel-line", n ? kernelLine(n) : ""));
    const hasKernel = n && n.kernel && n.kernel.state !== "none";
    const bi = el("button", "btn", "Interrupt");
    bi.dataset.action = "interrupt";
    bi.disabled = !hasKernel;
    bi.title = "Interrupt the kernel (stops the running cell)";
    bi.onclick = () => act(bi, "interrupt", { notebook: S.selected });
    const br = el("button", "btn danger", "Restart");
    br.dataset.action = "restart";
    br.disabled = !hasKernel;
    br.title = "Restart the kernel (its variables are lost)";
    br.onclick = () => {
      if (confirm(`Restart the kernel of ${S.selected}? Its variables are lost; a running cell is stopped.`)) {
        act(br, "restart", { notebook: S.selected });
      }
    };
    h.appendChild(bi);
    h.appendChild(br);
  }

  async function act(button, action, body) {
    button.disabled = true;
    try {
      await control(action, body);
      S.error = null;
    } catch (e) {
      S.error = `${action}: ${e.message}`;
    } finally {
      button.disabled = false;
      mark("header");
      soon("overview", loadOverview, 100);
      soon("timeline", loadTimeline, 100);
    }
  }

  function cellOutputs(c) {
    for (const [id, l] of S.live) if (l.cell_id === c.id) return { live: id, outputs: l.base || [] };
    const f = S.finals.get(c.id);
    if (f) return { outputs: f.exec.outputs || [] };
    return { outputs: c.outputs || [] };
  }

  function renderCells() {
    const box = document.getElementById("cells");
    box.textContent = "";
    if (!S.nb) { box.appendChild(el("p", "muted", S.selected ? "loading…" : "")); return; }
    if (S.nb.error) { box.appendChild(el("p", "error-text", S.nb.error)); return; }
    if (!S.nb.cells.length) box.appendChild(el("p", "muted", "This notebook has no cells."));
    const lang = (S.nb.kernelspec && S.nb.kernelspec.language) || "python";
    for (const c of S.nb.cells) {
      const d = el("div", "cell cell-" + c.cell_type);
      d.dataset.cellId = c.id;
      const prompt = el("div", "prompt");
      d.appendChild(prompt);
      const body = el("div", "cell-body");
      if (c.cell_type === "markdown") {
        const md = el("div", "markdown");
        md.innerHTML = markdown(c.source);
        body.appendChild(md);
      } else if (c.cell_type === "code") {
        const pre = el("pre", "source");
        pre.innerHTML = highlight(c.source, lang);
        body.appendChild(pre);
        const outs = el("div", "outputs");
        const { live, outputs } = cellOutputs(c);
        for (const o of outputs) outs.appendChild(renderOutput(o));
        if (live) {
          const lv = el("div", "live-stream");
          lv.dataset.executionId = live;
          outs.appendChild(lv);
        }
        body.appendChild(outs);
      } else {
        body.appendChild(el("pre", "source raw", c.source));
      }
      d.appendChild(body);
      box.appendChild(d);
    }
    renderMarkers();
    renderLive();
  }

  function renderMarkers() {
    if (!S.nb || !S.nb.cells) return;
    for (const c of S.nb.cells) {
      const d = document.querySelector(`.cell[data-cell-id="${CSS.escape(c.id)}"]`);
      if (!d) continue;
      const st = c.execution ? c.execution.status : null;
      d.classList.toggle("running", st === "running");
      d.classList.toggle("pending", st === "pending");
      const p = d.querySelector(".prompt");
      if (c.cell_type === "code") {
        p.textContent = st === "running" ? "[*]:" : st === "pending" ? "[ ]:" : `[${c.execution_count == null ? " " : c.execution_count}]:`;
        p.title = st === "pending" ? "queued" : st === "running" ? "running" : "";
      } else p.textContent = "";
    }
  }

  function renderLive() {
    for (const [id, l] of S.live) {
      const box = document.querySelector(`.live-stream[data-execution-id="${CSS.escape(id)}"]`);
      if (!box || box.dataset.version === String(l.version || 0)) continue;
      box.dataset.version = String(l.version || 0);
      // Only the tail (LIVE_MAX characters) is drawn: one text update per stream run and
      // frame, whatever the number of events that came in since the last frame.
      const shown = [];
      let budget = LIVE_MAX;
      for (let k = l.chunks.length - 1; k >= 0 && budget > 0; k--) {
        const t = l.chunks[k].text;
        shown.unshift({ name: l.chunks[k].name, text: t.length > budget ? t.slice(t.length - budget) : t });
        budget -= t.length;
      }
      const cut = l.cut || budget < 0;
      let note = box.querySelector(".cut-note");
      if (cut && !note) {
        note = el("div", "muted cut-note", "… earlier output not shown while the cell runs (all of it is kept)");
        box.insertBefore(note, box.firstChild);
      }
      const pres = [...box.querySelectorAll("pre")];
      for (let k = shown.length; k < pres.length; k++) pres[k].remove();
      shown.forEach((ch, k) => {
        let p = pres[k];
        const cls = "output-text stream live" + (ch.name === "stderr" ? " stderr" : "");
        if (!p) { p = el("pre", cls); box.appendChild(p); }
        if (p.className !== cls) p.className = cls;
        if (p.firstChild && p.firstChild.nodeType === 3) {
          if (p.firstChild.data !== ch.text) p.firstChild.data = ch.text;
        } else p.textContent = ch.text;
      });
    }
  }

  function renderTimeline() {
    const box = document.getElementById("timeline");
    box.textContent = "";
    if (!S.timeline.length) { box.appendChild(el("p", "muted", "No executions yet.")); return; }
    const t = el("table", "timeline");
    t.innerHTML = '<colgroup><col class="c-when"><col class="c-status"><col class="c-who"><col class="c-took"><col class="c-ops"></colgroup>' +
      "<thead><tr><th>when</th><th>status</th><th>who</th><th>took</th><th></th></tr></thead>";
    const tb = el("tbody");
    for (const r of S.timeline) {
      const tr = el("tr", "ex ex-" + r.status);
      tr.dataset.executionId = r.execution_id;
      tr.dataset.status = r.status;
      tr.title = (r.code || "") + (r.note ? "\n— " + r.note : "");
      tr.appendChild(el("td", "when", clock(r.created_at)));
      const st = el("td", "status");
      st.appendChild(el("span", "badge " + r.status, r.status));
      if (r.ename) st.appendChild(el("span", "ename", " " + r.ename));
      tr.appendChild(st);
      const who = el("td", "who", r.requested_by || "—");
      who.title = r.requested_by || "";
      tr.appendChild(who);
      tr.appendChild(el("td", "took", r.started_at ? duration(r.started_at, r.finished_at) : ""));
      const ops = el("td", "ops");
      if (r.status === "pending" || r.status === "running") {
        const b = el("button", "btn small", r.status === "pending" ? "Cancel" : "Stop");
        b.dataset.action = "cancel";
        b.title = r.status === "pending" ? "Remove it from the queue" : "Interrupt it";
        b.onclick = (e) => { e.stopPropagation(); act(b, "cancel", { execution_id: r.execution_id }); };
        ops.appendChild(b);
      }
      const a = el("a", "out-link", "json");
      a.title = "this execution with its outputs (JSON)";
      a.href = "/api/view/execution?id=" + encodeURIComponent(r.execution_id);
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      ops.appendChild(a);
      tr.appendChild(ops);
      if (r.note) {
        tb.appendChild(tr);
        const nt = el("tr", "note-row");
        const td = el("td", "note", r.note);
        td.colSpan = 5;
        nt.appendChild(td);
        tb.appendChild(nt);
        continue;
      }
      tb.appendChild(tr);
    }
    t.appendChild(tb);
    box.appendChild(t);
  }

  function renderCheckpoints() {
    const box = document.getElementById("checkpoints");
    box.textContent = "";
    if (!S.checkpoints.length) { box.appendChild(el("p", "muted", "No checkpoints for this notebook.")); return; }
    const t = el("table", "checkpoints");
    t.innerHTML = '<colgroup><col class="c-name"><col class="c-size"><col class="c-vars"><col class="c-age"></colgroup>' +
      "<thead><tr><th>name</th><th>size</th><th>variables</th><th>age</th></tr></thead>";
    const tb = el("tbody");
    for (const c of S.checkpoints) {
      const tr = el("tr");
      tr.appendChild(el("td", "", c.name + (c.verified ? "" : " (unverified)")));
      tr.appendChild(el("td", "", fmtBytes(c.bytes)));
      const vars = c.variables || [];
      const v = el("td", "", `${vars.length}: ${vars.slice(0, 6).join(", ")}${vars.length > 6 ? ", …" : ""}`);
      v.title = vars.join(", ");
      tr.appendChild(v);
      tr.appendChild(el("td", "", ago(c.created_at)));
      tb.appendChild(tr);
    }
    t.appendChild(tb);
    box.appendChild(t);
  }

  // ---- start -----------------------------------------------------------------------------
  void esc;
  mark("header", "notebooks", "nbhead", "cells", "timeline", "checkpoints");
  if (S.selected) { loadNotebook(); loadCheckpoints(); }
  connect();
  // Memory, idle time and ages move without events.
  setInterval(() => { loadOverview(); mark("timeline"); }, 5000);
})();
