"""Runs the probes with a deadline, and the stream loop around them.

A tick hands the probes, in order, to one daemon thread (a *lane*) and waits for it until the
tick's budget is spent. One lane, not a thread per probe: every hand-over between threads
costs the GIL a switch, and five of them a tick cost more than the probes themselves.

When a probe hangs (a dead NFS server, a wedged driver), the lane is abandoned at the
deadline: the hung probe's section says it timed out, the probes after it that tick say they
were not reached, and from the next tick on the others run on a fresh lane while the hung
probe is left out until its stuck call returns — so stuck threads never pile up (at most one
per hung probe). Lanes are daemon threads because a stuck system call cannot be interrupted:
the process must be able to exit past them (``concurrent.futures`` joins its workers at exit,
which would hang here).
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

from tidectl.agents import AGENT_VERSION, protocol
from tidectl.agents.probes.base import Probe, Section, describe_error, error_section

_Outcome = Tuple[bool, Any]  # (True, value) or (False, exception)


class _Lane:
    """One daemon thread that runs a tick's calls one after the other."""

    def __init__(self, number: int) -> None:
        # The lock makes "which call is running" and "abandon the rest" one atomic fact, so
        # a probe is never running on an abandoned lane while a new lane calls it too.
        self._lock = threading.Lock()
        self._todo = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._calls: List[Tuple[str, Callable[[], Any]]] = []
        self._abandoned = False
        self.results: Dict[str, _Outcome] = {}
        self.current: Optional[str] = None
        self.current_since = 0.0
        name = "tidectl-probes-%d" % number
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    @property
    def busy(self) -> bool:
        return not self._done.is_set()

    def submit(self, calls: List[Tuple[str, Callable[[], Any]]]) -> None:
        self._calls = calls
        self._abandoned = False
        self.results = {}
        self._done.clear()
        self._todo.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(max(0.0, timeout))

    def abandon(self) -> Optional[str]:
        """Stop after the running call; returns its name (None if nothing is running)."""
        with self._lock:
            self._abandoned = True
            return self.current if self.busy else None

    def running(self) -> Optional[str]:
        with self._lock:
            return self.current if self.busy else None

    def _loop(self) -> None:
        while True:
            self._todo.wait()
            self._todo.clear()
            results: Dict[str, _Outcome] = {}
            for name, call in self._calls:
                with self._lock:
                    if self._abandoned:
                        break
                    self.current, self.current_since = name, time.monotonic()
                try:
                    results[name] = (True, call())
                except BaseException as exc:  # a probe's failure is data, whatever it is
                    results[name] = (False, exc)
                self.results = dict(results)
            with self._lock:
                self.current = None
                self._done.set()


class Sampler:
    """Calls ``facts`` or ``sample`` on every probe, all bounded by one deadline."""

    def __init__(self, probes: List[Probe], threaded: bool = True) -> None:
        self.probes = list(probes)
        # Unthreaded, probes run in the caller's thread with no deadline: for probes that
        # cannot block (the simulated node), when a server hosts a thousand of them in one
        # process and a thread each would be a thousand threads.
        self.threaded = threaded
        self._lanes: List[_Lane] = []

    def _stuck(self) -> Dict[str, _Lane]:
        """Probes whose call from an earlier tick is still running, and where."""
        stuck = {}
        for lane in self._lanes:
            name = lane.running()
            if name is not None:
                stuck[name] = lane
        return stuck

    def _free_lane(self) -> _Lane:
        for lane in self._lanes:
            if not lane.busy:
                return lane
        lane = _Lane(len(self._lanes) + 1)
        self._lanes.append(lane)
        return lane

    def run(self, method: str, budget_s: float) -> Dict[str, Section]:
        if not self.threaded:
            return {probe.name: _call_inline(probe, method) for probe in self.probes}
        started = time.monotonic()
        stuck = self._stuck()
        calls = [(p.name, getattr(p, method)) for p in self.probes if p.name not in stuck]
        results: Dict[str, _Outcome] = {}
        late: Optional[str] = None
        if calls:
            lane = self._free_lane()
            lane.submit(calls)
            if not lane.wait(started + budget_s - time.monotonic()):
                late = lane.abandon()
            results = dict(lane.results)
        sections: Dict[str, Section] = {}
        for probe in self.probes:
            name = probe.name
            if name in results:
                sections[name] = _section_from(name, results[name])
            elif name in stuck:
                # Only a call made this tick may speak for this tick: a late answer to an
                # earlier call would carry old data under a new timestamp.
                sections[name] = error_section(
                    "%s probe is still stuck in a call made %.1f s ago; skipped this tick"
                    % (name, started - stuck[name].current_since),
                    timed_out=True,
                )
            elif name == late:
                sections[name] = error_section(
                    "%s probe did not finish within %.2f s; skipped this tick" % (name, budget_s),
                    timed_out=True,
                )
            else:
                sections[name] = error_section(
                    "%s probe was not reached within %.2f s: the %s probe before it did not "
                    "finish; it runs again next tick" % (name, budget_s, late),
                    timed_out=True,
                )
        return sections

    def close(self) -> None:
        for probe in self.probes:
            with contextlib.suppress(Exception):  # best effort: the process is ending
                probe.close()


def _call_inline(probe: Probe, method: str) -> Section:
    try:
        outcome: _Outcome = (True, getattr(probe, method)())
    except Exception as exc:
        outcome = (False, exc)
    return _section_from(probe.name, outcome)


def _section_from(name: str, outcome: _Outcome) -> Section:
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
        threaded: bool = True,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval must be positive, got %r" % interval_s)
        self.sampler = Sampler(probes, threaded=threaded)
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
