// jupyter-mcp web view: rendering of cells and outputs (no dependencies).
// Markdown (a small CommonMark subset: headings, paragraphs, lists, block quotes, fenced
// code, GFM tables, emphasis, code spans, links, images), Python/generic syntax highlighting,
// ANSI SGR colours, and nbformat outputs as JupyterLab shows them. Everything is escaped
// first; untrusted HTML and SVG only ever go into a sandboxed iframe (no allow-same-origin).
"use strict";

(function () {
  const esc = (s) =>
    String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  // ---- syntax highlighting -------------------------------------------------------------
  const PY_KW = new Set(("False None True and as assert async await break class continue def del elif else " +
    "except finally for from global if import in is lambda nonlocal not or pass raise return try while with " +
    "yield match case").split(" "));
  const PY_BUILTIN = new Set(("print len range int float str list dict set tuple bool type isinstance open " +
    "enumerate zip map filter sorted sum min max abs round any all super object repr iter next hasattr getattr " +
    "setattr input format vars dir id hex bin").split(" "));
  const TOKEN = /(#[^\n]*)|([rRbBuUfF]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?))|(@[\w.]+)|(\b(?:0[xX][0-9a-fA-F_]+|\d[\d_]*\.?\d*(?:[eE][+-]?\d+)?j?)\b)|([A-Za-z_]\w*)|([^\w\s#'"@]+|\s+|.)/g;

  function highlight(code, lang) {
    lang = (lang || "python").toLowerCase();
    if (!/^(python|ipython|py|python3|)$/.test(lang)) return esc(code);
    let out = "";
    let m;
    let prev = "";
    TOKEN.lastIndex = 0;
    while ((m = TOKEN.exec(code)) !== null) {
      if (m[0] === "") { TOKEN.lastIndex++; continue; }
      const t = esc(m[0]);
      if (m[1]) out += `<span class="hl-c">${t}</span>`;
      else if (m[2]) out += `<span class="hl-s">${t}</span>`;
      else if (m[3]) out += `<span class="hl-d">${t}</span>`;
      else if (m[4]) out += `<span class="hl-n">${t}</span>`;
      else if (m[5]) {
        if (PY_KW.has(m[5])) out += `<span class="hl-k">${t}</span>`;
        else if (prev === "def" || prev === "class") out += `<span class="hl-f">${t}</span>`;
        else if (PY_BUILTIN.has(m[5])) out += `<span class="hl-b">${t}</span>`;
        else out += t;
        prev = m[5];
        continue;
      } else out += t;
      if (!/^\s+$/.test(m[0])) prev = "";
    }
    return out;
  }

  // ---- ANSI colours -----------------------------------------------------------------------
  function ansi(text) {
    const parts = String(text).split(/\x1b\[([0-9;]*)m/);
    let out = "";
    let cls = [];
    for (let i = 0; i < parts.length; i++) {
      if (i % 2 === 0) {
        // Other escape sequences are dropped.
        const t = esc(parts[i].replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]/g, ""));
        out += cls.length ? `<span class="${cls.join(" ")}">${t}</span>` : t;
        continue;
      }
      const codes = parts[i] === "" ? [0] : parts[i].split(";").map((n) => parseInt(n, 10) || 0);
      for (let j = 0; j < codes.length; j++) {
        const c = codes[j];
        if (c === 0) cls = [];
        else if (c === 1) cls.push("ansi-bold");
        else if (c === 4) cls.push("ansi-underline");
        else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) {
          cls = cls.filter((k) => !k.startsWith("ansi-fg"));
          cls.push("ansi-fg" + (c >= 90 ? c - 90 + 8 : c - 30));
        } else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) {
          cls = cls.filter((k) => !k.startsWith("ansi-bg"));
          cls.push("ansi-bg" + (c >= 100 ? c - 100 + 8 : c - 40));
        } else if (c === 39) cls = cls.filter((k) => !k.startsWith("ansi-fg"));
        else if (c === 49) cls = cls.filter((k) => !k.startsWith("ansi-bg"));
        else if (c === 38 || c === 48) j += codes[j + 1] === 5 ? 2 : 4; // 256/true colour: skipped
      }
    }
    return out;
  }

  // ---- markdown ---------------------------------------------------------------------------
  function safeUrl(u) {
    u = u.trim();
    if (/^(https?:|mailto:|#|\/|\.{0,2}\/?[\w\-./]*$)/i.test(u) && !/^\s*javascript:/i.test(u)) return u;
    if (/^data:image\/(png|jpeg|gif);base64,/i.test(u)) return u;
    return "#";
  }

  function inline(s) {
    // Code spans first (their content is literal), then the rest on escaped text.
    const spans = [];
    s = s.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_, __, code) => {
      spans.push(`<code>${esc(code)}</code>`);
      return `\u0000${spans.length - 1}\u0000`;
    });
    s = esc(s);
    s = s.replace(/!\[([^\]]*)\]\(([^)\s]+)(?:\s+&quot;[^&]*&quot;)?\)/g, (_, alt, url) =>
      `<img alt="${alt}" src="${esc(safeUrl(url.replace(/&amp;/g, "&")))}">`);
    s = s.replace(/\[([^\]]+)\]\(([^)\s]+)(?:\s+&quot;[^&]*&quot;)?\)/g, (_, text, url) =>
      `<a href="${esc(safeUrl(url.replace(/&amp;/g, "&")))}" target="_blank" rel="noopener noreferrer">${text}</a>`);
    s = s.replace(/(\*\*|__)(?=\S)([\s\S]*?\S)\1/g, "<strong>$2</strong>");
    s = s.replace(/(^|[^*\w])\*(?=\S)([^*]*?\S)\*(?!\*)/g, "$1<em>$2</em>");
    s = s.replace(/(^|[^_\w])_(?=\S)([^_]*?\S)_(?!\w)/g, "$1<em>$2</em>");
    s = s.replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
    s = s.replace(/ {2,}\n/g, "<br>\n");
    return s.replace(/\u0000(\d+)\u0000/g, (_, i) => spans[+i]);
  }

  function splitRow(line) {
    let l = line.trim();
    if (l.startsWith("|")) l = l.slice(1);
    if (l.endsWith("|")) l = l.slice(0, -1);
    return l.split("|").map((c) => c.trim());
  }

  function markdown(src) {
    const lines = String(src).replace(/\r\n?/g, "\n").split("\n");
    let html = "";
    let i = 0;
    const isBlockStart = (l) =>
      /^\s{0,3}(#{1,6}\s|```|~~~|>|[-*+]\s|\d+[.)]\s|([-*_])(\s*\2){2,}\s*$)/.test(l);
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (/^\s*$/.test(line)) { i++; continue; }
      if ((m = line.match(/^\s{0,3}(```+|~~~+)\s*([\w+-]*)/))) {
        const fence = m[1];
        const code = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) code.push(lines[i++]);
        i++;
        html += `<pre class="md-code"><code>${highlight(code.join("\n"), m[2] || "text")}</code></pre>`;
        continue;
      }
      if ((m = line.match(/^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/))) {
        const n = m[1].length;
        html += `<h${n}>${inline(m[2])}</h${n}>`;
        i++;
        continue;
      }
      if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) { html += "<hr>"; i++; continue; }
      if (/^\s{0,3}>/.test(line)) {
        const q = [];
        while (i < lines.length && /^\s{0,3}>/.test(lines[i])) q.push(lines[i++].replace(/^\s{0,3}>\s?/, ""));
        html += `<blockquote>${markdown(q.join("\n"))}</blockquote>`;
        continue;
      }
      if ((m = line.match(/^(\s*)([-*+]|\d+[.)])\s+/))) {
        const ordered = /\d/.test(m[2]);
        const items = [];
        while (i < lines.length) {
          const l = lines[i];
          const im = l.match(/^(\s*)([-*+]|\d+[.)])\s+(.*)$/);
          if (im && im[1].length <= m[1].length + 1 && /\d/.test(im[2]) === ordered) {
            items.push([im[3]]);
            i++;
          } else if (items.length && /^\s{2,}\S/.test(l)) {
            items[items.length - 1].push(l.trim());
            i++;
          } else break;
        }
        const tag = ordered ? "ol" : "ul";
        html += `<${tag}>` + items.map((it) => `<li>${inline(it.join("\n"))}</li>`).join("") + `</${tag}>`;
        continue;
      }
      if (line.includes("|") && i + 1 < lines.length && /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/.test(lines[i + 1])) {
        const head = splitRow(line);
        const aligns = splitRow(lines[i + 1]).map((c) => (/^:-+:$/.test(c) ? "center" : /-+:$/.test(c) ? "right" : ""));
        i += 2;
        const rows = [];
        while (i < lines.length && lines[i].includes("|") && lines[i].trim() !== "") rows.push(splitRow(lines[i++]));
        const cell = (tag, c, k) => `<${tag}${aligns[k] ? ` style="text-align:${aligns[k]}"` : ""}>${inline(c)}</${tag}>`;
        html += "<table><thead><tr>" + head.map((c, k) => cell("th", c, k)).join("") + "</tr></thead><tbody>" +
          rows.map((r) => "<tr>" + r.map((c, k) => cell("td", c, k)).join("") + "</tr>").join("") + "</tbody></table>";
        continue;
      }
      const para = [];
      while (i < lines.length && !/^\s*$/.test(lines[i]) && !(para.length && isBlockStart(lines[i]))) para.push(lines[i++]);
      html += `<p>${inline(para.join("\n"))}</p>`;
    }
    return html;
  }

  // ---- outputs ----------------------------------------------------------------------------
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // Frames of untrusted HTML/SVG: sandboxed without allow-same-origin (an opaque origin that
  // cannot reach this page, its cookie or its storage), no modals, no top navigation. The
  // page's CSP, which srcdoc frames inherit, blocks every inline script a cell printed; the
  // one script allowed (by its hash), frame.js, only reports the frame's height.
  // The exact text the page's CSP allows by hash (the server inlined it into the page).
  const FRAME_SCRIPT = (document.getElementById("frame-script") || {}).textContent || "";
  const frames = new WeakMap();
  window.addEventListener("message", (ev) => {
    if (!ev.data || typeof ev.data.jmcpFrameHeight !== "number") return;
    for (const f of document.querySelectorAll("iframe.sandboxed")) {
      if (f.contentWindow === ev.source) {
        const h = Math.max(24, Math.min(4000, Math.ceil(ev.data.jmcpFrameHeight) + 4));
        if (frames.get(f) !== h) { frames.set(f, h); f.style.height = h + "px"; }
        return;
      }
    }
  });

  function sandboxed(content, kind, guess) {
    const f = el("iframe", "sandboxed " + kind);
    f.setAttribute("sandbox", "allow-scripts");
    f.setAttribute("referrerpolicy", "no-referrer");
    f.setAttribute("loading", "lazy");
    f.title = kind === "svg-output" ? "SVG output" : "HTML output";
    f.style.height = (guess || 150) + "px";
    f.srcdoc = '<!doctype html><html><head><meta charset="utf-8"><style>' +
      "body{margin:0;padding:2px;font:13px/1.4 system-ui,sans-serif;color:#222;background:transparent}" +
      "table{border-collapse:collapse;font-size:12px}th,td{border:0;padding:4px 8px;text-align:right}" +
      "thead th{border-bottom:1px solid #bbb}tbody tr:nth-child(odd){background:#f5f5f5}" +
      "</style></head><body>" + content + "<script>" + FRAME_SCRIPT + "</script></body></html>";
    return f;
  }

  function guessHeight(html) {
    const rows = (html.match(/<tr/gi) || []).length;
    return rows ? Math.min(600, 30 + rows * 24) : 120;
  }

  const ORDER = ["application/vnd.jupyter.widget-view+json", "text/html", "image/svg+xml", "image/png",
    "image/jpeg", "image/gif", "text/markdown", "text/latex", "application/json", "text/plain"];

  function fullLink(o) {
    if (!o.full) return null;
    const a = el("a", "full-link", o.total_bytes ? `whole output (${fmtBytes(o.total_bytes)})` : "whole output");
    a.href = o.full;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function fmtBytes(n) {
    if (n == null) return "";
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
    return (n / 1073741824).toFixed(2) + " GiB";
  }

  function renderData(o) {
    const data = o.data || {};
    const mime = ORDER.find((m) => typeof data[m] === "string" && (m !== "application/vnd.jupyter.widget-view+json"));
    if (!mime) return el("pre", "output-text muted", o.omitted ? "(output too large to show here)" : "");
    const v = data[mime];
    switch (mime) {
      case "text/html":
        return sandboxed(v, "html-output", guessHeight(v));
      case "image/svg+xml":
        return sandboxed(v, "svg-output", 300);
      case "image/png":
      case "image/jpeg":
      case "image/gif": {
        const img = el("img", "image-output");
        img.alt = "image output";
        img.src = `data:${mime};base64,${v.replace(/\s/g, "")}`;
        const md = (o.metadata && o.metadata[mime]) || {};
        if (md.width) img.width = md.width;
        if (md.height) img.height = md.height;
        return img;
      }
      case "text/markdown": {
        const d = el("div", "markdown output-markdown");
        d.innerHTML = markdown(v);
        return d;
      }
      case "application/json": {
        let t = v;
        try { t = JSON.stringify(JSON.parse(v), null, 2); } catch (_) { /* shown as is */ }
        return el("pre", "output-text", t);
      }
      default: {
        const p = el("pre", "output-text");
        p.innerHTML = ansi(v);
        return p;
      }
    }
  }

  function renderOutput(o) {
    const wrap = el("div", "output output-" + (o.output_type || "unknown"));
    if (o.output_type === "stream") {
      const p = el("pre", "output-text stream" + (o.name === "stderr" ? " stderr" : ""));
      p.innerHTML = ansi(o.text || "");
      wrap.appendChild(p);
    } else if (o.output_type === "error") {
      const p = el("pre", "output-text error");
      p.innerHTML = o.traceback ? ansi(o.traceback) : esc(`${o.ename}: ${o.evalue}`);
      wrap.appendChild(p);
    } else {
      wrap.appendChild(renderData(o));
    }
    const a = fullLink(o);
    if (a) wrap.appendChild(a);
    return wrap;
  }

  window.JR = { esc, highlight, ansi, markdown, renderOutput, fmtBytes, el };
})();
