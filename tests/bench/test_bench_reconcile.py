"""The reconcile benchmark (bench/reconcile.py) at a small size, so it cannot rot unseen.

It checks that the benchmark runs against the real store and engine and that what it reports
holds together (a steady world really is steady, churn really moves nodes, every timing is a
positive number); whether the goal is met is the benchmark's own answer, not asserted here.
"""

from __future__ import annotations

import importlib
import json
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """bench/reconcile.py as a module (it imports its neighbour as a script would)."""
    monkeypatch.syspath_prepend(str(BENCH))
    yield importlib.import_module("reconcile")
    for name in ("reconcile", "reconcile_world"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def _timings(result: dict[str, object]) -> dict[str, dict[str, float]]:
    return {k: v for k, v in result.items() if k.endswith("_ms") and isinstance(v, dict)}


async def test_a_small_cluster_is_steady_then_churns(bench: ModuleType, tmp_path: Path) -> None:
    result = await bench.measure(
        tmp_path, nodes=50, history=10, passes=3, churn_share=0.2, churn_passes=2
    )

    # 50 live nodes and 10 terminated ones are all in the store, in the seeded spread.
    assert sum(result["states_at_end"].values()) >= 60
    assert result["states_at_end"]["active"] > 25
    # Steady: nothing to move, only what a busy cluster always reports.
    assert result["steady_actions_per_pass"]["changes"] == 0
    assert result["steady_actions_per_pass"]["reports"] >= 1  # the failed node with a job
    # Churn: every changed node moved (an orphan is adopted, a booted node bootstraps...).
    assert result["churn_nodes_per_pass"] == 10
    assert all(count >= 10 for count in result["churn_changes_per_pass"])
    assert sum(result["churn_kinds"].values()) == 20
    timings = _timings(result)
    assert set(timings) >= {"steady_reconcile_once_ms", "steady_plan_ms", "churn_reconcile_once_ms"}
    for name, stats in timings.items():
        assert 0 < stats["median"] <= stats["p95"] <= stats["max"] < 10_000, name
    assert isinstance(result["met"], bool)


def test_the_script_prints_json_with_the_machine(tmp_path: Path) -> None:
    script = [sys.executable, str(BENCH / "reconcile.py"), "--json"]
    size = ["--nodes", "20", "--passes", "2", "--churn-passes", "1"]
    out = subprocess.run([*script, *size], capture_output=True, text=True, check=True, timeout=60)
    result = json.loads(out.stdout)
    assert result["nodes"] == 20
    assert result["python"] == f"{platform.python_implementation()} {platform.python_version()}"
    assert "CPUs" in result["machine"]
    assert result["steady_reconcile_once_ms"]["median"] > 0
