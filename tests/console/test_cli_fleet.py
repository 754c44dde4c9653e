"""``tidectl status`` and ``tidectl run`` as a user runs them, against ``tidectl sim serve``.

Everything here is a real process: the simulated cluster serving real SSH on 127.0.0.1, and
the CLI connecting to it, deploying the agent over SFTP and reading its stream.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TIDECTL = [sys.executable, "-m", "tidectl.console"]
NODES = 4


def _free_run(count: int) -> int:
    """A base port with ``count`` free ports after it (below 32768, the ephemeral range)."""
    for base in range(26000 + (os.getpid() % 200) * 20, 32000, count + 3):
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free run of ports")


@pytest.fixture(scope="module")
def sim_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("sim")
    server = subprocess.Popen(
        [
            *TIDECTL,
            "sim",
            "serve",
            "--nodes",
            str(NODES),
            "--base-port",
            str(_free_run(NODES)),
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    ready = server.stdout.readline()
    assert "config" in ready, server.stderr.read() if server.stderr else ready
    yield out
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0


def tidectl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIDECTL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_status_sees_every_node_healthy(sim_cluster: Path) -> None:
    result = tidectl("status", "-c", str(sim_cluster / "cluster.toml"), "--json", "--wait", "20")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["cluster"] == "sim" and report["healthy"] is True
    nodes = {node["name"]: node for node in report["nodes"]}
    assert sorted(nodes) == [f"sim{i:04d}" for i in range(1, NODES + 1)]
    for node in nodes.values():
        assert node["link"] == "streaming"
        assert node["health"] == "ok" and node["findings"] == []
        assert node["gpus"] == 8
        assert 0 <= node["last_sample_age_s"] < 3


def test_status_reports_an_injected_fault_and_exits_non_zero(sim_cluster: Path) -> None:
    inject = tidectl("sim", "inject", "--out", str(sim_cluster), "sim0002", "ecc_dbe", "gpu=1")
    assert inject.returncode == 0, inject.stderr
    try:
        result = tidectl("status", "-c", str(sim_cluster / "cluster.toml"), "--json")
        assert result.returncode == 1
        nodes = {node["name"]: node for node in json.loads(result.stdout)["nodes"]}
        assert nodes["sim0002"]["health"] == "critical"
        codes = {f["code"] for f in nodes["sim0002"]["findings"]}
        assert "gpu.ecc_dbe" in codes
        assert all(nodes[n]["health"] == "ok" for n in nodes if n != "sim0002")
        table = tidectl("status", "-c", str(sim_cluster / "cluster.toml"))
        assert "sim0002" in table.stdout and "gpu.ecc_dbe" in table.stdout
        assert "sim[0001,0003-0004]" in table.stdout  # the healthy ones, folded
    finally:
        tidectl("sim", "clear", "--out", str(sim_cluster), "sim0002")


def test_run_groups_identical_output(sim_cluster: Path) -> None:
    config = str(sim_cluster / "cluster.toml")
    same = tidectl("run", "-c", config, "all", "--", "uname", "-r")
    assert same.returncode == 0, same.stderr
    assert same.stdout.startswith(f"sim[0001-{NODES:04d}]: ")
    assert same.stdout.count("\n") == 1

    each = tidectl("run", "-c", config, "sim[0001-0002]", "--json", "--", "hostname")
    report = json.loads(each.stdout)
    assert report["exit_status"] == 0 and report["nodes"] == 2
    assert sorted((g["nodes"], g["stdout"]) for g in report["groups"]) == [
        ("sim0001", "sim0001\n"),
        ("sim0002", "sim0002\n"),
    ]

    missing = tidectl("run", "-c", config, "sim0001", "--", "frobnicate")
    assert missing.returncode == 127
    assert missing.stdout == "sim0001 (exit 127): sh: 1: frobnicate: not found\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "sim9999", "--", "true"], "not in cluster.toml: sim9999"),
        (["run", "sim[0001", "--", "true"], "is not a node set"),
        (["run", "all"], "no command given"),
    ],
)
def test_run_refuses_bad_input_with_a_sentence(
    sim_cluster: Path, args: list[str], message: str
) -> None:
    command, *rest = args
    result = tidectl(command, "-c", str(sim_cluster / "cluster.toml"), *rest)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_config_error_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text('[cluster]\nname = "x"\n[ssh]\nuser = "a"\nknown_hosts = "nope"\n')
    result = tidectl("status", "-c", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(f"tidectl status: {config}:")
    assert "known_hosts" in result.stderr
