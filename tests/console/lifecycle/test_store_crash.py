"""A real process writing transitions is killed with SIGKILL mid-way; the store it leaves behind
must be consistent: every node's state is the ``after`` of its last recorded transition."""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tidectl.console.lifecycle.states import NodeKind, allowed
from tidectl.console.lifecycle.store import Store

# The child adds a few nodes of each kind (unless a previous child did), says "ready", then
# moves them round and round as fast as it can until it is killed.
CHILD = r"""
import sys
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.lifecycle.store import Store

S = State
NEXT = {
    S.REQUESTED: S.PROVISIONING, S.PROVISIONING: S.BOOTSTRAPPING, S.BOOTSTRAPPING: S.JOINING,
    S.JOINING: S.ACTIVE, S.ACTIVE: S.DRAINING, S.DRAINING: S.DRAINED, S.DRAINED: S.ACTIVE,
}
with Store.open(sys.argv[1]) as store:
    start = len(store.nodes())
    for i in range(4):
        if store.node(f"aws-{i}") is None:
            store.add_node(f"aws-{i}", NodeKind.CLOUD, "a100", S.REQUESTED, 0.0,
                           reason="burst", actor="crash", request_id="add")
        if store.node(f"gpu{i}") is None:
            store.add_node(f"gpu{i}", NodeKind.ONPREM, None, S.ACTIVE, 0.0,
                           reason="config", actor="crash", request_id="add")
    print("ready", flush=True)
    step = 0
    while True:
        for node in store.nodes():
            step += 1
            store.transition(node.name, NEXT[node.state], reason=f"step {step}",
                             actor="crash", request_id=f"r{step}", at=float(step))
"""

ROUNDS = 4


def _run_and_kill(path: Path, rng: random.Random) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "ready\n", (line, child.stderr.read() if child.stderr else "")
        time.sleep(rng.uniform(0.05, 0.25))
        assert child.poll() is None, "the child stopped by itself"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()  # a no-op once it is dead; a safety net if an assertion failed first
        child.wait(timeout=10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    # Killed, not closed: the WAL was never checkpointed, so reopening exercises recovery.
    assert Path(f"{path}-wal").stat().st_size > 0


def _assert_consistent(path: Path) -> int:
    """Check the file a killed writer left, and return how many transitions it holds."""
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    moves = 0
    with Store.open(path) as store:
        nodes = store.nodes()
        assert len(nodes) == 8
        for node in nodes:
            history = store.history(node.name)
            assert history[0].before is None
            assert history[-1].after == node.state, node.name
            assert history[-1].at == node.state_since, node.name
            for earlier, later in itertools.pairwise(history):
                assert later.before == earlier.after, (node.name, earlier, later)
                assert later.after in allowed(NodeKind(node.kind), earlier.after)
            moves += len(history) - 1
    return moves


def test_a_writer_killed_mid_way_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    rng = random.Random(5)
    counts = []
    for _ in range(ROUNDS):
        _run_and_kill(path, rng)
        counts.append(_assert_consistent(path))
    # Each child got work done before it was killed (else the test would prove nothing).
    assert counts[0] > 0
    assert all(later > earlier for earlier, later in itertools.pairwise(counts))
