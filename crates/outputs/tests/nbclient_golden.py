"""Golden-output harness: run recorded IOPub messages through nbclient itself.

Reads JSON from stdin: a list of scenarios; a scenario is a list of cells, each
a list of [msg_type, content] pairs (IOPub messages of one execution, without
the final status idle, which this script appends). The cells of a scenario are
executed in order on ONE fresh NotebookClient with its default settings
(coalesce_streams=False), through the real NotebookClient.execute_cell code path
(process_message, output, clear_output, _update_display_id), with a fake
kernel client that replays the recorded messages. Then, as JupyterLab keeps
streams (SPEC section 4), CONSECUTIVE stream outputs of the same name are merged
and backspaces and carriage returns are applied (jupyterlab_streams below).

Prints JSON: per scenario, a list of {"outputs": [...], "execution_count": ...},
one per cell, taken after ALL its cells ran (so cross-cell display updates are
visible).

Used by the Rust test tests/golden.rs when /tmp/venvprobe/bin/python exists.
"""

import json
import re
import sys
from collections import deque
from queue import Empty

import nbformat
from nbclient import NotebookClient


class FakeChannel:
    def __init__(self):
        self.queue = deque()

    def get_msg(self, timeout=None):
        if not self.queue:
            raise Empty()
        return self.queue.popleft()


class FakeKernelClient:
    def __init__(self, cells):
        self.cells = list(cells)
        self.iopub_channel = FakeChannel()
        self.shell_channel = FakeChannel()
        self.counter = 0

    def is_alive(self):
        return True

    def execute(self, code, store_history=True, stop_on_error=True, **kwargs):
        self.counter += 1
        msg_id = "exec-%d" % self.counter
        messages = self.cells.pop(0)
        parent = {"msg_id": msg_id}
        for msg_type, content in messages + [["status", {"execution_state": "idle"}]]:
            self.iopub_channel.queue.append(
                {
                    "msg_type": msg_type,
                    "header": {"msg_type": msg_type, "msg_id": "m"},
                    "parent_header": dict(parent),
                    "metadata": {},
                    "content": content,
                }
            )
        self.shell_channel.queue.append(
            {
                "msg_type": "execute_reply",
                "header": {"msg_type": "execute_reply", "msg_id": "r"},
                "parent_header": dict(parent),
                "metadata": {},
                "content": {"status": "ok", "execution_count": self.counter},
            }
        )
        return msg_id


_RGX_CARRIAGERETURN = re.compile(r".*\r(?=[^\n])")  # nbclient's
_RGX_BACKSPACE = re.compile(r"[^\n]\x08")  # JupyterLab's fixBackspace


def jupyterlab_streams(outputs):
    """Merge consecutive same-name streams; apply \\b then \\r to each."""
    merged = []
    for out in outputs:
        if (
            out["output_type"] == "stream"
            and merged
            and merged[-1]["output_type"] == "stream"
            and merged[-1]["name"] == out["name"]
        ):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    for out in merged:
        if out["output_type"] == "stream":
            text = out["text"]
            while True:
                shorter = _RGX_BACKSPACE.sub("", text)
                if shorter == text:
                    break
                text = shorter
            out["text"] = _RGX_CARRIAGERETURN.sub("", text)
    return merged


def run_scenario(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("pass") for _ in cells]
    client = NotebookClient(nb, record_timing=False, allow_errors=True)
    client.kc = FakeKernelClient(cells)
    for index, cell in enumerate(nb.cells):
        client.execute_cell(cell, index)
    return [
        {"outputs": jupyterlab_streams(cell.outputs), "execution_count": cell.execution_count} for cell in nb.cells
    ]


def main():
    scenarios = json.load(sys.stdin)
    json.dump([run_scenario(cells) for cells in scenarios], sys.stdout)


if __name__ == "__main__":
    main()
