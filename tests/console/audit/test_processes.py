"""Real processes on one log: killed mid-loop with SIGKILL, and two appending at once."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tidectl.console.audit import read, verify

REPO = Path(__file__).parents[3]

# Appends records in a loop once told to go, printing each seq once append() has returned.
APPENDER = """
import sys
from pathlib import Path
from tidectl.console.audit import AuditLog
log = AuditLog(Path(sys.argv[1]))
actor, count = sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
number = 0
while count == 0 or number < count:
    number += 1
    seq = log.append(actor=actor, frontend="cli", action="drain", targets=[f"gpu{number}"],
                     params={"reason": "x" * (number % 300)}, decision="allowed",
                     rule="role:operator", outcome="started", request_id=f"{actor}-{number}")
    print(seq, flush=True)
"""


def start(path: Path, actor: str, count: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(path), actor, str(count)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def test_a_writer_killed_with_sigkill_leaves_a_log_that_verifies(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    child = start(path, "ana", 0)
    go(child)
    assert child.stdout is not None
    confirmed = 0
    while confirmed < 150:
        confirmed = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()

    result = verify(path)
    assert result.ok, result.why
    # Every append that returned is on disk; the kill may have caught one more under way.
    assert result.records >= confirmed
    assert [r.seq for r in read(path)] == list(range(1, result.records + 1))


def test_two_processes_appending_at_once_make_one_unbroken_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    children = [start(path, actor, 200) for actor in ("p0", "p1")]
    for child in children:
        go(child)
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        assert len(out.split()) == 200

    result = verify(path)
    assert (result.ok, result.records, result.torn_tail) == (True, 400, False), result.why
    records = list(read(path))
    assert [r.seq for r in records] == list(range(1, 401))
    assert Counter(r.actor for r in records) == {"p0": 200, "p1": 200}
    # They did write at the same time (else this proves nothing): their records interleave.
    switches = sum(a.actor != b.actor for a, b in itertools.pairwise(records))
    assert switches > 1
    # Each writer's own records are in its order.
    for actor in ("p0", "p1"):
        mine = [int(r.request_id.split("-")[1]) for r in records if r.actor == actor]
        assert mine == list(range(1, 201))
