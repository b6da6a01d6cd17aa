// jupyter-mcp web view: the one script a sandboxed output frame may run. It reports the
// frame's content height to the page (a number only), so the frame can be sized to fit.
"use strict";
(function () {
  let last = -1;
  function send() {
    const d = document.documentElement;
    const h = Math.max(d.scrollHeight, document.body ? document.body.scrollHeight : 0);
    if (h !== last) {
      last = h;
      parent.postMessage({ jmcpFrameHeight: h }, "*");
    }
  }
  window.addEventListener("load", send);
  if (typeof ResizeObserver === "function") new ResizeObserver(send).observe(document.documentElement);
  send();
})();
