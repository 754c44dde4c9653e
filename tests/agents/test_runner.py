"""The sampler and the stream loop: deadlines, failing probes, and how the agent ends."""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tidectl.agents import protocol, runner
from tidectl.agents.probes.base import Probe, Section
from tidectl.agents.runner import Sampler, Stream, next_tick


class CountingProbe(Probe):
    def __init__(self, name: str = "host") -> None:
        self.name = name
        self.calls = 0

    def facts(self) -> Section:
        return {"hostname": "n1"}

    def sample(self) -> Section:
        self.calls += 1
        return {"calls": self.calls}


class FailingProbe(Probe):
    name = "gpu"

    def sample(self) -> Section:
        raise RuntimeError("driver said no\nsecond line is dropped")


class HangingProbe(Probe):
    """Blocks in sample() until released, like statvfs on a dead NFS server."""

    name = "storage"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def sample(self) -> Section:
        self.calls += 1
        self.release.wait(30)
        return {"late": True}


class WrongTypeProbe(Probe):
    name = "net"

    def sample(self) -> Section:
        return ["not", "a", "dict"]  # type: ignore[return-value]


def test_a_failing_probe_is_an_error_in_its_section_only() -> None:
    sampler = Sampler([CountingProbe(), FailingProbe(), WrongTypeProbe()])
    first = sampler.run("sample", 1.0)
    assert first["host"] == {"calls": 1}
    assert first["gpu"] == {"error": "gpu probe failed: RuntimeError: driver said no"}
    assert first["net"] == {"error": "net probe returned list instead of an object"}
    second = sampler.run("sample", 1.0)
    assert second["host"] == {"calls": 2}
    assert "error" in second["gpu"]


def test_a_hanging_probe_costs_its_section_not_the_tick() -> None:
    hanging = HangingProbe()
    sampler = Sampler([CountingProbe(), hanging])
    started = time.monotonic()
    sections = sampler.run("sample", 0.3)
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 0.6
    assert sections["host"] == {"calls": 1}
    assert sections["storage"]["timed_out"] is True
    assert "did not finish within 0.30 s" in sections["storage"]["error"]

    # While the call is stuck it is not made again, and the next tick does not wait for it.
    started = time.monotonic()
    sections = sampler.run("sample", 0.3)
    assert time.monotonic() - started < 0.6
    assert hanging.calls == 1
    assert sections["storage"]["timed_out"] is True

    # The late answer to the old call is not passed off as this tick's reading.
    hanging.release.set()
    time.sleep(0.05)
    sections = sampler.run("sample", 0.3)
    assert sections["storage"] == {"late": True}
    assert hanging.calls == 2


def test_stream_writes_hello_then_numbered_samples_on_schedule() -> None:
    out = io.BytesIO()
    stream = Stream([CountingProbe()], out, interval_s=0.1)
    started = time.monotonic()
    stream.run(count=4)
    elapsed = time.monotonic() - started
    records = [protocol.decode(line) for line in out.getvalue().splitlines()]
    assert [r["type"] for r in records] == ["hello", "sample", "sample", "sample", "sample"]
    assert records[0]["facts"] == {"host": {"hostname": "n1"}}
    assert records[0]["interval_s"] == 0.1
    assert [r["seq"] for r in records[1:]] == [1, 2, 3, 4]
    assert [r["probes"]["host"]["calls"] for r in records[1:]] == [1, 2, 3, 4]
    assert 0.28 < elapsed < 0.8  # three waits of one interval each
    gaps = [b["mono"] - a["mono"] for a, b in itertools.pairwise(records[1:])]
    assert all(0.07 < gap < 0.2 for gap in gaps), gaps
    agent = records[-1]["agent"]
    assert agent["cpu_ms"] >= 0 and agent["max_rss_bytes"] > 1_000_000


def test_stream_with_a_hung_probe_keeps_its_interval() -> None:
    hanging = HangingProbe()
    out = io.BytesIO()
    stream = Stream([CountingProbe(), hanging], out, interval_s=0.2)
    started = time.monotonic()
    stream.run(count=3)
    elapsed = time.monotonic() - started
    hanging.release.set()
    samples = [protocol.decode(line) for line in out.getvalue().splitlines()[1:]]
    assert len(samples) == 3
    assert elapsed < 3 * 0.2 + 0.3
    assert all(s["probes"]["storage"]["timed_out"] for s in samples)
    assert [s["probes"]["host"]["calls"] for s in samples] == [1, 2, 3]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        Stream([], io.BytesIO(), interval_s=0)


# The agent as a process: it must end quietly, with status 0, however it is told to stop.


def _start_agent(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tidectl.agents", "stream", "--interval", "0.1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _first_line(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    assert proc.stdout is not None
    return protocol.decode(proc.stdout.readline())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGPIPE, signal.SIGHUP, signal.SIGINT])
def test_agent_ends_quietly_on_signal(signum: int) -> None:
    proc = _start_agent("--probes", "host,net")
    assert _first_line(proc)["type"] == "hello"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=10)
    assert (proc.returncode, stderr) == (0, b""), stderr.decode(errors="replace")


def test_agent_ends_quietly_when_its_reader_goes_away() -> None:
    proc = _start_agent("--probes", "host,net")
    assert _first_line(proc)["type"] == "hello"
    assert proc.stdout is not None
    proc.stdout.close()  # the console hung up: the next write meets a closed pipe
    assert proc.wait(timeout=10) == 0
    assert proc.stderr is not None
    assert proc.stderr.read() == b""


def test_agent_exits_past_a_probe_stuck_in_the_kernel(tmp_path: Path) -> None:
    """A stuck probe thread must not keep the process alive after SIGTERM."""
    script = tmp_path / "stuck.py"
    script.write_text(
        "import sys, threading\n"
        "from tidectl.agents.probes.base import Probe\n"
        "from tidectl.agents.runner import Stream\n"
        "class Stuck(Probe):\n"
        "    name = 'storage'\n"
        "    def sample(self):\n"
        "        threading.Event().wait()\n"
        "from tidectl.agents import cli\n"
        "cli._stop_on_signals()\n"
        "try:\n"
        "    Stream([Stuck()], sys.stdout.buffer, interval_s=0.1).run()\n"
        "except cli._Stop:\n"
        "    pass\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    assert protocol.decode(proc.stdout.readline())["probes"]["storage"]["timed_out"]
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=5) == 0


def test_unthreaded_sampler_gives_the_same_sections_without_threads() -> None:
    before = threading.active_count()
    sampler = Sampler([CountingProbe(), FailingProbe(), WrongTypeProbe()], threaded=False)
    assert threading.active_count() == before
    sections = sampler.run("sample", 0.0)
    assert sections == {
        "host": {"calls": 1},
        "gpu": {"error": "gpu probe failed: RuntimeError: driver said no"},
        "net": {"error": "net probe returned list instead of an object"},
    }


def test_probes_after_a_hung_one_are_back_on_the_next_tick() -> None:
    hanging = HangingProbe()
    hanging.name = "gpu"  # runs before storage-like probes in this list
    counting = CountingProbe("net")
    sampler = Sampler([hanging, counting])
    threads_before = threading.active_count()

    first = sampler.run("sample", 0.2)
    assert first["gpu"]["timed_out"] and "did not finish" in first["gpu"]["error"]
    assert first["net"]["timed_out"] and "not reached" in first["net"]["error"]
    assert "the gpu probe before it" in first["net"]["error"]

    for _ in range(3):
        later = sampler.run("sample", 0.2)
        assert "still stuck" in later["gpu"]["error"]
    assert later["net"] == {"calls": 3}
    assert hanging.calls == 1
    # One lane stuck with the hung probe, one carrying on: no more, however many ticks.
    assert threading.active_count() - threads_before == 2

    hanging.release.set()
    time.sleep(0.05)
    recovered = sampler.run("sample", 0.2)
    assert recovered["gpu"] == {"late": True}
    assert recovered["net"] == {"calls": 4}
    assert threading.active_count() - threads_before == 2


# The stream's lane keeps its own time: standing orders, and what happens around them.


class ThreadRecordingProbe(CountingProbe):
    """Counts calls and notes the thread and monotonic time of each."""

    def __init__(self, name: str = "host") -> None:
        super().__init__(name)
        self.threads: list[int] = []
        self.times: list[float] = []

    def sample(self) -> Section:
        self.threads.append(threading.get_ident())
        self.times.append(time.monotonic())
        return super().sample()


def test_streaming_reuses_one_lane_that_keeps_the_schedule_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders: list[float | None] = []
    order = runner._Lane.order

    def counting_order(lane: runner._Lane, calls: Any, start: float, every: Any = None) -> int:
        orders.append(every)
        return order(lane, calls, start, every)

    monkeypatch.setattr(runner._Lane, "order", counting_order)
    probe = ThreadRecordingProbe()
    out = io.BytesIO()
    stream = Stream([probe], out, interval_s=0.1)
    threads_before = threading.active_count()
    stream.run(count=6)
    # Orders twice: the hello's facts, then standing sample orders; none per tick after.
    assert orders == [None, 0.1]
    samples = [protocol.decode(line) for line in out.getvalue().splitlines()[1:]]
    # One lane for the hello and every sample: no thread per tick, no hand-over per tick.
    assert len(set(probe.threads)) == 1
    assert threading.active_count() - threads_before == 1
    # Calls start on the schedule (the lane's own timer), and the record says when.
    gaps = [b - a for a, b in itertools.pairwise(probe.times)]
    assert all(0.07 < gap < 0.2 for gap in gaps), gaps
    monos = [s["mono"] for s in samples]
    assert all(0.07 < b - a < 0.2 for a, b in itertools.pairwise(monos)), monos
    # 0.5 s after the first, whatever the jitter: ticks are set from the start, not chained.
    assert abs(monos[-1] - monos[0] - 0.5) < 0.05
    assert [s["probes"]["host"]["calls"] for s in samples] == [1, 2, 3, 4, 5, 6]
    assert all(s["agent"]["duration_ms"] < 100 for s in samples)


def test_no_call_is_made_after_the_stream_ends() -> None:
    probe = CountingProbe()
    stream = Stream([probe], io.BytesIO(), interval_s=0.05)
    stream.run(count=3)
    assert probe.calls == 3
    time.sleep(0.2)  # four more intervals: the standing orders were cancelled
    assert probe.calls == 3
    # A later synchronous tick still works, on the same lane.
    assert stream.tick()["probes"]["host"] == {"calls": 4}
    time.sleep(0.12)
    assert probe.calls == 4
    stream.close()


def test_a_probe_hung_while_streaming_is_left_out_then_back() -> None:
    hanging = HangingProbe()
    counting = CountingProbe("net")
    out = io.BytesIO()
    stream = Stream([hanging, counting], out, interval_s=0.1)
    threads_before = threading.active_count()

    def release_later() -> None:
        time.sleep(0.35)
        hanging.release.set()

    threading.Thread(target=release_later, daemon=True).start()
    started = time.monotonic()
    stream.run(count=8)
    elapsed = time.monotonic() - started
    samples = [protocol.decode(line) for line in out.getvalue().splitlines()[1:]]
    storage = [s["probes"]["storage"] for s in samples]
    assert "did not finish" in storage[0]["error"]
    assert "not reached" in samples[0]["probes"]["net"]["error"]
    assert any("still stuck" in s.get("error", "") for s in storage[1:3])
    # Called again once its stuck call returned, and every tick after that; never twice at
    # a time.
    assert storage[-1] == {"late": True}
    assert hanging.calls == 1 + sum(s == {"late": True} for s in storage)
    nets = [s["probes"]["net"].get("calls") for s in samples[1:]]
    assert nets == list(range(1, 8))  # never skipped after the first tick
    assert elapsed < 8 * 0.1 + 0.3  # the interval kept throughout
    # The stuck lane was reused once free: two lanes, however many ticks.
    assert threading.active_count() - threads_before == 2


def test_a_slow_reader_makes_the_stream_skip_ticks_not_burst() -> None:
    class SlowOut(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            if b'"seq":2' in data:
                time.sleep(0.35)  # the console stopped reading for a while
            return super().write(data)

    probe = ThreadRecordingProbe()
    out = SlowOut()
    stream = Stream([probe], out, interval_s=0.1)
    stream.run(count=5)
    samples = [protocol.decode(line) for line in out.getvalue().splitlines()[1:]]
    monos = [s["mono"] for s in samples]
    # After the stall the next sample is on the schedule, not a burst of stale ones.
    assert monos[2] - monos[1] > 0.3
    assert all(0.07 < b - a < 0.2 for a, b in itertools.pairwise(monos[2:])), monos
    # Each record is the reading its calls made at its own time.
    assert [s["probes"]["host"]["calls"] for s in samples] == sorted(
        s["probes"]["host"]["calls"] for s in samples
    )
    assert len(set(probe.threads)) == 1


def test_next_tick_skips_missed_ticks() -> None:
    assert next_tick(10.0, 1.0, 10.5) == 11.0
    assert next_tick(10.0, 1.0, 11.0) == 11.0
    assert next_tick(10.0, 1.0, 13.2) == 14.0
    assert next_tick(10.0, 0.25, 10.9) == 11.0


def test_a_post_leaves_the_semaphore_released_even_when_it_was_released_meanwhile() -> None:
    """A lock used as a binary semaphore is left released by a post, posted twice or not; a
    release that finds it released already (it happened once, in an agent stopped by SIGTERM
    under load) is not an error: the post's promise holds."""
    from tidectl.agents.runner import _post

    lock = threading.Lock()
    _post(lock)
    _post(lock)
    assert lock.acquire(False)  # released, once

    class SeenLockedThenReleased:
        """acquire saw it held; by release, it was released already."""

        def __init__(self) -> None:
            self.lock = threading.Lock()

        def acquire(self, blocking: bool = True) -> bool:
            return False

        def release(self) -> None:
            self.lock.release()  # raises: released already

    _post(SeenLockedThenReleased())  # does not raise
