"""``tidectl demo`` in a real terminal: tmux runs it, keys go in, ``capture-pane`` reads the screen.

Everything is real: the sim server subprocess over SSH on 127.0.0.1, the collector, Textual
drawing on a pty. The tmux server runs on a socket of its own (``-L``), so the test never
touches anyone else's sessions, and is killed at the end.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

WIDTH, HEIGHT = 170, 45


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=20,
        )
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "demo")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "demo", *keys)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on screen after {timeout:.0f} s:\n{screen}")
            time.sleep(0.2)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed; scripts/test installs it (apt-get install tmux)")
    session = Tmux(f"tidectl-test-{tmp_path.name}")
    yield session
    subprocess.run(
        ["tmux", "-L", session.socket, "kill-server"], check=False, capture_output=True, timeout=20
    )


def test_demo_runs_in_a_real_terminal_and_quits_cleanly(tmux: Tmux, tmp_path: Path) -> None:
    out, status = tmp_path / "demo", tmp_path / "exit-status"
    argv = [sys.executable, "-m", "tidectl.console", "demo", "--nodes", "6", "--seed", "2"]
    # No random faults: the test injects the one it looks for.
    demo = shlex.join([*argv, "--fault-rate", "0", "--out", str(out)])
    command = f"{demo}; echo $? > {shlex.quote(str(status))}; sleep 120"
    tmux("new-session", "-d", "-s", "demo", "-x", str(WIDTH), "-y", str(HEIGHT), command)

    screen = tmux.wait_for("6 streaming", timeout=60)
    assert "tidectl · sim" in screen
    for node in ("sim0001", "sim0006"):
        assert node in screen

    # Typed in one go: the keys after "/" must reach the filter, not run as commands
    # (s sorts, i injects), however fast they come.
    tmux.keys("/", *"sim0004", "Enter")
    screen = tmux.wait_for("1 of 6 nodes", timeout=10)
    assert "sim0003" not in screen and "sim0004" in screen

    tmux.keys("Enter")  # the node's detail
    screen = tmux.wait_for("InfiniBand", timeout=10)
    assert "sim0004" in screen and "GPUs" in screen
    tmux.keys("Escape", "Escape")  # back, then clear the filter
    tmux.wait_for("6 of 6 nodes", timeout=10)

    tmux.keys("i")  # the fault menu of the node under the cursor
    tmux.wait_for("Inject a fault into", timeout=10)
    tmux.keys("Enter")  # XID 79 on its first GPU
    screen = tmux.wait_for("✖ crit", timeout=15)
    assert "gpu.xid" in screen

    tmux.keys("q")
    deadline = time.monotonic() + 30
    while not status.exists() or not status.read_text().strip():
        assert time.monotonic() < deadline, f"the demo did not exit:\n{tmux.screen()}"
        time.sleep(0.2)
    assert status.read_text().strip() == "0"
    assert not (out / "server.pid").exists(), "the demo left its sim server running"
