"""The real watchdog process (``python -m tidectl.agents watchdog``) on this machine, over the
``sim`` GPU probe: it detaches, holds one pid lock per lease, reads the lease a real agent's
stream touches, asks Slurm's tools on its PATH (fakes printing what a node would), and runs
its poweroff command, a shell line appending to a file here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agents.sim_seeds import steady_seed

AGENT = [sys.executable, "-m", "tidectl.agents"]
LEASE_S = 1.0


@dataclass
class Node:
    """One simulated node's folder: its lease, its Slurm (fake tools on PATH) and its power."""

    folder: Path
    bin: Path

    @property
    def lease(self) -> Path:
        return self.folder / "lease"

    @property
    def log(self) -> Path:
        return self.folder / "lease.watchdog.log"

    @property
    def powered_off(self) -> Path:
        return self.folder / "powered-off"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": str(self.bin)}  # no real Slurm: only the fakes, if any

    def slurm(self, jobs: str, state: str) -> None:
        """Install squeue and sinfo that print ``jobs`` and ``state`` for this node."""
        for tool, said in (("squeue", jobs), ("sinfo", state)):
            script = self.bin / tool
            script.write_text(f"#!/bin/sh\nprintf '%s' '{said}'\n")
            script.chmod(0o755)

    def start(self, seed: int, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *AGENT,
                "watchdog",
                "--lease-file",
                str(self.lease),
                "--lease-s",
                str(LEASE_S),
                "--idle-window",
                "0.3",
                "--check-every",
                "0.1",
                "--slurm-node",
                "n1",
                "--poweroff",
                f"echo off >> {self.powered_off}",
                "--sim",
                str(seed),
                *extra,
            ],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=30,
            check=False,
        )

    def pid(self) -> int:
        return int((self.folder / "lease.watchdog.pid").read_text())


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    (tmp_path / "bin").mkdir()
    here = Node(tmp_path, tmp_path / "bin")
    yield here
    pid_file = tmp_path / "lease.watchdog.pid"
    if pid_file.exists() and pid_file.read_text().strip():
        pid = int(pid_file.read_text())
        if _alive(pid) and _cmdline(pid).count("watchdog"):  # ours, started above
            os.kill(pid, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _until(check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll ``check`` (another process's files: no event to wait on) until it holds."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - started


def _stream(node: Node, seed: int) -> subprocess.Popen[bytes]:
    """The agent's stream as a control plane runs it, touching the lease every sample."""
    return subprocess.Popen(
        [
            *AGENT,
            "stream",
            "--interval",
            "0.1",
            "--probes",
            "gpu",
            "--sim",
            str(seed),
            "--lease-file",
            str(node.lease),
        ],
        stdout=subprocess.DEVNULL,  # a reader that went away would block it: none is needed
        env=node.env(),
    )


def test_the_watchdog_detaches_and_a_second_start_starts_nothing(node: Node) -> None:
    first = node.start(steady_seed(True))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"tidectl agent watchdog: watching {node.lease} (pid ")
    pid = node.pid()
    assert f"(pid {pid})" in first.stdout
    assert _alive(pid)
    assert os.getsid(pid) != os.getsid(0)  # its own session: the SSH session's end is not its
    second = node.start(steady_seed(True))
    assert second.returncode == 0, second.stderr
    assert second.stdout == (
        f"tidectl agent watchdog: already watching {node.lease} (pid {pid}); nothing started\n"
    )
    assert node.log.read_text().count(f"watching {node.lease}: lease 1 s") == 1
    os.kill(pid, signal.SIGTERM)
    _until(lambda: not _alive(pid))
    third = node.start(steady_seed(True))  # the lock died with it: a new one starts
    assert "watching" in third.stdout and node.pid() != pid


def test_while_the_stream_holds_the_lease_nothing_happens_and_once_it_stops_an_idle_node_powers_off(
    node: Node,
) -> None:
    seed = steady_seed(False)
    stream = _stream(node, seed)
    try:
        _until(node.lease.exists)
        assert node.start(seed).returncode == 0
        time.sleep(3 * LEASE_S)  # three leases of a control plane streaming
        assert not node.powered_off.exists()
        assert "no control plane holds it" not in node.log.read_text()
    finally:
        stream.kill()  # the control plane (and its SSH session) gone
        stream.wait()
    took = _until(node.powered_off.exists)
    assert took >= LEASE_S - 0.2, "powered off before the lease ran out"
    pid = node.pid()
    _until(lambda: not _alive(pid))  # its work is done: the poweroff runs once
    assert node.powered_off.read_text() == "off\n"
    text = node.log.read_text()
    assert "powering off: the lease is" in text and "the poweroff command succeeded" in text


def test_a_node_slurm_runs_a_job_on_is_not_powered_off_until_slurm_lets_it_go(node: Node) -> None:
    node.slurm(jobs="4242", state="mixed")
    assert node.start(steady_seed(False)).returncode == 0  # idle GPUs; no stream: stale soon
    _until(lambda: "not powering off: Slurm runs job(s) 4242 on n1" in node.log.read_text())
    time.sleep(3 * LEASE_S)  # several leases more, checked every 0.1 s
    assert not node.powered_off.exists()
    node.slurm(jobs="", state="drained")
    _until(node.powered_off.exists)
    assert node.powered_off.read_text() == "off\n"


def test_busy_gpus_keep_a_node_without_slurm_up(node: Node) -> None:
    assert node.start(steady_seed(True)).returncode == 0
    _until(lambda: "not powering off: GPU 0 is at" in node.log.read_text())
    time.sleep(3 * LEASE_S)
    assert not node.powered_off.exists()
    assert _alive(node.pid())
