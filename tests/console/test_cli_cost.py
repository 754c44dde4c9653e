"""``tidectl cost``: the cost report of a real store as aligned text or JSON; a window from
``--since``; bad input is exit status 2 with a sentence; no store is said, not created."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.console.cost.helpers import HOUR, burst, end, launch
from tidectl.console.cli import main
from tidectl.console.lifecycle.store import Store

CONFIG = """\
[cluster]
name = "lab"
[ssh]
user = "tidectl"
known_hosts = "known_hosts"
[[nodes]]
names = "gpu[1-2]"
[[pools]]
name = "h100"
provider = "aws"
region = "us-east-1"
instance_types = ["p5.48xlarge"]
gpus_per_node = 8
max_nodes = 4
price_per_hour = 24.0
image_id = "ami-0123456789abcdef0"
[[budgets]]
limit = 1000.0
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "cluster.toml"
    path.write_text(CONFIG)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A burst of two nodes: one ran 2 h and was drained by bob an hour ago, one runs."""
    path = tmp_path / "lab.sqlite3"
    now = time.time()
    with Store.open(path) as opened:
        intent = burst(opened, "h100", now - 3 * HOUR)
        launch(opened, "h100-a-1", intent, 24.0, now - 3 * HOUR)
        launch(opened, "h100-a-2", intent, 24.0, now - 3 * HOUR)
        end(opened, "h100-a-1", now - HOUR, reason="drain asked by bob: done", actor="bob")
    return path


def test_json_is_the_report_for_scripts(
    config: Path, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys, "cost", "-c", str(config), "--store", str(store), "--since", "4h", "--json"
    )
    assert (status, err) == (0, "")
    doc = json.loads(out)
    assert set(doc) == {
        "store", "cluster", "now", "since", "burn_per_hour", "idle_per_hour", "spend",
        "gpu_hours", "pools", "bursts", "nodes", "budgets",
    }  # fmt: skip
    assert doc["now"] - doc["since"] == pytest.approx(4 * HOUR, abs=1)
    assert doc["burn_per_hour"] == 24.0
    assert doc["spend"]["window"] == pytest.approx((2 + 3) * 24.0, abs=0.05)
    (pool,) = doc["pools"]
    assert (pool["pool"], pool["billing"], pool["burn_per_hour"]) == ("h100", 1, 24.0)
    assert pool["gpu_hours_paid"] == pytest.approx(5 * 8, abs=0.01)
    (b,) = doc["bursts"]
    assert (b["state"], b["nodes"], b["asked_by"]) == ("running", 2, "alice")
    assert b["spend"] == pytest.approx(b["node_hours"] * 24.0, abs=0.001)
    assert [n["node"] for n in doc["nodes"]] == ["h100-a-1", "h100-a-2"]
    assert [n["billing"] for n in doc["nodes"]] == [False, True]
    (budget,) = doc["budgets"]
    assert (budget["pool"], budget["period"], budget["limit"], budget["reached"]) == (
        None,
        "day",
        1000.0,
        False,
    )


def test_text_is_aligned_for_people(
    config: Path, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "cost", "-c", str(config), "--store", str(store), "--since", "4h")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("lab: costs at ")
    assert lines[1] == "  burn now $24.00/h · 1 burst(s) running"
    assert any(line.startswith("  since ") and "$120.0" in line for line in lines)
    assert any("the cluster's daily budget of $1,000.00" in line for line in lines)
    header = next(line for line in lines if line.startswith("POOL "))
    row = lines[lines.index(header) + 1]
    assert row.split()[:3] == ["h100", "1", "$24.00"]
    assert header.index("BURN/H") + len("BURN/H") == row.index("$24.00") + len("$24.00")
    burst_row = next(line for line in lines if " alice " in line)
    assert burst_row.endswith("running") and "$120.0" in burst_row


def test_bad_input_is_exit_status_2_with_a_sentence(
    config: Path, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "cost", "-c", str(config), "--store", str(store), "--since", "x")
    assert status == 2 and err.startswith("tidectl cost: --since 'x': ")
    status, _, err = run(
        capsys, "cost", "-c", str(config), "--store", str(store), "--since", "2999-01-01T00:00"
    )
    assert status == 2 and "is not in the past: give a time before now" in err


def test_no_store_is_said_and_not_created(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.sqlite3"
    status, out, _ = run(capsys, "cost", "-c", str(config), "--store", str(missing))
    assert status == 0 and "No lifecycle store at" in out and "nothing was spent" in out
    status, out, _ = run(capsys, "cost", "-c", str(config), "--store", str(missing), "--json")
    doc = json.loads(out)
    assert (doc["spend"]["today"], doc["pools"], doc["bursts"]) == (0.0, [], [])
    assert [b["spent"] for b in doc["budgets"]] == [0.0]
    assert not missing.exists()
