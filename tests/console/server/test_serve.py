"""``tidectl serve`` as a real process: it says when it listens, CLI commands attach to it
with ``--server`` and act as the user running them, a second service on the same store is
refused naming the first, and SIGTERM stops it cleanly (socket removed, status 0)."""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tidectl.console.lifecycle.store import Store

ME = pwd.getpwuid(os.getuid()).pw_name
CONFIG = """\
[cluster]
name = "lab"
[ssh]
user = "t"
known_hosts = "known_hosts"
[[nodes]]
names = "gpu[1-2]"
address = "127.0.0.1"
port = 9
[scheduler]
kind = "sim"
[[pools]]
name = "burst"
provider = "sim"
max_nodes = 4
boot_delay_s = 0
[store]
path = "lab.sqlite3"
[server]
socket = "lab.sock"
reconcile_interval_s = 0.5  # the service reconciles often: the tests wait on its passes
"""


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tsrv-", dir="/tmp"))
    (path / "known_hosts").write_text("")
    (path / "cluster.toml").write_text(CONFIG)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def tidectl(*argv: str) -> list[str]:
    return [sys.executable, "-m", "tidectl.console", *argv]


def start(folder: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        tidectl("serve", "-c", str(folder / "cluster.toml"), *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 30)
    line = server.stdout.readline() if ready else ""
    return server, line


def stop(server: subprocess.Popen[str]) -> int:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        return server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()  # our own child, by its PID
        server.wait()
        raise


def test_cli_commands_act_through_a_running_service(folder: Path) -> None:
    server, ready = start(folder, "--metrics", "127.0.0.1:0")
    sock = folder / "lab.sock"
    try:
        listening, _, metrics_url = ready.strip().partition(", metrics at ")
        assert listening == f"tidectl serve: listening on {sock}", ready
        config = str(folder / "cluster.toml")

        def cli(*argv: str) -> subprocess.CompletedProcess[str]:
            command, *rest = argv
            line = tidectl(command, "-c", config, "--server", str(sock), *rest)
            return subprocess.run(line, capture_output=True, text=True, timeout=90, check=False)

        burst = cli("burst", "burst", "2", "--wait", "--timeout", "60", "--json")
        assert burst.returncode == 0, burst.stdout + burst.stderr
        said = json.loads(burst.stdout)
        nodes = said["nodes"]
        assert set(said["wait"]["states"].values()) == {"active"}
        # [server] socket in cluster.toml: a plain command goes to the service too.
        again = subprocess.run(
            tidectl("burst", "-c", config, "burst", "2", "--ensure", "--json"),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert (again.returncode, json.loads(again.stdout)["launched"]) == (0, 0), again.stderr
        drained = cli("drain", nodes[0], "--reason", "done", "--wait", "--timeout", "60")
        assert drained.returncode == 0 and "all 1 node(s) drained" in drained.stdout, drained
        refused = cli("terminate", nodes[1], "--reason", "done", "--yes")
        assert refused.returncode == 1 and "it is active; drain it first" in refused.stderr
        assert cli("terminate", nodes[0], "--reason", "done", "--yes").returncode == 0
        # Its Prometheus metrics, read with prometheus_client's own parser.
        with urllib.request.urlopen(metrics_url, timeout=10) as answer:
            text = answer.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        counts = {
            s.labels["state"]: s.value
            for s in families["tidectl_lifecycle_nodes"].samples
            if s.labels["pool"] == "burst"
        }
        assert counts["active"] == 1  # nodes[1]; nodes[0] is on its way out
        # A second service on the same store is refused, naming the first.
        second = subprocess.run(
            tidectl("serve", "-c", config, "--socket", str(folder / "b.sock")),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 2
        assert f"in use by tidectl serve (pid {server.pid})" in second.stderr
    finally:
        status = stop(server)
    assert status == 0
    assert not sock.exists()
    with Store.open(folder / "lab.sqlite3") as store:
        intents = store.intents()
        assert {(i.actor, i.frontend) for i in intents} == {(ME, "cli")}
        assert {n.name for n in store.nodes(pool="burst")} == set(nodes)


def test_a_cli_without_a_service_says_so(folder: Path) -> None:
    config = str(folder / "cluster.toml")
    done = subprocess.run(
        tidectl("drain", "-c", config, "gpu1"),  # [server] socket names it; none listens
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "no tidectl service answers on" in done.stderr


def test_a_policy_dry_run_prints_what_it_would_do_and_does_nothing(folder: Path) -> None:
    """``--policy-dry-run``: the loop decides (here: a node past the pool's max lifetime) and
    prints it; the node stays as it is."""
    config = folder / "cluster.toml"
    config.write_text(
        CONFIG.replace(
            "boot_delay_s = 0\n", "boot_delay_s = 0\n[pools.policy]\nmax_lifetime_s = 1\n"
        )
        + "[policies]\ninterval_s = 1\n"
    )
    server, ready = start(folder, "--policy-dry-run")
    try:
        assert ready.startswith("tidectl serve: listening on"), ready
        burst = subprocess.run(
            tidectl(
                "burst", "-c", str(config), "burst", "1", "--wait", "--timeout", "60", "--json"
            ),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert burst.returncode == 0, burst.stdout + burst.stderr
        (node,) = json.loads(burst.stdout)["nodes"]
        assert server.stdout is not None
        said = ""
        for _ in range(60):  # a line a pass at most
            ready_now, _, _ = select.select([server.stdout], [], [], 30)
            said = server.stdout.readline() if ready_now else ""
            if "would drain" in said:
                break
        assert said.startswith(
            f"tidectl serve: policy max-lifetime (dry run) would drain {node} (policy: max "
            "lifetime: up "
        ), said
        listed = subprocess.run(
            tidectl("nodes", "-c", str(config), "--json"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert {n["name"]: n["state"] for n in json.loads(listed.stdout)["nodes"]} == {
            node: "active"
        }
    finally:
        assert stop(server) == 0
