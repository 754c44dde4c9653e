"""The panel in a real Jupyter kernel, run by ``nbclient`` (no browser): the example notebook,
then cells that check what the issue asks of it. The panel's task runs on the kernel's own
asyncio loop, every widget change happens on the kernel's main thread, it keeps updating
while another cell awaits, Burst's nodes reach its table, and closing it stops its tasks and
the demo's cluster."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notebook" / "cluster-panel.ipynb"

CHECKS = [
    # The panel's tasks run on this kernel's loop; watch who changes the summary, and when.
    """
import asyncio, json, threading
await panel.ready(60)
changes = []
panel.controls.summary.observe(
    lambda change: changes.append(threading.current_thread().name), names="value"
)
same_loop = panel._runner.get_loop() is asyncio.get_running_loop()
""",
    # Another cell that awaits: the panel keeps updating meanwhile (the agents stream).
    """
async with asyncio.timeout(30):
    while "8 streaming" not in panel.controls.summary.value:
        await asyncio.sleep(0.1)
print(json.dumps({"same_loop": same_loop, "threads": sorted(set(changes)),
                  "changes": len(changes)}))
""",
    # Burst, as the button's click handler does; the new nodes reach the table.
    """
panel.controls.burst.click()
await panel.settle()
async with asyncio.timeout(20):
    while not any("burst-" in l for l in panel.controls.table.get_state()["_options_labels"]):
        await asyncio.sleep(0.1)
print(json.dumps({"said": panel.messages[0][1]}))
""",
    """
await panel.aclose()
print(json.dumps({"closed": panel.closed, "runner_done": panel._runner.done(),
                  "tasks": len(panel._tasks)}))
""",
]


pytestmark = pytest.mark.slow  # a kernel and the demo's cluster: about 9 s


def _last_json(cell: nbformat.NotebookNode) -> dict[str, object]:
    texts = [out["text"] for out in cell.outputs if out.get("name") == "stdout"]
    assert texts, cell.outputs
    result: dict[str, object] = json.loads(texts[-1].strip().splitlines()[-1])
    return result


def test_the_example_notebook_runs_and_the_panel_updates_from_the_kernels_loop(
    tmp_path: Path,
) -> None:
    notebook = nbformat.read(EXAMPLE, as_version=4)
    first_code = len(notebook.cells)
    notebook.cells += [nbformat.v4.new_code_cell(source.strip()) for source in CHECKS]
    client = NotebookClient(
        notebook,
        timeout=90,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    shown = next(c for c in notebook.cells if c.cell_type == "code" and "demo(" in c.source)
    (display,) = [out for out in shown.outputs if out["output_type"] == "execute_result"]
    assert "application/vnd.jupyter.widget-view+json" in display["data"]

    watched = _last_json(notebook.cells[first_code + 1])
    assert watched["same_loop"] is True
    assert watched["threads"] == ["MainThread"]  # no bare thread ever touched a widget
    assert isinstance(watched["changes"], int) and watched["changes"] >= 1
    burst = _last_json(notebook.cells[first_code + 2])
    assert burst["said"] == "Launched 1 of 1 node(s) in pool burst"
    closed = _last_json(notebook.cells[first_code + 3])
    assert closed == {"closed": True, "runner_done": True, "tasks": 0}
