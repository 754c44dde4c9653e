"""``tidectl demo`` and ``tidectl console``, and the ``DemoCluster`` under them.

Real processes throughout: the demo starts ``tidectl sim serve`` as a child, and the console's
collector reaches it over real SSH on 127.0.0.1. The full-screen console itself is tested
with the TUI; here, the headless demo and everything around starting and stopping it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidectl.console.commands import status
from tidectl.console.demo import DemoCluster, DemoError
from tidectl.console.sim import cli as sim_cli

TIDECTL = [sys.executable, "-m", "tidectl.console"]
NODE_KEYS = {
    "name",
    "site",
    "address",
    "link",
    "link_error",
    "health",
    "findings",
    "gpus",
    "agent",
    "last_sample_age_s",
}


def tidectl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIDECTL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_headless_demo_runs_its_time_and_prints_the_fleet(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    started = time.monotonic()
    demo = subprocess.Popen(
        [
            *(*TIDECTL, "demo", "--headless", "--json", "--nodes", "4", "--seconds", "4"),
            *("--seed", "0", "--fault-rate", "0", "--out", str(out)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid_file = out / "server.pid"
        while not pid_file.exists() and demo.poll() is None:
            time.sleep(0.05)
        server_pid = int(pid_file.read_text())
        stdout, stderr = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    elapsed = time.monotonic() - started
    assert demo.returncode == 0, stderr
    assert stderr == ""
    assert elapsed >= 4  # it ran the whole time, not until every node had reported
    report = json.loads(stdout)
    assert set(report) == {
        "cluster",
        "healthy",
        "nodes",
        "cloud_nodes",
        "burn_rate_per_hour",
        "seconds",
        "seed",
        "fault_rate_per_hour",
        "out",
    }
    assert (report["cluster"], report["seconds"], report["seed"]) == ("sim", 4.0, 0)
    assert (report["fault_rate_per_hour"], report["out"]) == (0.0, str(out.resolve()))
    assert [node["name"] for node in report["nodes"]] == [f"sim{i:04d}" for i in range(1, 5)]
    for node in report["nodes"]:
        assert set(node) == NODE_KEYS
        assert node["link"] == "streaming", node
        assert (node["health"], node["findings"], node["gpus"]) == ("ok", [], 8)
    assert report["healthy"] is True
    # The control plane ran (nothing was burst): no cloud nodes, nothing billing.
    assert (report["cloud_nodes"], report["burn_rate_per_hour"]) == ({}, 0.0)
    assert (out / "store.sqlite3").is_file()  # the demo's lifecycle store, in its folder
    # The server is gone, and it stopped cleanly (it removes its pid file on the way out).
    assert not running(server_pid)
    assert not pid_file.exists()
    assert (out / "cluster.toml").is_file()  # --out is kept


def test_random_faults_show_up_as_findings() -> None:
    # 36,000 faults per node per hour: ten a second, of which some last minutes; seeded, so
    # the same faults come each run. Nothing is injected through the fault file. Collected
    # until each node has sent two samples (a second of faults, dozens of them).
    with DemoCluster(2, seed=0, fault_rate_per_hour=36000.0) as cluster:
        fleet = asyncio.run(status.collect(cluster.config, 30.0))
        assert cluster.faults.out == cluster.out
        assert (cluster.out / "faults.txt").read_text() == ""
    for node in fleet.nodes.values():
        assert node.link.value == "streaming"
        assert node.findings, f"{node.spec.name}: no findings"
        assert node.health.word in {"warn", "critical"}


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--nodes", "0"], "--nodes must be at least 1, got 0"),
        (["--nodes", "2", "--fault-rate", "-1"], "--fault-rate must be a number of faults"),
    ],
)
def test_a_demo_that_cannot_start_says_why(options: list[str], says: str) -> None:
    result = tidectl("demo", "--headless", "--seconds", "1", *options)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("tidectl demo: the simulated cluster did not start ")
    assert says in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--seconds", "3"], "--seconds is for --headless runs; add --headless or drop it"),
        (["--json"], "--json is for --headless runs; add --headless or drop it"),
        (["--headless", "--seconds", "0"], "--seconds must be a number of seconds above 0"),
        (["--headless", "--seconds", "nan"], "--seconds must be a number of seconds above 0"),
        # Captured output is no terminal: the console would draw into a pipe.
        ([], "the console needs a terminal, and stdout is not one; pass --headless"),
    ],
)
def test_bad_demo_options_are_usage_errors(options: list[str], says: str) -> None:
    result = tidectl("demo", *options)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"tidectl demo: {says}")
    assert result.stderr.count("\n") == 1


def test_console_without_its_config_says_so() -> None:
    result = tidectl("console", "-c", "/nonexistent.toml")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "tidectl console: /nonexistent.toml: no such file; pass the path of your "
        "cluster.toml (see docs/config.md)\n"
    )


@pytest.mark.parametrize("raised", [RuntimeError, KeyboardInterrupt])
def test_the_server_stops_when_the_block_raises(raised: type[BaseException]) -> None:
    cluster = DemoCluster(1)
    with pytest.raises(raised), cluster:
        pid = cluster.pid
        assert pid is not None and running(pid)
        assert cluster.ready_line.startswith("tidectl sim: 1 nodes on 127.0.0.1:")
        assert [node.name for node in cluster.config.nodes] == ["sim0001"]
        raise raised
    assert not running(pid)
    assert not cluster.out.exists()  # a temporary folder is removed
    assert cluster.pid is None


def test_the_server_ends_with_a_demo_killed_outright(tmp_path: Path) -> None:
    # SIGKILL runs no cleanup: only the kernel's parent-death signal can stop the server.
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from tidectl.console.demo import DemoCluster\n"
        "cluster = DemoCluster(1, out=Path(sys.argv[1])).__enter__()\n"
        "print(cluster.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    demo = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo.returncode == -signal.SIGKILL, demo.stderr
    server_pid = int(demo.stdout)
    assert ends_within(server_pid, 20)


def test_a_server_not_ready_in_time_is_stopped_and_reported(tmp_path: Path) -> None:
    # Children other tests left running on purpose (session fixtures: a Slurm, a moto server)
    # are not this test's: only a child the demo started must be gone.
    before = set(_children_of_this_process())
    cluster = DemoCluster(1, out=tmp_path / "demo", ready_timeout_s=0.01)
    with pytest.raises(DemoError) as error, cluster:
        pass
    assert str(error.value).startswith("the simulated cluster was not ready after 0.01 s")
    assert "try fewer --nodes" in str(error.value)
    assert cluster.pid is None
    new = set(_children_of_this_process()) - before
    assert not any(running(int(p)) for p in new)


def _children_of_this_process() -> list[str]:
    path = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    return path.read_text().split()


@pytest.mark.parametrize("rate", ["-1", "nan", "inf"])
def test_sim_serve_refuses_a_fault_rate_that_is_not_a_rate(
    tmp_path: Path, rate: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    code = sim_cli.main(["serve", "--nodes", "1", "--out", str(out), "--fault-rate", rate])
    assert code == 2
    shown = str(float(rate)) if not math.isnan(float(rate)) else "nan"
    assert capsys.readouterr().err == (
        "tidectl sim serve: error: --fault-rate must be a number of faults per node per hour, "
        f"0 or more, got {shown}\n"
    )
    assert not out.exists()  # refused before anything was written
