"""The web view (issue 13) in a real headless Chromium (Debian's `chromium` + `chromium-driver`,
driven by Selenium) against the release binary as a daemon: the token link signs the browser
in (an HttpOnly, SameSite=Strict cookie; the token leaves the URL), a wrong token is refused,
a cell started over MCP prints into the page live, the page's Interrupt reaches the MCP
client as `interrupted` (with who did it in the note), a queued execution is cancelled from
the page, a matplotlib image and a pandas table render, and a cell that prints `<script>`
runs nothing in the page (nor in its sandboxed frame). A screenshot of each state is saved
(under $JMCP_TEST_ARTIFACTS when set, else the test's tmp dir).

One daemon and one browser per module; MCP calls are raw JSON-RPC over Streamable HTTP
(`daemon.Daemon.rpc`, client name "raw-http") plus one call through the official SDK."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from daemon import Daemon, module_daemon, tool_json, wait_for

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian chromium and chromium-driver are not installed (scripts/setup.sh installs them)",
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "web")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    base = os.environ.get("JMCP_TEST_ARTIFACTS")
    d = Path(base) / "web_view" if base else tmp_path_factory.mktemp("web-screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def browser(daemon: Daemon, tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", f"--user-data-dir={profile}", "--no-first-run",
              "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(a)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER,
                                      log_output=str(profile / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_window_size(1280, 800)
    try:
        yield driver
    finally:
        driver.quit()  # chromedriver stops the browser it started and exits


def call(d: Daemon, sid: str, tool: str, **args) -> dict:
    r = d.rpc(sid, "tools/call", {"name": tool, "arguments": args}, id=tool)
    assert not r["result"].get("isError"), r
    return tool_json(r)


@pytest.fixture(scope="module")
def sid(daemon: Daemon) -> str:
    return daemon.initialize()


def sign_in(browser, d: Daemon, notebook: str | None = None) -> None:
    browser.get(f"{d.base_url}/?token={d.token}" + (f"&notebook={notebook}" if notebook else ""))
    wait_for(lambda: browser.find_element(By.ID, "conn").text == "live", 20, "the page's /events link")


def shot(browser, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    assert path.stat().st_size > 1000


def js(browser, script: str):
    return browser.execute_script(script)


def click(browser, selector: str) -> None:
    """Clicks the element; the page redraws its header and lists as events arrive, so an
    element found a moment ago may have been replaced: find it again then."""
    def attempt():
        try:
            browser.find_element(By.CSS_SELECTOR, selector).click()
            return True
        except StaleElementReferenceException:
            return False
    wait_for(attempt, 10, f"a click on {selector}")


def no_alert(browser) -> bool:
    try:
        browser.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def make_notebook(d: Daemon, sid: str, name: str, cells: list[str]) -> list[str]:
    r = call(d, sid, "create_notebook", notebook=name,
             cells=[{"cell_type": "code", "source": s} for s in cells])
    return r["cell_ids"]


@pytest.mark.timeout(60)
def test_a_wrong_token_is_refused_and_the_link_signs_in(daemon: Daemon, browser, shots: Path):
    d = daemon
    r = d.get("/?token=not-the-token")
    assert r.status_code == 401 and "set-cookie" not in r.headers, r.headers
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert d.get("/api/view/overview").status_code == 401
    assert d.get("/").status_code == 401
    browser.delete_all_cookies()  # tests may run in any order (pytest-xdist worksteal)
    browser.get(f"{d.base_url}/?token=not-the-token")
    assert "wrong" in browser.find_element(By.TAG_NAME, "body").text
    assert not browser.get_cookies()
    shot(browser, shots, "01-wrong-token")

    sign_in(browser, d)
    assert "token" not in browser.current_url, browser.current_url
    (cookie,) = browser.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert d.token not in cookie["value"]
    assert js(browser, "return document.cookie") == "", "HttpOnly: no script reads it"
    csp = d.get("/", headers={"Cookie": f"{cookie['name']}={cookie['value']}"}).headers[
        "content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # A control from a browser without the page's CSRF header is refused.
    status = js(browser, """
        return fetch('/api/view/interrupt', {method: 'POST', headers: {'Content-Type': 'application/json'},
                     body: JSON.stringify({notebook: 'x.ipynb'})}).then(r => r.status);""")
    assert status == 403
    shot(browser, shots, "02-signed-in")


@pytest.mark.timeout(90)
def test_live_output_then_interrupt_and_restart_from_the_page(daemon: Daemon, browser, sid: str,
                                                             shots: Path):
    d = daemon
    (cell,) = make_notebook(d, sid, "live.ipynb", [
        "import time\nfor i in range(100000):\n    print('tick', i, flush=True)\n    time.sleep(0.02)"])
    sign_in(browser, d, "live.ipynb")
    r = call(d, sid, "execute_cell", notebook="live.ipynb", cell_id=cell, timeout_s=0.5)
    assert r["status"] in ("pending", "running"), r  # pending while its kernel starts
    xid = r["execution_id"]

    def live_text():
        return js(browser, "const e = document.querySelector('.cell.running .live-stream');"
                           "return e ? e.textContent : '';")

    first = wait_for(lambda: (t := live_text()) and "tick 5" in t and t, 30, "live output in the page")
    wait_for(lambda: len(live_text()) > len(first), 20, "the output to keep growing")
    assert js(browser, "return document.querySelector('.cell.running .prompt').textContent") == "[*]:"
    shot(browser, shots, "03-live-output")

    click(browser, "button[data-action=interrupt]")
    done = call(d, sid, "get_execution", execution_id=xid, wait_s=30)
    assert done["status"] == "interrupted", done
    got = d.rpc(sid, "tools/call", {"name": "get_execution", "arguments": {"execution_id": xid}})
    text = " ".join(c.get("text", "") for c in got["result"]["content"])
    assert "from the web view" in text, text
    wait_for(lambda: js(browser, "return document.querySelectorAll('.cell.running').length") == 0,
             20, "the running mark to go")
    wait_for(lambda: browser.find_elements(
        By.CSS_SELECTOR, f"tr[data-execution-id='{xid}'][data-status='interrupted']"), 20,
        "the timeline to show interrupted")
    who = browser.find_element(By.CSS_SELECTOR, f"tr[data-execution-id='{xid}'] td.who").get_attribute(
        "textContent")
    assert who.startswith("MCP session") and "raw-http" in who, who
    shot(browser, shots, "04-interrupted")

    # Restart asks first; the kernel comes back with another PID.
    def kernel() -> dict:  # none while the restart is under way
        return next((k for k in call(d, sid, "list_kernels")["kernels"] if k["notebook"] == "live.ipynb"),
                    {"pid": None, "state": "none"})

    pid = kernel()["pid"]
    click(browser, "button[data-action=restart]")
    browser.switch_to.alert.dismiss()
    time.sleep(0.3)  # a dismissed confirm must do nothing: there is no event to wait for
    assert kernel()["pid"] == pid
    click(browser, "button[data-action=restart]")
    browser.switch_to.alert.accept()
    wait_for(lambda: (k := kernel())["pid"] not in (pid, None) and k["state"] == "idle", 30,
             "the restarted kernel")


@pytest.mark.timeout(60)
def test_cancel_a_queued_execution_from_the_page(daemon: Daemon, browser, sid: str, shots: Path):
    d = daemon
    slow, queued = make_notebook(d, sid, "queue.ipynb", ["import time\ntime.sleep(60)", "print('ran')"])
    sign_in(browser, d, "queue.ipynb")
    first = call(d, sid, "execute_cell", notebook="queue.ipynb", cell_id=slow, timeout_s=0.2)
    second = call(d, sid, "execute_cell", notebook="queue.ipynb", cell_id=queued, timeout_s=0.1)
    assert second["status"] == "pending", second
    qid = second["execution_id"]
    sel = f"tr[data-execution-id='{qid}'][data-status='pending'] button[data-action=cancel]"
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, sel), 20, "the queued row")
    wait_for(lambda: js(browser, "return document.querySelectorAll('.cell.pending').length") == 1,
             20, "the pending cell mark")
    shot(browser, shots, "05-queued")
    click(browser, sel)
    r = call(d, sid, "get_execution", execution_id=qid, wait_s=10)
    assert r["status"] == "cancelled", r
    got = d.rpc(sid, "tools/call", {"name": "get_execution", "arguments": {"execution_id": qid}})
    assert "cancelled from the web view" in str(got["result"]), got
    wait_for(lambda: browser.find_elements(
        By.CSS_SELECTOR, f"tr[data-execution-id='{qid}'][data-status='cancelled']"), 20,
        "the timeline to show cancelled")
    shot(browser, shots, "06-cancelled")
    call(d, sid, "cancel_execution", execution_id=first["execution_id"])


@pytest.mark.timeout(90)
def test_matplotlib_image_pandas_table_and_a_script_that_must_not_run(
        daemon: Daemon, browser, sid: str, shots: Path):
    d = daemon
    make_notebook(d, sid, "rich.ipynb", [
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()",
        "import pandas as pd\npd.DataFrame({'alpha': [1, 2], 'beta': ['x', 'y']})",
        "from IPython.display import HTML, display\n"
        "display(HTML('<b id=\"marker\">shown</b><script>window.ranInFrame = 1; "
        "try { window.parent.pwned = 1; } catch (e) {} alert(1);</script>'"
        "'<img src=x onerror=\"window.ranInFrame = 2\">'))\n"
        "print('<script>window.pwnedByStream = 1</script>')",
    ])
    r = call(d, sid, "run_all_cells", notebook="rich.ipynb", timeout_s=60)
    assert all(e["status"] == "completed" for e in r["executions"]), r
    sign_in(browser, d, "rich.ipynb")
    img = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "img.image-output"), 30, "the plot")[0]
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", img) > 100, 10,
             "the image to load")
    frames = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "iframe.html-output"), 20, "HTML frames")
    assert all(f.get_attribute("sandbox") == "allow-scripts" for f in frames)
    assert len(frames) == 2, len(frames)
    browser.execute_script("arguments[0].scrollIntoView()", frames[0])
    shot(browser, shots, "07-image-and-table")

    browser.switch_to.frame(frames[0])
    heads = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table th")]
    browser.switch_to.default_content()
    assert "alpha" in heads and "beta" in heads, heads

    browser.switch_to.frame(frames[1])
    assert browser.find_element(By.ID, "marker").text == "shown"
    ran = browser.execute_script("return typeof window.ranInFrame")
    origin = browser.execute_script("return window.origin")
    browser.switch_to.default_content()
    assert ran == "undefined", "the page's CSP blocks inline script inside the frame too"
    assert origin == "null", "the frame has an opaque origin (no allow-same-origin)"
    assert browser.execute_script(
        "return [typeof window.pwned, typeof window.pwnedByStream]") == ["undefined", "undefined"]
    assert no_alert(browser)
    stream = browser.find_elements(By.CSS_SELECTOR, ".output-stream pre")[-1].text
    assert "<script>window.pwnedByStream = 1</script>" in stream, "printed text shows as text"
    shot(browser, shots, "08-script-not-run")


@pytest.mark.timeout(60)
def test_the_timeline_names_the_sdk_client(daemon: Daemon, browser, sid: str, shots: Path):
    d = daemon

    make_notebook(d, sid, "sdk.ipynb", ["1"])

    async def run():
        async with d.session() as s:
            r = await s.call_tool("execute_code", {"notebook": "sdk.ipynb", "code": "6 * 7"})
            return r.structured_content

    r = asyncio.run(run())
    assert r["status"] == "completed", r
    sign_in(browser, d, "sdk.ipynb")
    sel = f"tr[data-execution-id='{r['execution_id']}'] td.who"
    who = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, sel), 20,
                   "the SDK's row")[0].get_attribute("textContent")
    assert who.startswith("MCP session") and "(mcp" in who, who
    # The overview shows the kernels with PID and memory.
    meta = browser.find_element(By.CSS_SELECTOR, ".nb-item[data-path='sdk.ipynb'] .nb-meta").text
    assert "pid" in meta and ("MiB" in meta or "KiB" in meta), meta
    shot(browser, shots, "09-timeline")


@pytest.mark.timeout(90)
def test_clear_output_empties_the_running_cell_in_the_page(daemon: Daemon, browser, sid: str,
                                                          shots: Path):
    """`clear_output()` empties the cell at once, `clear_output(wait=True)` when the next
    output comes (as JupyterLab and nbclient do), from the `/events` clear_output event."""
    d = daemon
    (cell,) = make_notebook(d, sid, "clear.ipynb", [
        "import time\nfrom IPython.display import clear_output\n"
        "print('first output', flush=True)\ntime.sleep(2)\n"
        "clear_output()\nprint('second output', flush=True)\ntime.sleep(3)\n"
        "clear_output(wait=True)\ntime.sleep(1)\nprint('third output', flush=True)\n"
        "time.sleep(600)"])
    call(d, sid, "start_kernel", notebook="clear.ipynb")
    sign_in(browser, d, "clear.ipynb")
    r = call(d, sid, "execute_cell", notebook="clear.ipynb", cell_id=cell, timeout_s=0)

    def live_text():
        return js(browser, "const e = document.querySelector('.cell.running .outputs');"
                           "return e ? e.textContent : '';")

    wait_for(lambda: "first output" in live_text(), 30, "the first output in the page")
    wait_for(lambda: "second output" in (t := live_text()) and "first output" not in t, 30,
             "clear_output() to empty the cell before the second output")
    shot(browser, shots, "07-cleared")
    wait_for(lambda: "third output" in (t := live_text()) and "second output" not in t, 30,
             "clear_output(wait=True) to empty the cell when the third output came")
    call(d, sid, "interrupt_kernel", notebook="clear.ipynb")
    done = call(d, sid, "get_execution", execution_id=r["execution_id"], wait_s=30)
    assert done["status"] == "interrupted", done
    call(d, sid, "shutdown_kernel", notebook="clear.ipynb")
