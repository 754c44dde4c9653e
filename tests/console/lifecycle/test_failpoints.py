"""Failpoints: unarmed they do nothing; armed, the process dies of SIGKILL right there."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tidectl.console.lifecycle import failpoints

CONSOLE = Path(__file__).resolve().parents[3] / "console"
CHILD = """
from tidectl.console.lifecycle import failpoints
print("before", flush=True)
failpoints.reach("burst.after-launch")
print("after", flush=True)
"""


def test_reaching_a_point_that_is_not_armed_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failpoints, "_armed", "burst.before-launch")
    for name in sorted(failpoints.POINTS - {"burst.before-launch"}):
        failpoints.reach(name)  # an armed point would kill pytest itself here
    monkeypatch.setattr(failpoints, "_armed", None)
    for name in sorted(failpoints.POINTS):
        failpoints.reach(name)


def _child(armed: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV}
    if armed is not None:
        env[failpoints.ENV] = armed
    return subprocess.run(
        [sys.executable, "-c", CHILD],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_an_armed_point_kills_the_process_with_sigkill_where_it_is_reached() -> None:
    killed = _child("burst.after-launch")
    assert killed.returncode == -signal.SIGKILL
    assert killed.stdout == "before\n"
    assert "failpoint burst.after-launch: SIGKILL" in killed.stderr

    other = _child("reconcile.joining")
    assert (other.returncode, other.stdout) == (0, "before\nafter\n"), other.stderr


def test_every_documented_point_is_reached_once_in_the_code_and_no_other() -> None:
    reached = [
        name
        for path in sorted(CONSOLE.rglob("*.py"))
        for name in re.findall(r'failpoints\.reach\("([^"]+)"\)', path.read_text())
    ]
    assert sorted(reached) == sorted(failpoints.POINTS)
    for name in failpoints.POINTS:
        assert f"``{name}``" in (failpoints.__doc__ or "")
