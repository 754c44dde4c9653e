"""Faults of the simulated node: the kinds, the fault file's syntax, its watcher, random faults.

What a fault *does* to the readings lives in ``sim.py``; this module only says what a fault
is, reads them from text, and decides when a line of the fault file takes effect. The rules
are spelled out, with examples, in ``docs/agent-sim.md``.
"""

from __future__ import annotations

import math
import os
import random
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple, Union

GPU = "gpu"
PORT = "port"
MOUNT = "mount"


class KindSpec(NamedTuple):
    """What a fault kind aims at, the parameters it takes, and whether it is an event."""

    target: str
    params: Tuple[str, ...]
    one_shot: bool


#: Every fault kind. One-shot kinds are events (they fire once); the others are conditions
#: that last until they are cleared.
KINDS: Dict[str, KindSpec] = {
    "xid": KindSpec(GPU, ("code",), True),
    "ecc_dbe": KindSpec(GPU, ("count",), True),
    "ecc_sbe": KindSpec(GPU, ("rate",), False),
    "gpu_lost": KindSpec(GPU, (), False),
    "hot": KindSpec(GPU, ("temp",), False),
    "ib_down": KindSpec(PORT, ("phys",), False),
    "symbol_errors": KindSpec(PORT, ("rate",), False),
    "disk_full": KindSpec(MOUNT, ("pct",), False),
    "stale_mount": KindSpec(MOUNT, (), False),
}

#: ``phys=`` values of ``ib_down``: the sysfs phys_state the port shows.
PHYS_STATES: Dict[str, Tuple[int, str]] = {"disabled": (3, "Disabled"), "polling": (2, "Polling")}

_PORT_RE = re.compile(r"^[A-Za-z0-9_.-]+/[1-9][0-9]*$")
_INT_RE = re.compile(r"^[0-9]+$")


class FaultError(ValueError):
    """A fault or clear rule that cannot be: unknown kind, missing target, bad value."""


@dataclass(frozen=True)
class Fault:
    """One fault. Parameters that the kind does not take keep their defaults and are ignored."""

    kind: str
    gpu: Optional[int] = None
    port: Optional[str] = None
    mount: Optional[str] = None
    code: int = 79
    count: int = 1
    rate: float = 10.0
    temp: float = 92.0
    phys: str = "disabled"
    pct: float = 99.5
    #: Only the node with this hostname takes the fault (one fault file for many nodes).
    node: Optional[str] = None

    def __post_init__(self) -> None:
        spec = KINDS.get(self.kind)
        if spec is None:
            raise FaultError(
                "unknown fault kind %r (known: %s)" % (self.kind, ", ".join(sorted(KINDS)))
            )
        _check_targets(self.gpu, self.port, self.mount)
        if getattr(self, spec.target) is None:
            raise FaultError("%s needs %s=" % (self.kind, spec.target))
        for other in (GPU, PORT, MOUNT):
            if other != spec.target and getattr(self, other) is not None:
                raise FaultError("%s takes %s=, not %s=" % (self.kind, spec.target, other))
        if self.code < 0:
            raise FaultError("code must be 0 or more, not %d" % self.code)
        if self.count < 1:
            raise FaultError("count must be 1 or more, not %d" % self.count)
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise FaultError("rate must be a finite number of 0 or more, not %r" % self.rate)
        if not (math.isfinite(self.temp) and 0 < self.temp <= 150):
            raise FaultError("temp must be in (0, 150] degrees C, not %r" % self.temp)
        if self.phys not in PHYS_STATES:
            raise FaultError("phys must be one of %s, not %r" % (", ".join(PHYS_STATES), self.phys))
        if not (math.isfinite(self.pct) and 0 < self.pct <= 100):
            raise FaultError("pct must be in (0, 100], not %r" % self.pct)

    @property
    def one_shot(self) -> bool:
        """True for events (xid, ecc_dbe), which fire once instead of lasting."""
        return KINDS[self.kind].one_shot

    @property
    def target(self) -> str:
        """The faulty part as text: ``3`` for a GPU, ``mlx5_2/1``, ``/scratch``."""
        return str(getattr(self, KINDS[self.kind].target))

    def canonical(self) -> str:
        """The fault as one fault-file line with every parameter spelled out.

        Two lines that mean the same fault (other spacing, order, defaults left out) have
        the same canonical form: that is what the fault file's "same line" rule compares.
        """
        spec = KINDS[self.kind]
        parts = [self.kind, "%s=%s" % (spec.target, self.target)]
        parts.extend("%s=%s" % (name, _fmt(getattr(self, name))) for name in spec.params)
        if self.node is not None:
            parts.append("node=%s" % self.node)
        return " ".join(parts)


@dataclass(frozen=True)
class Clear:
    """A clear rule: ends the faults that match every filter given (none given: all)."""

    kind: Optional[str] = None
    gpu: Optional[int] = None
    port: Optional[str] = None
    mount: Optional[str] = None
    node: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise FaultError(
                "unknown fault kind %r (known: %s)" % (self.kind, ", ".join(sorted(KINDS)))
            )
        _check_targets(self.gpu, self.port, self.mount)

    def matches(self, fault: Fault) -> bool:
        """Whether this rule ends ``fault``."""
        return (
            (self.kind is None or fault.kind == self.kind)
            and (self.gpu is None or fault.gpu == self.gpu)
            and (self.port is None or fault.port == self.port)
            and (self.mount is None or fault.mount == self.mount)
        )

    def canonical(self) -> str:
        """The rule as one fault-file line, filters in a fixed order."""
        parts = ["clear"]
        for name in ("kind", GPU, PORT, MOUNT, "node"):
            value = getattr(self, name)
            if value is not None:
                parts.append("%s=%s" % (name, value))
        return " ".join(parts)


Rule = Union[Fault, Clear]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return ("%.6f" % value).rstrip("0").rstrip(".")
    return str(value)


def _check_targets(gpu: Optional[int], port: Optional[str], mount: Optional[str]) -> None:
    if gpu is not None and gpu < 0:
        raise FaultError("gpu must be an index of 0 or more, not %d" % gpu)
    if port is not None and not _PORT_RE.match(port):
        raise FaultError("port must look like mlx5_0/1 (HCA/port number), not %r" % port)
    if mount is not None and not mount.startswith("/"):
        raise FaultError("mount must be an absolute path, not %r" % mount)


def _parse_int(key: str, value: str) -> int:
    if not _INT_RE.match(value):
        raise FaultError("%s= takes a whole number, not %r" % (key, value))
    return int(value)


def _parse_float(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise FaultError("%s= takes a number, not %r" % (key, value)) from None
    if not math.isfinite(number):
        raise FaultError("%s= takes a finite number, not %r" % (key, value))
    return number


_CONVERT: Dict[str, Callable[[str, str], object]] = {
    GPU: _parse_int,
    "code": _parse_int,
    "count": _parse_int,
    "rate": _parse_float,
    "temp": _parse_float,
    "pct": _parse_float,
}


def parse_line(text: str) -> Optional[Rule]:
    """One fault-file line: a Fault, a Clear, or None for a blank or comment-only line.

    Raises FaultError with a sentence saying what is wrong.
    """
    words = text.split("#", 1)[0].split()
    if not words:
        return None
    kind, pairs = words[0], words[1:]
    if kind == "clear":
        allowed: Tuple[str, ...] = ("kind", GPU, PORT, MOUNT, "node")
    elif kind in KINDS:
        allowed = (KINDS[kind].target, *KINDS[kind].params, "node")
    else:
        raise FaultError(
            "unknown fault kind %r (known: %s, clear)" % (kind, ", ".join(sorted(KINDS)))
        )
    values: Dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise FaultError("expected key=value, got %r" % pair)
        if key not in allowed:
            raise FaultError("%s takes %s, not %r" % (kind, ", ".join(allowed), key))
        if key in values:
            raise FaultError("%s= given twice" % key)
        convert = _CONVERT.get(key)
        values[key] = convert(key, value) if convert else value
    if kind == "clear":
        return Clear(**values)  # type: ignore[arg-type]
    return Fault(kind, **values)  # type: ignore[arg-type]


def parse_text(text: str, source: str = "faults") -> Tuple[List[Tuple[int, Rule]], List[str]]:
    """Every rule of a fault file with its line number, and one sentence per malformed line."""
    rules: List[Tuple[int, Rule]] = []
    errors: List[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            rule = parse_line(line)
        except FaultError as exc:
            errors.append("%s:%d: %s" % (source, lineno, exc))
            continue
        if rule is not None:
            rules.append((lineno, rule))
    return rules, errors


class FileChange(NamedTuple):
    """What one read of a changed fault file means for the node.

    ``started``: (key, line number, fault) for each fault line that appeared; ``stopped``:
    keys of fault lines that disappeared (or were cancelled by a later clear line);
    ``clears``: clear lines that appeared; ``errors``: one sentence per line that could not
    be read, replacing the previous read's.
    """

    started: List[Tuple[str, int, Fault]]
    stopped: List[str]
    clears: List[Clear]
    errors: List[str]


class FaultFile:
    """Watches a fault file: reads it again only when its mtime, size or inode changed.

    A line takes effect when it *appears*: when a read finds it and the previous read did
    not. Each line is keyed by its canonical form and how many identical lines precede it,
    so an unchanged line never fires twice, the same line added again later fires again,
    and a second copy of a line is a second fault. A missing file holds no faults.
    """

    def __init__(
        self,
        path: str,
        hostname: Optional[str] = None,
        stat: Callable[[str], os.stat_result] = os.stat,
    ) -> None:
        self.path = path
        self.hostname = hostname
        #: How many times the file was read (not stat'ed): for tests and diagnostics.
        self.reads = 0
        self._stat = stat
        self._signature: Optional[Tuple[object, ...]] = None
        self._faults: Dict[str, Fault] = {}
        self._clears: Set[str] = set()

    def poll(self) -> Optional[FileChange]:
        """The change since the last read, or None when the file did not change."""
        try:
            st = self._stat(self.path)
        except FileNotFoundError:
            signature: Tuple[object, ...] = ("missing",)
            text: Optional[str] = ""
        except OSError as exc:
            return self._failed(("error", str(exc)), exc)
        else:
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            text = None
        if signature == self._signature:
            return None
        if text is None:
            try:
                with open(self.path, "rb") as handle:
                    text = handle.read().decode("utf-8", "replace")
            except FileNotFoundError:
                signature, text = ("missing",), ""
            except OSError as exc:
                return self._failed(("error", str(exc)), exc)
            self.reads += 1
        self._signature = signature
        return self._apply(text)

    def _failed(self, signature: Tuple[object, ...], exc: OSError) -> Optional[FileChange]:
        # An unreadable file keeps the faults it last held: a permission slip is not a clear.
        if signature == self._signature:
            return None
        self._signature = signature
        message = "%s: %s: %s" % (self.path, type(exc).__name__, exc.strerror or exc)
        return FileChange([], [], [], [message])

    def _apply(self, text: str) -> FileChange:
        rules, errors = parse_text(text, os.path.basename(self.path))
        seen: Dict[str, int] = {}
        live: List[Tuple[str, int, Fault]] = []
        clear_keys: List[Tuple[str, Clear]] = []
        for lineno, rule in rules:
            if rule.node is not None and rule.node != self.hostname:
                continue
            text_key = rule.canonical()
            seen[text_key] = seen.get(text_key, 0) + 1
            key = "%s #%d" % (text_key, seen[text_key])
            if isinstance(rule, Clear):
                # A clear line cancels the fault lines above it, whatever node filter it had.
                live = [item for item in live if not rule.matches(item[2])]
                clear_keys.append((key, rule))
            else:
                live.append((key, lineno, rule))
        faults = {key: fault for key, _, fault in live}
        started = [item for item in live if item[0] not in self._faults]
        stopped = [key for key in self._faults if key not in faults]
        clears = [rule for key, rule in clear_keys if key not in self._clears]
        self._faults = faults
        self._clears = {key for key, _ in clear_keys}
        return FileChange(started, stopped, clears, errors)


class RandomFault(NamedTuple):
    """One fault of the random mode: when it starts and how long it lasts (sim seconds)."""

    at_s: float
    fault: Fault
    duration_s: Optional[float]


#: Relative weights of the kinds in random mode: common, mild faults more often.
_RANDOM_WEIGHTS: Tuple[Tuple[str, float], ...] = (
    ("xid", 3.0),
    ("ecc_sbe", 2.0),
    ("symbol_errors", 1.5),
    ("hot", 1.0),
    ("ib_down", 1.0),
    ("stale_mount", 1.0),
    ("ecc_dbe", 0.5),
    ("disk_full", 0.5),
    ("gpu_lost", 0.3),
)
#: XIDs seen in the field: 13 graphics engine exception, 31 MMU fault, 43 reset channel,
#: 48 DBE, 63/64 row remapping, 74 NVLink error, 79 fallen off the bus, 94/95 contained and
#: uncontained ECC errors.
_RANDOM_XIDS = (13, 13, 31, 31, 43, 48, 63, 74, 79, 94, 95)


class RandomFaults:
    """A seeded Poisson stream of faults, each with a target this node has.

    The stream has its own random generator, so turning it on does not change the node's jobs.
    """

    def __init__(
        self, seed: int, rate_per_hour: float, gpus: int, ports: List[str], mounts: List[str]
    ) -> None:
        self._rng = random.Random("tidectl-sim:%d:faults" % seed)
        self._mean_gap_s = 3600.0 / rate_per_hour if rate_per_hour > 0 else math.inf
        self._gpus, self._ports, self._mounts = gpus, ports, mounts
        self._at = 0.0
        self._next: Optional[RandomFault] = None

    def peek(self) -> Optional[RandomFault]:
        """The next fault, without taking it; None when the rate is zero."""
        if self._next is None and math.isfinite(self._mean_gap_s):
            self._at += -math.log(1.0 - self._rng.random()) * self._mean_gap_s
            self._next = self._draw(self._at)
        return self._next

    def pop(self) -> Optional[RandomFault]:
        """The next fault, taken."""
        upcoming = self.peek()
        self._next = None
        return upcoming

    def _draw(self, at: float) -> RandomFault:
        rng = self._rng
        total = sum(weight for _, weight in _RANDOM_WEIGHTS)
        pick = rng.random() * total
        kind = _RANDOM_WEIGHTS[-1][0]
        for name, weight in _RANDOM_WEIGHTS:
            if pick < weight:
                kind = name
                break
            pick -= weight
        target = KINDS[kind].target
        gpu = int(rng.random() * self._gpus)
        port = self._ports[int(rng.random() * len(self._ports))]
        mount = self._mounts[int(rng.random() * len(self._mounts))]
        duration = 120.0 + rng.random() * 780.0
        if kind == "xid":
            code = _RANDOM_XIDS[int(rng.random() * len(_RANDOM_XIDS))]
            return RandomFault(at, Fault(kind, gpu=gpu, code=code), None)
        if kind == "ecc_dbe":
            return RandomFault(at, Fault(kind, gpu=gpu), None)
        if target == GPU:
            rate = float(1 + int(rng.random() * 100))
            return RandomFault(at, Fault(kind, gpu=gpu, rate=rate), duration)
        if target == PORT:
            rate = float(1 + int(rng.random() * 50))
            phys = "polling" if rng.random() < 0.5 else "disabled"
            return RandomFault(at, Fault(kind, port=port, rate=rate, phys=phys), duration)
        return RandomFault(at, Fault(kind, mount=mount), duration)
