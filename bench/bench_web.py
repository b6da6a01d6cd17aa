"""Web view figures (issue 13): how smoothly the page draws while a cell prints N lines
(default 20,000, each flushed), in headless Chromium (Debian `chromium` + `chromium-driver`).

The page records every animation frame (requestAnimationFrame) and every long task
(PerformanceObserver `longtask`, > 50 ms on the main thread) from before the cell starts until
it ends. Prints: frames, frame interval p50/p99/max (ms), frames over 50 ms, long tasks
(count, total ms), characters kept in the live stream box, wall time of the cell. Figures,
never assertions. The daemon, its kernel and the browser are stopped by PID.

    python bench/bench_web.py [--lines 20000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

from daemon import Daemon, cleanup, tool_json, wait_for  # noqa: E402

RECORDER = """
window.__frames = []; window.__long = [];
(function tick(t) { window.__frames.push(t); requestAnimationFrame(tick); })(performance.now());
try {
  new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__long.push(e.duration)))
    .observe({type: 'longtask', buffered: false});
} catch (e) {}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--assets", help="serve the page's files from this folder (development; "
                    "sets JUPYTER_MCP_TEST_HOOKS and JUPYTER_MCP_WEB_ASSETS_DIR for the daemon)")
    args = ap.parse_args()
    if args.assets:
        import chaos
        plain = chaos.server_env

        def with_assets(base: Path) -> dict[str, str]:
            env = plain(base)
            hooks = base / "hooks"
            hooks.mkdir(exist_ok=True)
            env.update(JUPYTER_MCP_TEST_HOOKS=str(hooks),
                       JUPYTER_MCP_WEB_ASSETS_DIR=str(Path(args.assets).resolve()))
            return env

        chaos.server_env = with_assets
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    base = Path(tempfile.mkdtemp(prefix="bench-web-"))
    root, data = base / "root", base / "data"
    for p in (root, data, base / "ipython"):
        p.mkdir()
    d = Daemon(base, root, data, extra=("--stop-kernels-on-exit",))
    driver = None
    try:
        sid = d.initialize()
        code = f"for i in range({args.lines}):\n    print(f'{{i:05d}} ' + 'x' * 60, flush=True)"
        r = d.rpc(sid, "tools/call", {"name": "create_notebook", "arguments": {
            "notebook": "flood.ipynb", "cells": [{"cell_type": "code", "source": code}]}})
        cell = tool_json(r)["cell_ids"][0]
        # Start the kernel first so the timing covers the printing only.
        d.rpc(sid, "tools/call", {"name": "start_kernel", "arguments": {"notebook": "flood.ipynb"}})
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,800", f"--user-data-dir={base / 'profile'}"):
            opts.add_argument(a)
        driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(
            executable_path=shutil.which("chromedriver")))
        driver.get(f"{d.base_url}/?token={d.token}&notebook=flood.ipynb")
        wait_for(lambda: driver.find_element(By.ID, "conn").text == "live", 20, "the page")
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, f".cell[data-cell-id='{cell}']"), 20, "cell")
        driver.execute_script(RECORDER)
        t0 = time.monotonic()
        r = tool_json(d.rpc(sid, "tools/call", {"name": "execute_cell", "arguments": {
            "notebook": "flood.ipynb", "cell_id": cell, "timeout_s": 300}}))
        wall = time.monotonic() - t0
        # Let the page draw the end.
        wait_for(lambda: driver.execute_script(
            "return !document.querySelector('.cell.running')"), 30, "the page to see the end")
        stats = driver.execute_script("""
            const f = window.__frames, gaps = [];
            for (let i = 1; i < f.length; i++) gaps.push(f[i] - f[i - 1]);
            return {gaps, long: window.__long};""")
        live_chars = driver.execute_script(
            "return Math.max(0, ...[...document.querySelectorAll('.cell pre.stream')]"
            ".map(e => e.textContent.length))")
        gaps = sorted(stats["gaps"])
        q = lambda p: gaps[min(len(gaps) - 1, int(p * len(gaps)))]  # noqa: E731
        print(json.dumps({
            "lines": args.lines, "status": r["status"], "cell_wall_s": round(wall, 2),
            "frames": len(gaps) + 1, "frame_ms_p50": round(statistics.median(gaps), 1),
            "frame_ms_p99": round(q(0.99), 1), "frame_ms_max": round(gaps[-1], 1),
            "frames_over_50ms": sum(g > 50 for g in gaps),
            "long_tasks": len(stats["long"]), "long_task_ms_total": round(sum(stats["long"]), 1),
            "stream_chars_shown_at_end": live_chars,
        }, indent=1))
    finally:
        if driver is not None:
            driver.quit()
        d.stop()
        cleanup(data)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
