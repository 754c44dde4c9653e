"""The simulated cluster over real SSH: a real asyncssh server on 127.0.0.1, real clients.

Every test starts its own server on a free run of ports (``base_port=0``) with a few nodes,
in-process, except those about the process itself (signals, workers), which start
``python -m tidectl.console.sim.cli serve`` as a real subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import io
import itertools
import json
import math
import os
import platform
import re
import select
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tidectl.agents import protocol
from tidectl.agents.probes.sim import SimNode, probes_for
from tidectl.agents.runner import Stream
from tidectl.agents.zipapp import archive_bytes
from tidectl.console.config.loader import load_config
from tidectl.console.sim.cli import add_sim_commands, run_sim_command
from tidectl.console.sim.server import (
    SimOptions,
    SimServer,
    SimServerError,
    default_workers,
    encode,
    prepare,
)

ROOT = Path(__file__).resolve().parents[2]
VERSION_PROBE = "python3 -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'"
REMOTE_DIR = ".cache/tidectl"


@functools.cache
def agent_bytes() -> bytes:
    return archive_bytes()


def agent_path() -> str:
    digest = hashlib.sha256(agent_bytes()).hexdigest()[:16]
    return f"{REMOTE_DIR}/tidectl-agent-{digest}.pyz"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SimServer]:
    async with SimServer(SimOptions(out=tmp_path / "sim", nodes=3, base_port=0, seed=40)) as srv:
        yield srv


async def connect(
    srv: SimServer,
    index: int = 0,
    *,
    user: str = "tidectl",
    key: Path | None = None,
    known_hosts: Path | None = None,
) -> asyncssh.SSHClientConnection:
    layout = srv.layout
    return await asyncssh.connect(
        "127.0.0.1",
        srv.ports[index],
        username=user,
        client_keys=[str(key or layout.client_key)],
        known_hosts=str(known_hosts or layout.known_hosts),
        connect_timeout=5,
    )


def place_agent(srv: SimServer, node: str) -> str:
    """Put the agent where a deploy would, without SFTP (for tests about other things)."""
    path = agent_path()
    target = srv.layout.node_root(node) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(agent_bytes())
    return path


async def read_record(process: asyncssh.SSHClientProcess[bytes]) -> protocol.Record:
    line = await asyncio.wait_for(process.stdout.readline(), 5.0)
    assert line, "the stream ended"
    return protocol.decode(line)


def sim_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tidectl")
    add_sim_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["sim", *argv])


async def wait_until(check: object, timeout: float = 3.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# -- the console's contract ------------------------------------------------------------------


async def test_version_probe_answers_the_servers_python(server: SimServer) -> None:
    async with await connect(server) as conn:
        result = await conn.run(VERSION_PROBE)
        assert (result.exit_status, result.stdout, result.stderr) == (
            0,
            platform.python_version() + "\n",
            "",
        )
        other = await conn.run(VERSION_PROBE.replace("python3", "python2", 1))
        assert (other.exit_status, other.stdout, other.stderr) == (
            127,
            "",
            "sh: 1: python2: not found\n",
        )


async def test_sftp_deploy_then_stream(server: SimServer) -> None:
    path = agent_path()
    async with await connect(server, 1) as conn:
        # The console's deploy: stat, mkdir, upload to a temporary name, chmod, rename.
        async with conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat(path)
            await sftp.makedirs(REMOTE_DIR, exist_ok=True)
            async with sftp.open(path + ".tmp-1", "wb") as handle:
                await handle.write(agent_bytes())
            await sftp.chmod(path + ".tmp-1", 0o755)
            await sftp.posix_rename(path + ".tmp-1", path)
            assert (await sftp.stat(path)).size == len(agent_bytes())
            assert await sftp.realpath(".") == "/"  # chrooted to the node's own folder
        landed = server.layout.node_root("sim0002") / path
        assert landed.read_bytes() == agent_bytes()
        assert not (server.layout.node_root("sim0001") / path).exists()

        result = await conn.run(
            f"exec python3 {path} stream --interval 0.2 --count 3 --probes all", encoding=None
        )
        assert result.exit_status == 0, result.stderr
        assert isinstance(result.stdout, bytes)
        records = [protocol.decode(line) for line in result.stdout.splitlines()]
    hello, samples = records[0], records[1:]
    assert hello["type"] == "hello"
    assert hello["facts"]["host"]["hostname"] == "sim0002"
    assert hello["sim"] == 41  # seed 40, node index 1
    assert hello["interval_s"] == 0.2
    assert [s["seq"] for s in samples] == [1, 2, 3]
    assert all(s["type"] == "sample" for s in samples)
    assert len(samples[0]["probes"]["gpu"]["gpus"]) == 8
    # On the monotonic schedule: 0.2 s apart, give or take a busy machine.
    gaps = [b["mono"] - a["mono"] for a, b in itertools.pairwise(samples)]
    assert all(0.15 < gap < 1.0 for gap in gaps), gaps


async def test_a_stream_arrives_one_packet_a_line_as_from_openssh(server: SimServer) -> None:
    """asyncssh's server puts an SSH_MSG_IGNORE before every packet; OpenSSH, what real nodes
    run, does not, and the sim must not either (console/sim/packets.py): the collector
    benchmark would charge the console for a thousand packets a second no cluster sends."""
    path = place_agent(server, "sim0001")
    async with await connect(server) as conn:
        # The transport's count of packets received (asyncssh keeps it for the MAC's
        # sequence number; there is no public counter).
        before = conn._recv_seq  # type: ignore[attr-defined]
        result = await conn.run(
            f"exec python3 {path} stream --interval 0.05 --count 20 --probes gpu", encoding=None
        )
        received = conn._recv_seq - before  # type: ignore[attr-defined]
    assert result.exit_status == 0, result.stderr
    assert isinstance(result.stdout, bytes)
    lines = len(result.stdout.splitlines())
    assert lines == 21  # the hello, then 20 samples
    # The lines, and the session's own packets (open, exit status, EOF, close, window
    # adjusts): with an IGNORE before each packet, over twice the lines.
    assert lines <= received <= lines + 10, (lines, received)


async def test_stream_refused_when_the_agent_is_missing(server: SimServer) -> None:
    async with await connect(server) as conn:
        result = await conn.run(f"exec python3 {agent_path()} stream --interval 1")
    assert result.exit_status == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"python3: can't open file '/{agent_path()}': [Errno 2] No such file or directory\n"
    )


async def test_a_file_that_is_not_a_zipapp_is_refused_as_python_would(server: SimServer) -> None:
    broken = server.layout.node_root("sim0001") / "half.pyz"
    broken.write_bytes(agent_bytes()[:1000])  # an interrupted upload
    async with await connect(server) as conn:
        result = await conn.run("python3 half.pyz stream")
    assert (result.exit_status, result.stderr) == (
        1,
        "python3: can't find '__main__' module in '/half.pyz'\n",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["stream", "--interval", "x"],
        ["stream", "--probes", "gpu,nope"],
        ["stream", "--count", "0"],
        ["--version"],
        ["bogus"],
    ],
)
async def test_agent_arguments_behave_as_the_real_zipapp(
    server: SimServer, tmp_path: Path, args: list[str]
) -> None:
    path = place_agent(server, "sim0001")
    real_agent = tmp_path / "agent.pyz"
    real_agent.write_bytes(agent_bytes())
    real = subprocess.run(
        [sys.executable, "-I", str(real_agent), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    async with await connect(server) as conn:
        sim = await conn.run(" ".join(["python3", path, *args]))
    assert real.returncode != 0 or args == ["--version"]  # the cases are meant to fail
    assert (sim.exit_status, sim.stdout, sim.stderr) == (
        real.returncode,
        real.stdout,
        real.stderr,
    )


async def test_wrong_key_or_user_is_refused(server: SimServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_key"
    stranger.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(server, key=stranger)
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(server, user="root")
    async with await connect(server) as conn:  # and the right pair still works
        assert (await conn.run("hostname")).stdout == "sim0001\n"


async def test_host_keys_differ_per_node_and_survive_a_restart(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    async with SimServer(SimOptions(out=out, nodes=3, base_port=0)) as first:
        ports = first.ports
        known_hosts = first.layout.known_hosts.read_text()
        client_key = first.layout.client_key.read_bytes()
        for index in range(3):
            async with await connect(first, index) as conn:
                assert (await conn.run("hostname")).stdout == f"sim000{index + 1}\n"
    keys = [line.split(" ", 1)[1] for line in known_hosts.splitlines()]
    assert len(set(keys)) == 3
    saved = tmp_path / "console_known_hosts"
    saved.write_text(known_hosts)
    # Node 2 answering with node 1's key would be refused: the keys are really per node.
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{ports[1]} {keys[0]}\n")

    async with SimServer(SimOptions(out=out, nodes=3, base_port=ports[0])) as second:
        assert second.ports == ports
        assert second.layout.known_hosts.read_text() == known_hosts
        assert second.layout.client_key.read_bytes() == client_key
        async with await connect(second, 2, known_hosts=saved) as conn:
            assert (await conn.run("hostname")).stdout == "sim0003\n"
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await connect(second, 1, known_hosts=wrong)


async def test_a_taken_port_is_named(tmp_path: Path) -> None:
    async with SimServer(SimOptions(out=tmp_path / "a", nodes=2, base_port=0)) as first:
        taken = first.ports[0]
        clash = SimServer(SimOptions(out=tmp_path / "b", nodes=3, base_port=taken - 1))
        with pytest.raises(SimServerError) as error:
            await clash.start()
    assert str(error.value).startswith(f"port {taken} on 127.0.0.1 is in use; pass --base-port")
    assert not (tmp_path / "b" / "server.pid").exists()


async def test_fault_injected_with_the_cli_shows_in_the_stream(server: SimServer) -> None:
    path = place_agent(server, "sim0001")
    out = str(server.layout.out)
    async with await connect(server) as conn:
        process = await conn.create_process(
            f"exec python3 {path} stream --interval 0.2 --probes gpu", encoding=None
        )
        await read_record(process)  # hello
        first = await read_record(process)
        assert len(first["probes"]["gpu"]["gpus"]) == 8

        assert run_sim_command(sim_args("inject", "--out", out, "sim0001", "gpu_lost gpu=5")) == 0
        # The node polls its fault file at most every 0.5 s, then the next tick shows it.
        ticks = 0
        while ticks < 6:
            ticks += 1
            sample = await read_record(process)
            indexes = [gpu["index"] for gpu in sample["probes"]["gpu"]["gpus"]]
            if 5 not in indexes:
                break
        assert indexes == [0, 1, 2, 3, 4, 6, 7]
        assert ticks <= 5

        assert run_sim_command(sim_args("clear", "--out", out, "sim0001")) == 0
        for _ in range(6):
            sample = await read_record(process)
            if len(sample["probes"]["gpu"]["gpus"]) == 8:
                break
        assert len(sample["probes"]["gpu"]["gpus"]) == 8
        process.close()
    assert server.layout.faults.read_text() == ("gpu_lost gpu=5 node=sim0001\nclear node=sim0001\n")


async def test_bad_faults_and_unknown_nodes_are_refused(
    server: SimServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(server.layout.out)
    assert run_sim_command(sim_args("inject", "--out", out, "sim0001", "xid", "gpu=three")) == 2
    assert capsys.readouterr().err == (
        "tidectl sim inject: error: 'xid gpu=three': gpu= takes a whole number, not 'three'\n"
    )
    assert run_sim_command(sim_args("inject", "--out", out, "sim0009", "xid", "gpu=1")) == 2
    assert "no simulated node sim0009" in capsys.readouterr().err
    assert run_sim_command(sim_args("clear", "--out", out, "kind=melted")) == 2
    assert "unknown fault kind 'melted'" in capsys.readouterr().err
    assert server.layout.faults.read_text() == ""

    assert run_sim_command(sim_args("inject", "--out", out, "sim[0002-0003]", "xid", "gpu=1")) == 0
    assert run_sim_command(sim_args("clear", "--out", out, "kind=xid")) == 0
    assert server.layout.faults.read_text() == (
        "xid gpu=1 code=79 node=sim0002\nxid gpu=1 code=79 node=sim0003\nclear kind=xid\n"
    )


# -- fan-out commands --------------------------------------------------------------------------

FANOUT = [
    ("hostname", "sim0002\n", "", 0),
    ("true", "", "", 0),
    ("false", "", "", 1),
    ("echo hello  'big world'", "hello big world\n", "", 0),
    ("uname -r", "5.15.0-113-generic\n", "", 0),
    (
        "uname -a",
        "Linux sim0002 5.15.0-113-generic #123-Ubuntu SMP Mon Jun 10 08:16:17 UTC 2024 "
        "x86_64 x86_64 x86_64 GNU/Linux\n",
        "",
        0,
    ),
    ("cat /etc/hostname", "sim0002\n", "", 0),
    ("exec hostname", "sim0002\n", "", 0),
    ("sh -c 'echo from sh'", "from sh\n", "", 0),
    ("sleep 0.05", "", "", 0),
    ("command -v python3", "/usr/bin/python3\n", "", 0),
    ("cat /etc/shadow", "", "cat: /etc/shadow: No such file or directory\n", 1),
    ("rm -rf /", "", "sh: 1: rm: not found\n", 127),
    ("sleep 1h", "", "tidectl sim: a simulated node sleeps at most 600 s\n", 1),
    ("echo 'unterminated", "", "sh: 1: Syntax error: Unterminated quoted string\n", 2),
    ("sudo -n -u root hostname", "sim0002\n", "", 0),
    (
        "sudo systemctl poweroff",  # only sim cloud instances can (see the sim provider's tests)
        "",
        "tidectl sim: sim0002 cannot power off: the nodes of `tidectl sim serve` have no power "
        "to cut (sim cloud instances do)\n",
        1,
    ),
    (
        "systemctl restart slurmd",
        "",
        "tidectl sim: systemctl on a simulated node only powers it off (poweroff)\n",
        2,
    ),
]


async def test_fanout_commands(server: SimServer) -> None:
    async with await connect(server, 1) as conn:
        results = await asyncio.gather(*(conn.run(command) for command, *_ in FANOUT))
        for (command, stdout, stderr, status), result in zip(FANOUT, results, strict=True):
            assert (result.stdout, result.stderr, result.exit_status) == (stdout, stderr, status), (
                command
            )
        uptime = (await conn.run("uptime")).stdout
        assert isinstance(uptime, str)
        assert re.fullmatch(
            r" \d\d:\d\d:\d\d up \d+ days?, +\d+:\d\d,  0 users,  load average: "
            r"\d+\.\d\d, \d+\.\d\d, \d+\.\d\d\n",
            uptime,
        ), uptime
        gpus = (await conn.run("nvidia-smi -L")).stdout
        assert isinstance(gpus, str)
        lines = gpus.splitlines()
    assert len(lines) == 8
    hello_gpus = server.nodes[1].hardware().gpu_facts()["gpus"]
    assert lines == [
        f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {gpu['uuid']})" for i, gpu in enumerate(hello_gpus)
    ]
    assert all(re.fullmatch(r"GPU \d: .+ \(UUID: GPU-[0-9a-f-]{36}\)", line) for line in lines)


# -- sessions end when their channel does ------------------------------------------------------


async def test_closing_the_channel_stops_the_node_loop(server: SimServer) -> None:
    path = place_agent(server, "sim0001")
    async with await connect(server) as conn:
        await asyncio.sleep(0.05)  # let the login's own tasks settle
        before = asyncio.all_tasks()
        process = await conn.create_process(
            f"exec python3 {path} stream --interval 0.05", encoding=None
        )
        await read_record(process)
        await read_record(process)
        assert server.sessions == 1
        process.close()
        await wait_until(lambda: server.sessions == 0)
        sleeper = await conn.create_process("sleep 600")
        await wait_until(lambda: server.sessions == 1)
        sleeper.close()
        await wait_until(lambda: server.sessions == 0)
        await wait_until(lambda: asyncio.all_tasks() <= before)
        assert server.connections == 1


async def test_a_client_that_stops_reading_makes_the_node_skip_ticks(server: SimServer) -> None:
    path = place_agent(server, "sim0001")
    interval = 0.02
    async with await connect(server) as conn:
        # A small window, so the server's buffer fills after a few samples.
        process = await conn.create_process(
            f"exec python3 {path} stream --interval {interval}", encoding=None, window=32768
        )
        await read_record(process)
        started = time.monotonic()
        await asyncio.sleep(1.0)  # not reading: 50 ticks, far more than every buffer holds
        samples = [await read_record(process)]
        while time.monotonic() - started < 1.5:
            samples.append(await read_record(process))
        process.close()
    seqs = [s["seq"] for s in samples]
    assert seqs == list(range(1, len(seqs) + 1))  # skipped ticks are not numbered
    # Every tick sent would be about 75 samples; skipping sends far fewer, with one long gap
    # where the node waited for the buffer to drain.
    assert len(samples) < 0.8 * 1.5 / interval
    gaps = [b["mono"] - a["mono"] for a, b in itertools.pairwise(samples)]
    assert max(gaps) > 10 * interval


# -- the files it writes -----------------------------------------------------------------------


async def test_written_files_are_what_the_console_loads(server: SimServer) -> None:
    layout = server.layout
    text = layout.cluster_toml.read_text()
    document = tomllib.loads(text)
    assert document["nodes"] == [
        {
            "names": "sim[0001-0002]",
            "site": "sim",
            "address": "127.0.0.1",
            "port_base": server.ports[0],
            "labels": {"pool": "train"},
        },
        {
            "names": "sim0003",
            "site": "sim",
            "address": "127.0.0.1",
            "port_base": server.ports[2],
            "labels": {"pool": "infer"},
        },
    ]
    config = load_config(layout.cluster_toml)
    assert config.name == "sim"
    assert [(n.name, n.address, n.port) for n in config.nodes] == [
        (f"sim000{i + 1}", "127.0.0.1", port) for i, port in enumerate(server.ports)
    ]
    assert config.ssh.user == "tidectl"
    assert config.ssh.identity_file == layout.client_key
    assert config.ssh.known_hosts == layout.known_hosts
    assert config.agent.interval_s == 1.0
    assert config.agent.python == "python3"

    lines = layout.known_hosts.read_text().splitlines()
    assert [line.split(" ")[0] for line in lines] == [
        f"sim000{i + 1},[127.0.0.1]:{port}" for i, port in enumerate(server.ports)
    ]
    for node, line in zip(server.nodes, lines, strict=True):
        algorithm, blob = line.split(" ")[1:]
        assert algorithm == "ssh-ed25519"
        assert asyncssh.import_public_key(f"{algorithm} {blob}").public_data == (
            asyncssh.read_private_key(layout.host_key(node.name)).public_data
        )
    assert layout.client_key.stat().st_mode & 0o777 == 0o600
    assert layout.client_key_pub.read_text().startswith("ssh-ed25519 AAAA")
    assert layout.faults.read_text() == ""
    assert layout.pid.read_text() == f"{os.getpid()}\n"
    assert sorted(p.name for p in layout.nodes.iterdir()) == ["sim0001", "sim0002", "sim0003"]


class ServerProcess:
    """``python -m tidectl.console.sim.cli serve ...`` as a real subprocess."""

    def __init__(self, out: Path, *args: str) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "tidectl.console.sim.cli", "serve"),
                *("--base-port", "0", "--out", str(out), *args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def ready_line(self, timeout: float = 30.0) -> str:
        """The first line on stdout, which the server prints once every node listens."""
        stdout = self.process.stdout
        assert stdout is not None
        readable, _, _ = select.select([stdout], [], [], timeout)
        assert readable, "no ready line in time"
        return stdout.readline()

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then its exit status and what it said on stderr."""
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=20)
        return self.process.returncode, err

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def hostname_at(out: Path, port: int) -> str:
    async def run() -> str:
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            username="tidectl",
            client_keys=[str(out / "client_key")],
            known_hosts=str(out / "known_hosts"),
            connect_timeout=10,
        ) as conn:
            return str((await conn.run("hostname")).stdout)

    return asyncio.run(run())


def test_sigterm_ends_a_python_m_server_with_exit_0(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    server = ServerProcess(out, "--nodes", "2")
    try:
        ready = server.ready_line()
        match = re.fullmatch(
            r"tidectl sim: 2 nodes on 127\.0\.0\.1:(\d+)-(\d+); config (.+)\n", ready
        )
        assert match, ready
        first, last = int(match[1]), int(match[2])
        assert last == first + 1
        assert Path(match[3]) == out.resolve() / "cluster.toml"
        assert (out / "server.pid").read_text() == f"{server.process.pid}\n"
        assert server.children() == []  # two nodes: served in the process itself
        assert hostname_at(out, last) == "sim0002\n"
        assert server.stop() == (0, "")
        assert not (out / "server.pid").exists()
    finally:
        server.close()


def test_workers_share_the_nodes_and_stop_together(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    server = ServerProcess(out, "--nodes", "4", "--workers", "2")
    try:
        match = re.fullmatch(
            r"tidectl sim: 4 nodes on 127\.0\.0\.1:(\d+)-(\d+); .+\n", server.ready_line()
        )
        assert match
        first = int(match[1])
        workers = server.children()
        assert len(workers) == 2
        # sim0001 is the first worker's, sim0004 the second's.
        assert hostname_at(out, first) == "sim0001\n"
        assert hostname_at(out, first + 3) == "sim0004\n"
        assert server.stop() == (0, "")
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists()
        assert not (out / "server.pid").exists()
    finally:
        server.close()


def test_a_worker_that_dies_stops_the_cluster(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    server = ServerProcess(out, "--nodes", "4", "--workers", "2")
    try:
        assert server.ready_line().startswith("tidectl sim: 4 nodes")
        first, second = server.children()
        os.kill(first, signal.SIGKILL)
        _, err = server.process.communicate(timeout=20)
        assert server.process.returncode == 2
        assert err == f"tidectl sim serve: error: worker {first} ended with status -9\n"
        assert not Path(f"/proc/{second}").exists()
    finally:
        server.close()


async def test_a_failing_command_reports_and_keeps_the_connection(
    server: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await connect(server) as conn:

        def broken(command: str | None, node: object) -> object:
            raise RuntimeError("boom")

        monkeypatch.setattr("tidectl.console.sim.server.interpret", broken)
        result = await conn.run("hostname")
        assert (result.exit_status, result.stderr) == (
            1,
            "tidectl sim: internal error: RuntimeError('boom')\n",
        )
        monkeypatch.undo()
        assert (await conn.run("hostname")).stdout == "sim0001\n"


def test_a_second_server_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (out / "server.pid").write_text(f"{sleeper.pid}\n")
        with pytest.raises(SimServerError) as error:
            asyncio.run(SimServer(SimOptions(out=out, nodes=1, base_port=0)).start())
        assert str(error.value).startswith(
            f"a simulated cluster (pid {sleeper.pid}) is already serving {out}"
        )
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_fast_encoder_writes_what_the_agent_writes() -> None:
    node = SimNode(5, "sim0006")
    stream = Stream(probes_for(node), io.BytesIO(), interval_s=1.0, sim_seed=5, threaded=False)
    records = [stream.hello(), stream.tick(), stream.tick()]
    records.append({"type": "sample", "odd": [math.nan, math.inf, 1e16, -0.0, "é\u2028"]})
    for record in records:
        fast, agent = encode(record), protocol.encode(record)
        assert fast.endswith(b"\n")
        assert fast.count(b"\n") == 1
        assert json.loads(fast) == json.loads(agent)
        assert list(json.loads(fast)) == list(json.loads(agent))  # key order too


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nodes": 0}, "--nodes must be at least 1, got 0"),
        ({"nodes": 10, "base_port": 32760}, "ports 32760-32769 reach 32768 or above"),
        ({"nodes": 1, "base_port": 22}, "--base-port 22 is a privileged port"),
        ({"nodes": 1, "address": "10.0.0.1"}, "the simulated cluster listens on loopback only"),
        ({"nodes": 2, "names": ("a1",)}, "1 node names given for 2 nodes"),
        ({"nodes": 1, "names": ("../x",)}, "node name '../x' must start with a letter"),
        ({"nodes": 2, "names": ("b1", "a1")}, "node names b1, a1 must be distinct and in node-set"),
        ({"nodes": 2, "names": ("a1", "a1")}, "node names a1, a1 must be distinct and in node-set"),
    ],
)
def test_options_that_cannot_work_are_refused(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(SimServerError) as error:
        prepare(SimOptions(out=tmp_path / "sim", **options))
    assert str(error.value).startswith(message)
    assert not (tmp_path / "sim").exists()


def test_default_workers_one_per_share_at_most_one_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert [default_workers(n) for n in (1, 500, 501, 1000, 5000)] == [1, 1, 2, 2, 2]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert [default_workers(n) for n in (1000, 5000)] == [2, 8]
