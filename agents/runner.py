"""Runs the probes with a deadline, and the stream loop around them.

Each probe runs on its own daemon thread. A tick hands every idle probe its call, then waits
for the results until the tick's budget is spent: a probe that hangs (a dead NFS server, a
wedged driver) costs its own section that tick, never the tick itself, and it is not called
again until its stuck call returns, so stuck threads never pile up. The threads are daemon
threads because a stuck system call cannot be interrupted: the process must be able to exit
past them (``concurrent.futures`` joins its workers at exit, which would hang here).
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

from tidectl.agents import AGENT_VERSION, protocol
from tidectl.agents.probes.base import Probe, Section, describe_error, error_section


class _Worker:
    """One daemon thread that runs one call at a time for one probe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._todo = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._call: Optional[Callable[[], Any]] = None
        self._outcome: Tuple[bool, Any] = (False, None)
        self.started_at = 0.0
        thread = threading.Thread(target=self._loop, name="probe-" + name, daemon=True)
        thread.start()

    @property
    def busy(self) -> bool:
        return not self._done.is_set()

    def submit(self, call: Callable[[], Any]) -> None:
        self._call = call
        self.started_at = time.monotonic()
        self._done.clear()
        self._todo.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(max(0.0, timeout))

    @property
    def outcome(self) -> Tuple[bool, Any]:
        """(True, value) or (False, exception) of the last finished call."""
        return self._outcome

    def _loop(self) -> None:
        while True:
            self._todo.wait()
            self._todo.clear()
            call = self._call
            try:
                self._outcome = (True, call() if call else None)
            except BaseException as exc:  # a probe's failure is data, whatever it is
                self._outcome = (False, exc)
            self._done.set()


class Sampler:
    """Calls ``facts`` or ``sample`` on every probe, each bounded by one shared deadline."""

    def __init__(self, probes: List[Probe]) -> None:
        self.probes = list(probes)
        self._workers = {probe.name: _Worker(probe.name) for probe in self.probes}

    def run(self, method: str, budget_s: float) -> Dict[str, Section]:
        deadline = time.monotonic() + budget_s
        submitted = []
        for probe in self.probes:
            worker = self._workers[probe.name]
            if not worker.busy:
                worker.submit(getattr(probe, method))
                submitted.append(probe.name)
        sections: Dict[str, Section] = {}
        for probe in self.probes:
            worker = self._workers[probe.name]
            finished = worker.wait(deadline - time.monotonic())
            if finished and probe.name in submitted:
                sections[probe.name] = _section_from(probe.name, worker.outcome)
            else:
                # Only a call made this tick may speak for this tick: a late answer to an
                # earlier call would carry old data under a new timestamp.
                running = time.monotonic() - worker.started_at
                sections[probe.name] = error_section(
                    "%s probe did not finish within %.2f s (its call has run %.1f s); "
                    "skipped this tick" % (probe.name, budget_s, running),
                    timed_out=True,
                )
        return sections

    def close(self) -> None:
        for probe in self.probes:
            with contextlib.suppress(Exception):  # best effort: the process is ending
                probe.close()


def _section_from(name: str, outcome: Tuple[bool, Any]) -> Section:
    ok, value = outcome
    if not ok:
        return error_section("%s probe failed: %s" % (name, describe_error(value)))
    if not isinstance(value, dict):
        return error_section(
            "%s probe returned %s instead of an object" % (name, type(value).__name__)
        )
    return value


def _max_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


class Stream:
    """The agent's main loop: a hello, then one sample every ``interval_s``.

    Ticks are scheduled on the monotonic clock from the start, so they do not drift; a tick
    that overran skips the ticks it missed instead of bursting to catch up.
    """

    def __init__(
        self,
        probes: List[Probe],
        out: BinaryIO,
        *,
        interval_s: float = 1.0,
        sim_seed: Optional[int] = None,
        budget_fraction: float = 0.8,
        stop: Optional[threading.Event] = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval must be positive, got %r" % interval_s)
        self.sampler = Sampler(probes)
        self.out = out
        self.interval_s = interval_s
        self.sim_seed = sim_seed
        self.budget_s = interval_s * budget_fraction
        self.seq = 0
        self.stop = stop if stop is not None else threading.Event()

    def _write(self, record: protocol.Record) -> None:
        self.out.write(protocol.encode(record))
        self.out.flush()

    def hello(self) -> protocol.Record:
        # Inventory may be slow (NVML init, a first statvfs): allow more than one tick.
        facts = self.sampler.run("facts", max(self.budget_s, 10.0))
        return protocol.hello(AGENT_VERSION, time.time(), self.interval_s, facts, self.sim_seed)

    def tick(self) -> protocol.Record:
        ts, mono, cpu0 = time.time(), time.monotonic(), time.process_time()
        sections = self.sampler.run("sample", self.budget_s)
        self.seq += 1
        agent = {
            "cpu_ms": round((time.process_time() - cpu0) * 1000.0, 3),
            "duration_ms": round((time.monotonic() - mono) * 1000.0, 3),
            "max_rss_bytes": _max_rss_bytes(),
        }
        return protocol.sample(seq=self.seq, ts=ts, mono=mono, agent=agent, probes=sections)

    def run(self, count: Optional[int] = None) -> None:
        """Stream until stopped, ``count`` samples are written, or stdout closes.

        A closed stdout raises BrokenPipeError to the caller, which ends the agent quietly.
        """
        self._write(self.hello())
        next_tick = time.monotonic()
        while not self.stop.is_set():
            self._write(self.tick())
            if count is not None and self.seq >= count:
                return
            next_tick += self.interval_s
            now = time.monotonic()
            if next_tick < now:
                missed = int((now - next_tick) // self.interval_s) + 1
                next_tick += missed * self.interval_s
            self.stop.wait(next_tick - now)

    def close(self) -> None:
        self.sampler.close()
