"""Runs the probes with a deadline, and the stream loop around them.

A tick hands the probes, in order, to one daemon thread (a *lane*) and waits for it until the
tick's budget is spent. One lane, not a thread per probe: every hand-over between threads
costs the GIL a switch, and five of them a tick cost more than the probes themselves.

While streaming, the lane keeps its own time: it sleeps until the next tick, runs the
probes and hands the results over, so a tick costs two thread wake-ups (the lane's timer,
then the stream's thread) instead of three (the stream's timer, the lane, the stream
again). At 1 Hz every wake-up finds cold caches, and each costs as much as a small probe.

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
from tidectl.agents.lease import touch
from tidectl.agents.probes.base import Probe, Section, describe_error, error_section

_Outcome = Tuple[bool, Any]  # (True, value) or (False, exception)
_Calls = List[Tuple[str, Callable[[], Any]]]
#: When a batch began: wall-clock time, monotonic time, process CPU time.
_Began = Tuple[float, float, float]
#: A lane's batch: the number of its orders, its start, its results, when it began.
_Batch = Tuple[int, float, Dict[str, _Outcome], _Began]


def next_tick(previous: float, interval: float, now: float) -> float:
    """The tick after ``previous``; ticks already missed at ``now`` are skipped, not run late
    in a burst."""
    tick = previous + interval
    if tick < now:
        tick += (int((now - tick) // interval) + 1) * interval
    return tick


def _post(semaphore: Any) -> None:
    """Leave a lock used as a binary semaphore released, whether or not it already was (a
    second ``release`` raises). Callers hold the lane's lock, so posts do not interleave.

    A release that finds the lock released already leaves it as wanted, and is not an error:
    once, under CI load, an agent stopped by SIGTERM met one here (the signal landed inside a
    lock wait), and the traceback replaced its quiet exit."""
    semaphore.acquire(False)
    with contextlib.suppress(RuntimeError):  # released already: posted, all this promises
        semaphore.release()


class _Lane:
    """One daemon thread that runs batches of calls one after the other.

    A batch is *ordered* with a start time and, optionally, a period: then the lane runs it
    again every period on its own, until the orders change. Each batch is tagged with the
    number of its orders and its start, so a waiter never takes another batch's results for
    its own.

    Orders and completions are handed over with bare locks used as binary semaphores, not
    ``Event``s: this happens every tick, and each Event operation is a Condition's worth of
    Python code and extra lock calls.
    """

    def __init__(self, number: int) -> None:
        # The lock guards every field but the two semaphores. It makes "which call is
        # running" and "abandon the rest" one atomic fact, so a probe is never running on an
        # abandoned lane while a new lane calls it too.
        self._lock = threading.Lock()
        self._todo = threading.Lock()  # released: the orders changed
        self._todo.acquire()
        self._done = threading.Lock()  # released: a batch finished
        self._done.acquire()
        self._pending = False  # there are orders to carry out
        self._serial = 0  # numbers the orders
        self._calls: _Calls = []
        self._names: List[str] = []
        self._start = 0.0  # monotonic time the next batch is due
        self._every: Optional[float] = None  # the period of standing orders
        self._abandoned = False
        self._busy = False
        #: The running or last batch, and the last finished one: (orders, start, results,
        #: when it began). Results fill in as the calls return.
        self.batch: _Batch = (0, 0.0, {}, (0.0, 0.0, 0.0))
        self.finished: _Batch = self.batch
        self.current: Optional[str] = None
        self.current_since = 0.0
        name = "tidectl-probes-%d" % number
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    @property
    def busy(self) -> bool:
        return self._busy

    def order(self, calls: _Calls, start: float, every: Optional[float] = None) -> int:
        """Run ``calls`` at ``start`` (monotonic; at once if past), and every ``every``
        seconds after that when given. Returns the orders' number, for :meth:`wait`."""
        with self._lock:
            # A batch that finished after its tick stopped waiting left _done released.
            self._done.acquire(False)
            self._serial += 1
            self._calls = calls
            self._names = [name for name, _ in calls]
            self._start = start
            self._every = every
            self._pending = True
            self._abandoned = False
            _post(self._todo)
            return self._serial

    def standing(self, start: float, calls: _Calls) -> Optional[int]:
        """The number of the standing orders if they make ``calls`` at ``start``, else None."""
        with self._lock:
            standing = self._pending and self._every is not None and self._start == start
            if standing and (self._calls is calls or self._names == [name for name, _ in calls]):
                return self._serial
            return None

    def stop_repeating(self) -> None:
        """Start no more batches (one running finishes)."""
        with self._lock:
            self._every = None
            if not self._busy:
                self._pending = False
            _post(self._todo)

    def wait(self, serial: int, start: float, deadline: float) -> bool:
        """Wait until the batch of orders ``serial`` due at ``start`` has finished, or
        ``deadline`` (monotonic) has passed. Other batches' completions are passed over."""
        while self._done.acquire(True, max(0.0, deadline - time.monotonic())):
            if self.finished[:2] == (serial, start):
                return True
        return False

    def abandon(self) -> Optional[str]:
        """Stop after the running call; returns its name (None if nothing is running)."""
        with self._lock:
            self._abandoned = True
            self._every = None
            if not self._busy:
                self._pending = False  # not begun yet: it never will
            return self.current if self._busy else None

    def running(self) -> Optional[str]:
        with self._lock:
            return self.current if self._busy else None

    def _loop(self) -> None:
        lock = self._lock
        while True:
            with lock:
                pending, start = self._pending, self._start
            if not pending:
                self._todo.acquire()
                continue
            delay = start - time.monotonic()
            if delay > 0:
                # Until it is time, or the orders change: either way, read them again.
                self._todo.acquire(True, delay)
                continue
            with lock:
                if not self._pending or self._start != start:
                    continue
                calls, serial = self._calls, self._serial
                results: Dict[str, _Outcome] = {}
                began = (time.time(), time.monotonic(), time.process_time())
                self.batch = batch = (serial, start, results, began)
                self._busy = True
            for name, call in calls:
                with lock:
                    if self._abandoned:
                        break
                    self.current, self.current_since = name, time.monotonic()
                try:
                    outcome: _Outcome = (True, call())
                except BaseException as exc:  # a probe's failure is data, whatever it is
                    outcome = (False, exc)
                results[name] = outcome  # the waiting thread copies the dict when it reads
            with lock:
                self.current = None
                self._busy = False
                self.finished = batch
                if serial == self._serial:  # the orders did not change meanwhile
                    if self._every is None:
                        self._pending = False
                    else:
                        self._start = next_tick(start, self._every, time.monotonic())
                _post(self._done)


class Sampler:
    """Calls ``facts`` or ``sample`` on every probe, all bounded by one deadline."""

    def __init__(self, probes: List[Probe], threaded: bool = True) -> None:
        self.probes = list(probes)
        # Unthreaded, probes run in the caller's thread with no deadline: for probes that
        # cannot block (the simulated node), when a server hosts a thousand of them in one
        # process and a thread each would be a thousand threads.
        self.threaded = threaded
        self._lanes: List[_Lane] = []
        self._paced: Optional[_Lane] = None  # the lane with standing sample orders, if any
        self._all_calls: Dict[str, _Calls] = {}  # per method, every probe's

    def _stuck(self) -> Dict[str, _Lane]:
        """Probes whose call from an earlier tick is still running, and where."""
        stuck = {}
        for lane in self._lanes:
            if lane is self._paced:
                # Busy only with this tick's calls, begun on its own time: a lane whose
                # batch overran its deadline was abandoned, and is no longer the paced one.
                continue
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
        """Call ``method`` on every probe now; wait at most ``budget_s``."""
        if not self.threaded:
            return {probe.name: _call_inline(probe, method) for probe in self.probes}
        return self._run(method, time.monotonic(), None, budget_s)[0]

    def run_at(
        self, start: float, every_s: float, budget_s: float
    ) -> Tuple[Dict[str, Section], _Began]:
        """``sample`` every probe at ``start`` (monotonic), waiting at most until ``start +
        budget_s``; also returns when the calls began. Expecting the next call for ``start +
        every_s``, the lane is left to repeat the calls then on its own. Threaded only."""
        return self._run("sample", start, every_s, budget_s)

    def stop_pacing(self) -> None:
        """Cancel the standing sample orders (the stream is ending)."""
        if self._paced is not None:
            self._paced.stop_repeating()
            self._paced = None

    def _run(
        self, method: str, start: float, every: Optional[float], budget_s: float
    ) -> Tuple[Dict[str, Section], _Began]:
        stuck = self._stuck()
        if stuck:
            calls = [(p.name, getattr(p, method)) for p in self.probes if p.name not in stuck]
        else:  # the usual case: the same list every tick, which standing orders recognise
            calls = self._all_calls.get(method) or self._all_calls.setdefault(
                method, [(p.name, getattr(p, method)) for p in self.probes]
            )
        results: Dict[str, _Outcome] = {}
        late: Optional[str] = None
        began: Optional[_Began] = None
        if calls:
            lane, serial = self._lane_for(calls, start, every)
            if lane.wait(serial, start, start + budget_s):
                batch = lane.finished
            else:
                late = lane.abandon()
                if lane is self._paced:
                    self._paced = None
                batch = lane.batch  # what this tick's batch has so far, if it began at all
            if batch[:2] == (serial, start):
                results, began = dict(batch[2]), batch[3]
        else:
            delay = start - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # every probe is stuck: still keep the pace
        if began is None:
            began = (time.time(), time.monotonic(), time.process_time())
        return self._sections(results, stuck, late, began[1], budget_s), began

    def _sections(
        self,
        results: Dict[str, _Outcome],
        stuck: Dict[str, _Lane],
        late: Optional[str],
        now: float,
        budget_s: float,
    ) -> Dict[str, Section]:
        """Each probe's section: its result, or why there is none this tick."""
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
                    % (name, now - stuck[name].current_since),
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

    def _lane_for(self, calls: _Calls, start: float, every: Optional[float]) -> Tuple[_Lane, int]:
        """The lane that runs ``calls`` at ``start``, and the number of its orders."""
        paced = self._paced
        if paced is not None:
            if every is not None:
                serial = paced.standing(start, calls)
                if serial is not None:
                    return paced, serial  # already due to run them then: nothing to hand over
            self.stop_pacing()  # other calls or another time: order them afresh
        lane = self._free_lane()
        serial = lane.order(calls, start, every)
        if every is not None:
            self._paced = lane
        return lane, serial

    def close(self) -> None:
        # Lanes are left parked: daemon threads, they end with the process.
        self.stop_pacing()
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
        lease_path: Optional[str] = None,
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
        #: Touched after every record written: the watchdog's lease (``lease.py``).
        self.lease_path = lease_path

    def _write(self, record: protocol.Record) -> None:
        self.out.write(protocol.encode(record))
        self.out.flush()
        if self.lease_path is not None:
            touch(self.lease_path)  # after the write: a reader that went away holds nothing

    def hello(self) -> protocol.Record:
        # Inventory may be slow (NVML init, a first statvfs): allow more than one tick.
        facts = self.sampler.run("facts", max(self.budget_s, 10.0))
        return protocol.hello(AGENT_VERSION, time.time(), self.interval_s, facts, self.sim_seed)

    def tick(self) -> protocol.Record:
        """Sample now."""
        began = (time.time(), time.monotonic(), time.process_time())
        return self._record(self.sampler.run("sample", self.budget_s), began)

    def _record(self, sections: Dict[str, Section], began: _Began) -> protocol.Record:
        ts, mono, cpu0 = began
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
        Threaded, ``stop`` is looked at once a tick (signals still interrupt at once).
        """
        self._write(self.hello())
        tick = time.monotonic()
        try:
            while not self.stop.is_set():
                if self.sampler.threaded:
                    sections, began = self.sampler.run_at(tick, self.interval_s, self.budget_s)
                    self._write(self._record(sections, began))
                else:
                    self._write(self.tick())
                if count is not None and self.seq >= count:
                    return
                tick = next_tick(tick, self.interval_s, time.monotonic())
                if not self.sampler.threaded:
                    self.stop.wait(tick - time.monotonic())
        finally:
            self.sampler.stop_pacing()

    def close(self) -> None:
        self.sampler.close()
