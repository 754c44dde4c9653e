"""The transport and collector against real OpenSSH sshd hosts running the real zipapp agent.

Hosts come from tests/harness/sshd.py (root only; skipped with the reason elsewhere). Each
test that breaks a host — kills its sshd, changes its key, garbles its agent — takes hosts of
its own from ``sshd_hosts_factory``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.harness.sshd import SshdHosts
from tidectl.console.audit.verify import read, verify
from tidectl.console.collector import Collector
from tidectl.console.config.loader import load_config
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState

TIDECTL = [sys.executable, "-m", "tidectl.console"]
AGENT_HOME = Path("/var/lib/tidectl-test/.cache/tidectl")


def tidectl(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIDECTL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_status_deploys_and_streams_from_every_real_host(
    sshd_hosts: SshdHosts, tmp_path: Path
) -> None:
    config = sshd_hosts.write_cluster_toml(tmp_path / "cluster.toml")
    result = tidectl("status", "-c", str(config), "--json", "--wait", "40")
    report = json.loads(result.stdout)
    nodes = {node["name"]: node for node in report["nodes"]}
    assert sorted(nodes) == list(sshd_hosts.names)
    assert {node["link"] for node in nodes.values()} == {"streaming"}, result.stdout
    assert all(node["agent"] == "0.1.0" for node in nodes.values())
    assert result.returncode == (0 if report["healthy"] else 1)
    agents = sorted(AGENT_HOME.glob("tidectl-agent-*.pyz"))
    assert agents, "the agent was not uploaded"
    stamps = {path: path.stat().st_mtime_ns for path in agents}

    again = tidectl("status", "-c", str(config), "--json", "--wait", "40")
    assert {n["link"] for n in json.loads(again.stdout)["nodes"]} == {"streaming"}
    assert {path: path.stat().st_mtime_ns for path in agents} == stamps  # not sent again


def test_run_fans_out_over_real_hosts(sshd_hosts: SshdHosts, tmp_path: Path) -> None:
    config = str(sshd_hosts.write_cluster_toml(tmp_path / "cluster.toml"))
    with open(config, "a") as text:
        text.write('[audit]\npath = "audit.jsonl"\n')
    same = tidectl("run", "-c", config, "all", "--", "echo ok")
    assert same.returncode == 0, same.stderr
    assert same.stdout == f"{sshd_hosts.nodeset}: ok\n"

    each = tidectl("run", "-c", config, "all", "--json", "--", "echo $TIDECTL_TEST_HOST")
    groups = json.loads(each.stdout)["groups"]
    assert sorted((g["nodes"], g["stdout"]) for g in groups) == [
        (name, f"{name}\n") for name in sshd_hosts.names
    ]
    # Running commands on nodes takes the operator role: a viewer is refused, nothing runs.
    me = pwd.getpwuid(os.getuid()).pw_name
    path = Path(config)
    path.write_text(path.read_text() + f'[roles]\nviewer = ["{me}"]\n')
    refused = tidectl("run", "-c", config, "all", "--", "echo ok")
    assert refused.returncode == 1 and refused.stdout == ""
    assert f"{me} may not run: that needs the operator role" in refused.stderr
    # Every run is in the audit log: the decision before any node was reached, then how it
    # ended; the refused one with its denial.
    records = list(read(tmp_path / "audit.jsonl"))
    assert [(r.action, r.decision, r.outcome.split(":")[0]) for r in records] == [
        ("run", "allowed", "started"),
        ("run", "allowed", "done"),
        ("run", "allowed", "started"),
        ("run", "allowed", "done"),
        ("run", "denied", "denied"),
    ]
    assert records[0].params == {"command": "echo ok"} and records[0].targets == ("all",)
    assert records[1].outcome == "done: exit 0, 8 of 8 node(s) succeeded"
    assert {(r.actor, r.frontend) for r in records} == {(me, "cli")}
    assert verify(tmp_path / "audit.jsonl").ok


async def _wait_for(check: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.1)


async def test_a_killed_sshd_is_unreachable_then_streams_again(
    sshd_hosts_factory: Callable[..., SshdHosts], tmp_path: Path
) -> None:
    hosts = sshd_hosts_factory(2)
    config = load_config(hosts.write_cluster_toml(tmp_path / "cluster.toml", interval_s=0.5))
    fleet = Fleet(config.nodes, config.health)
    victim = hosts.names[0]
    async with Collector(config, fleet):
        await _wait_for(
            lambda: all(n.link is LinkState.STREAMING for n in fleet.nodes.values()), 40
        )
        hosts.stop(victim)
        await _wait_for(lambda: fleet.nodes[victim].link is LinkState.UNREACHABLE, 30)
        assert fleet.nodes[hosts.names[1]].link is LinkState.STREAMING
        hosts.start(victim)
        await _wait_for(lambda: fleet.nodes[victim].link is LinkState.STREAMING, 40)
        seq = fleet.nodes[victim].sample.seq if fleet.nodes[victim].sample else 0
        await _wait_for(
            lambda: fleet.nodes[victim].sample is not None and fleet.nodes[victim].sample.seq > seq,
            10,
        )


def test_a_changed_host_key_is_refused_and_no_command_sent(
    sshd_hosts_factory: Callable[..., SshdHosts], tmp_path: Path
) -> None:
    hosts = sshd_hosts_factory(1)
    config = str(hosts.write_cluster_toml(tmp_path / "cluster.toml"))
    marker = Path("/tmp") / f"tidectl-marker-{uuid.uuid4().hex}"
    hosts.rotate_host_key(hosts.names[0])
    result = tidectl("run", "-c", config, "all", "--", f"touch {marker}")
    assert result.returncode == 255
    assert "does not match" in result.stdout and "no command was sent" in result.stdout
    assert not marker.exists()
    status = json.loads(tidectl("status", "-c", config, "--json", "--wait", "10").stdout)
    assert status["nodes"][0]["link"] == "host-key-mismatch"
    assert not marker.exists()


def test_a_refused_user_key_is_auth_failed(
    sshd_hosts_factory: Callable[..., SshdHosts], tmp_path: Path
) -> None:
    hosts = sshd_hosts_factory(1)
    config_path = hosts.write_cluster_toml(tmp_path / "cluster.toml")
    wrong = hosts.wrong_client_key()
    text = "\n".join(
        f'identity_file = "{wrong}"' if line.startswith("identity_file") else line
        for line in config_path.read_text().splitlines()
    )
    config_path.write_text(text + "\n")
    status = json.loads(tidectl("status", "-c", str(config_path), "--json", "--wait", "10").stdout)
    node = status["nodes"][0]
    assert node["link"] == "auth-failed"
    assert "refused our key" in node["link_error"]


async def test_an_agent_that_prints_garbage_is_an_error_and_recycled(
    sshd_hosts_factory: Callable[..., SshdHosts], tmp_path: Path
) -> None:
    hosts = sshd_hosts_factory(1)
    name = hosts.names[0]
    hosts.garbage(name)
    config = load_config(hosts.write_cluster_toml(tmp_path / "cluster.toml", interval_s=0.5))
    fleet = Fleet(config.nodes, config.health)
    links_seen: list[LinkState] = []
    async with Collector(config, fleet) as collector:
        fleet.subscribe(lambda names: links_seen.append(fleet.nodes[name].link))
        await _wait_for(lambda: collector.lines_refused >= 3, 40)
        await _wait_for(lambda: LinkState.AGENT_FAILED in links_seen, 20)
        node = fleet.nodes[name]
        assert node.sample is None
        assert any(f.code == "agent.error" for f in node.findings) or node.link_error


def test_nodes_are_reached_through_a_jump_host(
    sshd_hosts_factory: Callable[..., SshdHosts], tmp_path: Path
) -> None:
    """[ssh].jump_host: one connection to the bastion, every node tunnelled through it."""
    hosts = sshd_hosts_factory(3)
    bastion = hosts[hosts.names[0]]
    path = hosts.write_cluster_toml(tmp_path / "cluster.toml")
    text = path.read_text().replace(
        "[ssh]\n", f'[ssh]\njump_host = "{hosts.user}@127.0.0.1:{bastion.port}"\n', 1
    )
    path.write_text(text)
    result = tidectl("run", "-c", str(path), "all", "--json", "--", "echo $TIDECTL_TEST_HOST")
    assert result.returncode == 0, result.stdout + result.stderr
    groups = json.loads(result.stdout)["groups"]
    assert sorted(g["nodes"] for g in groups) == list(hosts.names)

    hosts.stop(bastion.name)  # no bastion: every node is unreachable, and says why
    down = tidectl("run", "-c", str(path), "all", "--json", "--", "true")
    assert down.returncode == 255
    errors = {g["error"] for g in json.loads(down.stdout)["groups"]}
    assert all(e and f"127.0.0.1:{bastion.port}" in e for e in errors), errors
