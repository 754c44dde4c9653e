"""The watchdog's decision: when a node counts as idle, and when the lease counts as stale.

The lease is a real file whose modification time the tests set; the clock is the test's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tidectl.agents.watchdog import BUSY_LOG_EVERY_S, Watchdog, gpus_busy, slurm_busy


def _gpus(*utils: float | None) -> dict[str, object]:
    return {"source": "sim", "gpus": [{"index": i, "util_pct": u} for i, u in enumerate(utils)]}


@pytest.mark.parametrize(
    ("section", "busy"),
    [
        (_gpus(0.0, 4.9, 0.0), None),
        (_gpus(0.0, 5.0), "GPU 1 is at 5 % utilisation (idle is below 5 %)"),
        (_gpus(93.2), "GPU 0 is at 93 % utilisation (idle is below 5 %)"),
        (_gpus(0.0, None), "GPU 1's utilisation could not be read"),
        ({"error": "gpu probe did not finish", "timed_out": True}, "the GPU probe failed"),
        ({"source": "nvml", "driver_version": "550"}, "the GPU probe returned no list"),
        ({"source": None, "gpus": [], "no_driver": "no NVIDIA driver"}, None),
    ],
)
def test_only_every_gpu_below_the_threshold_is_idle(
    section: dict[str, object], busy: str | None
) -> None:
    said = gpus_busy(section, 5.0)
    if busy is None:
        assert said is None
    else:
        assert said is not None and said.startswith(busy)


class FakeSlurm:
    """squeue and sinfo as a node would answer them: what each prints, or how it fails."""

    def __init__(self, jobs: str = "", states: str = "idle", fail: str | None = None) -> None:
        self.jobs, self.states, self.fail = jobs, states, fail
        self.asked: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        self.asked.append(list(argv))
        tool = os.path.basename(argv[0])
        if self.fail == "timeout":
            raise subprocess.TimeoutExpired(list(argv), timeout)
        if self.fail == tool:
            return 1, "", f"{tool}: error: Unable to contact slurm controller"
        return 0, self.jobs if tool == "squeue" else self.states, ""


def _which(*present: str) -> object:
    return lambda name: f"/usr/bin/{name}" if name in present else None


@pytest.mark.parametrize(
    ("slurm", "busy"),
    [
        (FakeSlurm(states="idle"), None),
        (FakeSlurm(states="drained*"), None),
        (FakeSlurm(states="down~"), None),
        (FakeSlurm(states=""), None),  # Slurm does not know the node: it runs nothing there
        (FakeSlurm(jobs="4242\n4243", states="mixed"), "Slurm runs job(s) 4242, 4243 on n1"),
        (FakeSlurm(states="draining"), "Slurm says n1 is draining"),
        (FakeSlurm(states="allocated"), "Slurm says n1 is allocated"),
        (FakeSlurm(fail="squeue"), "`/usr/bin/squeue -h -w n1 -o %i` failed with status 1"),
        (FakeSlurm(fail="sinfo"), "`/usr/bin/sinfo -h -N -n n1 -o %T` failed with status 1"),
        (FakeSlurm(fail="timeout"), "`/usr/bin/squeue -h -w n1 -o %i` did not answer"),
    ],
)
def test_slurm_must_say_no_job_and_idle_drained_or_down(slurm: FakeSlurm, busy: str | None) -> None:
    said = slurm_busy("n1", run=slurm, which=_which("squeue", "sinfo"))  # type: ignore[arg-type]
    if busy is None:
        assert said is None
    else:
        assert said is not None and said.startswith(busy), said


def test_without_slurm_only_the_gpus_count_and_half_a_slurm_is_busy() -> None:
    slurm = FakeSlurm(jobs="1")
    assert slurm_busy("n1", run=slurm, which=_which()) is None  # type: ignore[arg-type]
    assert slurm.asked == []
    half = slurm_busy("n1", run=slurm, which=_which("squeue"))  # type: ignore[arg-type]
    assert half is not None and "sinfo is missing" in half


class Node:
    """A watchdog over a real lease file, with the test's clock and a node it can make busy."""

    def __init__(self, tmp_path: Path, lease_s: float = 60.0, idle_window_s: float = 0.0):
        self.now = 1_000_000.0
        self.lease = tmp_path / "lease"
        self.busy: str | None = None
        self.looked = 0
        self.logged: list[str] = []
        self.dog = Watchdog(
            str(self.lease),
            lease_s,
            self._busy,
            self.logged.append,
            idle_window_s=idle_window_s,
            clock=lambda: self.now,
        )

    def _busy(self) -> str | None:
        self.looked += 1
        return self.busy

    def touch(self, ago: float = 0.0) -> None:
        self.lease.touch()
        os.utime(self.lease, (self.now - ago, self.now - ago))


def test_a_fresh_lease_powers_nothing_off_and_does_not_even_look(tmp_path: Path) -> None:
    node = Node(tmp_path)
    for _ in range(10):
        node.now += 30
        node.touch(ago=1)
        assert node.dog.check() is False
    assert node.looked == 0


def test_a_stale_lease_powers_off_an_idle_node(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.touch()
    node.now += 59.9
    assert node.dog.check() is False
    node.now += 0.2
    assert node.dog.check() is True
    assert "no control plane holds it" in node.logged[0]
    assert node.logged[-1].startswith("powering off: the lease is 60.1 s old (lease 60 s)")


def test_a_busy_node_is_left_alone_logged_once_and_checked_again(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.now += 60  # a lease since the watchdog started, and no touch
    node.busy = "GPU 3 is at 97 % utilisation"
    for _ in range(20):
        node.now += 10
        assert node.dog.check() is False
    assert node.looked == 20
    assert node.logged.count("not powering off: GPU 3 is at 97 % utilisation") == 1
    node.now += BUSY_LOG_EVERY_S
    node.dog.check()
    assert node.logged.count("not powering off: GPU 3 is at 97 % utilisation") == 2
    node.busy = None
    assert node.dog.check() is True


def test_the_node_must_stay_idle_for_the_whole_window(tmp_path: Path) -> None:
    node = Node(tmp_path, idle_window_s=30)
    node.now += 60  # a lease since the watchdog started, and no touch
    assert node.dog.check() is False  # idle from now
    node.now += 20
    node.busy = "GPU 0 is at 91 % utilisation"
    assert node.dog.check() is False  # a busy reading starts the window again
    node.busy = None
    node.now += 10
    assert node.dog.check() is False
    node.now += 29
    assert node.dog.check() is False
    node.now += 1
    assert node.dog.check() is True


def test_a_control_plane_that_comes_back_resets_everything(tmp_path: Path) -> None:
    node = Node(tmp_path, idle_window_s=30)
    node.now += 60  # a lease since the watchdog started, and no touch
    node.dog.check()
    node.now += 20
    node.touch()  # streaming again
    assert node.dog.check() is False
    assert "a control plane is back" in node.logged[-1]
    node.now += 60  # stale again: the idle window starts over
    assert node.dog.check() is False
    node.now += 29
    assert node.dog.check() is False
    node.now += 1
    assert node.dog.check() is True


def test_without_a_lease_file_the_watchdogs_start_counts_and_a_lost_file_keeps_its_time(
    tmp_path: Path,
) -> None:
    node = Node(tmp_path)
    node.now += 59
    assert node.dog.check() is False  # never streamed yet: counted from the start
    node.now += 1
    assert node.dog.check() is True
    again = Node(tmp_path)
    again.touch()
    again.now += 30
    assert again.dog.check() is False
    again.lease.unlink()
    again.now += 29.9
    assert again.dog.check() is False
    again.now += 0.1
    assert again.dog.check() is True


def test_a_failed_poweroff_is_tried_again_a_lease_later(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.now += 61
    assert node.dog.check() is True
    node.dog.poweroff_failed("'sudo systemctl poweroff' exited with status 1")
    assert "trying again in 60 s" in node.logged[-1]
    node.now += 59
    assert node.dog.check() is False
    node.now += 1
    assert node.dog.check() is True


def test_a_watchdog_refuses_a_lease_of_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="longer than 0 s"):
        Watchdog(str(tmp_path / "lease"), 0, lambda: None, print)
