"""InfiniBand, RoCE and AWS EFA ports, read from ``/sys/class/infiniband``.

Eight HCAs carry about 200 small files a tick (five port attributes and ~21 counters each),
and on a virtualised node every system call costs about a microsecond: opening, reading and
closing each file would take over 1 ms of CPU a tick. So the probe builds a *plan* once (the
HCAs, their ports, their counter names) and keeps every file it reads each tick open, reading
it again with one ``pread`` at offset 0. sysfs regenerates an attribute's text on every read
from offset 0 (the documented way to re-read it is to seek to 0 and read again), so a held
descriptor always yields the current value, at a fifth of the cost.

The plan stays correct as devices come and go: the class folder is listed every tick (names
only: ``listdir`` costs less than ``scandir``), so an HCA that appears or goes is followed
at once; a read failing with ENODEV (the device was removed under an open file) or ENOENT
re-plans that HCA at once; and every ``relist_every`` ticks the folder is listed with
inodes (an HCA made again under the same name is a new one), the counter folders that can
change at run time (``hw_counters/``: drivers add optional counters) are listed again, and
an HCA whose listings changed is re-planned. Descriptors are capped at ``max_held_files``;
past that, files are opened on each read, slower but still correct.

A tick reads every held descriptor in one ``map`` of ``pread`` (a C loop, not a Python
one), reuses the parse of port attributes whose bytes did not change (the values, not the
reads: every file is read every tick), and writes the section's JSON text from per-port
templates (see ``protocol.EncodedSection``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from itertools import repeat as _repeat
from typing import Dict, List, Optional, Sequence, Tuple, Union

from tidectl.agents.probes import fsread
from tidectl.agents.probes.base import Probe, Section
from tidectl.agents.protocol import ENCODER, EncodedSection

#: A file read each tick: a held descriptor, or a path opened per read (past the budget).
_Source = Union[int, str]

#: Port attributes read every tick (``link_layer`` is fixed for a port's life: read once).
_PORT_FIELDS = ("state", "phys_state", "rate", "lid", "sm_lid")
#: HCA attributes of the hello facts.
_HCA_FACTS = ("node_guid", "fw_ver", "hca_type", "board_id", "node_desc")

#: What a read gave: the file's bytes, or the error it failed with.
_Raw = Union[bytes, OSError]
#: A port's record up to ``sm_lid``, the errors found making it, and its JSON text without
#: the closing brace (None when it has none: a non-finite rate).
_Fields = Tuple[Section, Dict[str, str], Optional[str]]

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
#: Larger than any port attribute or counter (a u64 is 20 digits).
_READ_SIZE = 128
#: Errors meaning the file or its device is gone, so the plan is out of date.
_GONE = (errno.ENOENT, errno.ENODEV)
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?) Gb/sec")
_DIGITS = re.compile(r"(\d+)")


class _Port:
    """What one port's tick reads, worked out once."""

    __slots__ = (
        "counter_fds",
        "counter_names",
        "counters",
        "field_fds",
        "fields",
        "hca",
        "last_fields",
        "link_layer",
        "number",
        "parsed_fields",
        "template",
    )

    def __init__(self, hca: str, number: int) -> None:
        self.hca = hca
        self.number = number
        self.link_layer: Optional[str] = None
        self.fields: List[Tuple[str, _Source]] = []
        self.counters: List[Tuple[str, _Source]] = []
        # Filled by ``seal`` once the lists above are complete.
        self.counter_names: Tuple[str, ...] = ()
        self.field_fds: Optional[Tuple[int, ...]] = None
        self.counter_fds: Optional[Tuple[int, ...]] = None
        # The port attributes' bytes last tick and what they parsed to (see _port_fields).
        self.last_fields: Optional[List[_Raw]] = None
        self.parsed_fields: _Fields = ({}, {}, None)
        # The counters object's JSON text with a %d for each value, in counter_names order.
        self.template = "{}"

    def seal(self) -> None:
        """Note the descriptors a tick reads in one batch (None when some file has none),
        and the template of the counters' JSON text."""
        self.counter_names = tuple(name for name, _ in self.counters)
        self.field_fds = _all_fds(self.fields)
        self.counter_fds = _all_fds(self.counters)
        keys = [ENCODER.encode(name).replace("%", "%%") for name in self.counter_names]
        self.template = "{" + ",".join(key + ":%d" for key in keys) + "}"


def _all_fds(sources: List[Tuple[str, _Source]]) -> Optional[Tuple[int, ...]]:
    fds = tuple(source for _, source in sources if isinstance(source, int))
    return fds if len(fds) == len(sources) else None


#: An HCA's shape, from its directory listings: per port, its number and folder, and the
#: folder and names of the counters it reads. None when the HCA has no ``ports/`` (gone).
_Layout = Optional[List[Tuple[int, str, str, Tuple[str, ...]]]]


class _Hca:
    """One HCA's ports and the descriptors held for them."""

    __slots__ = ("fds", "ino", "layout", "name", "ports")

    def __init__(self, name: str, ino: int, layout: _Layout) -> None:
        self.name = name
        self.ino = ino
        self.layout = layout
        self.ports: List[_Port] = []
        self.fds: List[int] = []


class IbProbe(Probe):
    """Port state, rate and raw counters of every RDMA device (IB, RoCE, EFA)."""

    name = "ib"

    def __init__(
        self,
        sysfs_root: str = "/sys",
        relist_every: int = 30,
        max_held_files: int = 512,
    ) -> None:
        self._class_dir = os.path.join(sysfs_root, "class", "infiniband")
        self._relist_every = max(1, relist_every)
        self._max_held = max(0, max_held_files)
        self._held = 0
        self._ticks = 0
        self._hcas: Dict[str, _Hca] = {}
        self._order: List[_Hca] = []
        # Every held descriptor of every port, in record order, read in one batch a tick;
        # worked out again when the plan changes (None: not yet; ``()``: not possible).
        self._batch: Optional[Tuple[Tuple[int, ...], List[Tuple[_Port, int, int, int]]]] = None

    # -- hello ---------------------------------------------------------------------------

    def facts(self) -> Section:
        """Each HCA's identity and its ports' link layer, rate, LID and port GUID."""
        try:
            names = os.listdir(self._class_dir)
        except FileNotFoundError:
            return {"hcas": []}
        return {"hcas": [self._hca_facts(name) for name in sorted(names, key=_natural)]}

    def _hca_facts(self, name: str) -> Section:
        folder = os.path.join(self._class_dir, name)
        facts: Section = {"name": name}
        for field in _HCA_FACTS:
            facts[field] = _optional_text(os.path.join(folder, field))
        ports = []
        for number, port_folder in _port_folders(folder):
            rate = _optional_text(os.path.join(port_folder, "rate"))
            lid = _optional_text(os.path.join(port_folder, "lid"))
            gid = _optional_text(os.path.join(port_folder, "gids", "0"))
            ports.append(
                {
                    "port": number,
                    "link_layer": _optional_text(os.path.join(port_folder, "link_layer")),
                    "rate": rate,
                    "rate_gbps": _parse_rate(rate) if rate is not None else None,
                    "lid": _parse_hex(lid),
                    "port_guid": _port_guid(gid),
                }
            )
        facts["ports"] = ports
        return facts

    # -- sample --------------------------------------------------------------------------

    def sample(self) -> Section:
        """One record per port; a field or counter that fails is null and named in errors."""
        names = self._listing()
        if names is None:
            # A node without RDMA devices (or with the driver unloaded) is not an error.
            self._drop_all()
            return {"ports": []}
        self._ticks += 1
        relist = self._ticks >= self._relist_every
        if relist:
            self._ticks = 0
            # Inodes too: an HCA made again under the same name between two ticks is a new
            # device (on sysfs its old files also fail with ENODEV, which re-plans it).
            with os.scandir(self._class_dir) as entries:
                self._sync({entry.name: entry.inode() for entry in entries}, relist=True)
        elif self._hcas.keys() != set(names):
            self._sync({name: self._inode(name) for name in names}, relist=False)
        batch = self._batch_plan()
        if batch is not None:
            fds, slices = batch
            try:
                raws = list(map(_pread, fds, _repeat(_READ_SIZE), _repeat(0)))
            except OSError:
                pass  # a read failed: the HCAs one by one below tell which, and re-plan
            else:
                return _batch_records(slices, raws)
        ports: List[Section] = []
        for hca in list(self._order):
            records, gone = _sample_hca(hca)
            if gone:
                # The device changed under us: re-plan it now and read it once more.
                records, _ = _sample_hca(self._replan(hca))
            ports.extend(records)
        return {"ports": ports}

    def close(self) -> None:
        """Release the held descriptors."""
        self._drop_all()

    def _listing(self) -> Optional[List[str]]:
        """The HCAs' names; None when the class folder does not exist."""
        try:
            return os.listdir(self._class_dir)
        except FileNotFoundError:
            return None

    def _inode(self, name: str) -> int:
        hca = self._hcas.get(name)
        if hca is not None:
            return hca.ino
        try:
            return os.lstat(os.path.join(self._class_dir, name)).st_ino
        except OSError:
            return 0  # gone again already: planned with no ports, dropped next tick

    # -- the plan ------------------------------------------------------------------------

    def _batch_plan(self) -> Optional[Tuple[Tuple[int, ...], List[Tuple[_Port, int, int, int]]]]:
        """All ports' descriptors in one tuple, and where each port's fields and counters are
        in it; None when some file has no held descriptor (past the budget, or failing)."""
        if self._batch is None:
            fds: List[int] = []
            slices = []
            for hca in self._order:
                for port in hca.ports:
                    if port.field_fds is None or port.counter_fds is None:
                        self._batch = ((), [])
                        return None
                    start = len(fds)
                    fds.extend(port.field_fds)
                    mid = len(fds)
                    fds.extend(port.counter_fds)
                    slices.append((port, start, mid, len(fds)))
            self._batch = (tuple(fds), slices)
        return self._batch if self._batch[0] else None

    def _sync(self, present: Dict[str, int], relist: bool) -> None:
        """Follow the class folder; on a relist tick, re-plan HCAs whose listings changed."""
        changed = False
        for name in list(self._hcas):
            hca = self._hcas[name]
            if present.get(name) != hca.ino:
                self._drop(hca)
                changed = True
            elif relist and _listings_changed(hca, os.path.join(self._class_dir, name)):
                # Held descriptors stay valid while the listings are the same, so only a
                # changed HCA pays for reopening its files.
                self._drop(hca)
                changed = True
        for name, ino in present.items():
            if name not in self._hcas:
                self._hcas[name] = self._plan(name, ino)
                changed = True
        if changed:
            self._order = sorted(self._hcas.values(), key=lambda hca: _natural(hca.name))
            self._batch = None

    def _replan(self, hca: _Hca) -> _Hca:
        self._drop(hca)
        fresh = self._plan(hca.name, hca.ino)
        self._hcas[hca.name] = fresh
        self._order = sorted(self._hcas.values(), key=lambda item: _natural(item.name))
        self._batch = None
        return fresh

    def _plan(self, name: str, ino: int) -> _Hca:
        """List one HCA's ports and counters and open their files (no ports when it is gone)."""
        hca = _Hca(name, ino, _layout(os.path.join(self._class_dir, name)))
        for number, port_folder, counter_folder, names in hca.layout or []:
            port = _Port(name, number)
            try:
                port.link_layer = fsread.read_text(os.path.join(port_folder, "link_layer"))
            except OSError:
                # Not cached: read it every tick, so its error is reported like any other.
                port.fields.append(("link_layer", os.path.join(port_folder, "link_layer")))
            for field in _PORT_FIELDS:
                port.fields.append((field, self._open(os.path.join(port_folder, field), hca)))
            for counter in names:
                source = self._open(os.path.join(counter_folder, counter), hca)
                port.counters.append((counter, source))
            port.seal()
            hca.ports.append(port)
        return hca

    def _open(self, path: str, hca: _Hca) -> _Source:
        if self._held >= self._max_held:
            return path
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            # Missing, or out of descriptors: the tick opens it itself and reports any error.
            return path
        hca.fds.append(fd)
        self._held += 1
        return fd

    def _drop(self, hca: _Hca) -> None:
        for fd in hca.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held -= len(hca.fds)
        hca.fds = []
        if self._hcas.get(hca.name) is hca:
            del self._hcas[hca.name]

    def _drop_all(self) -> None:
        for hca in list(self._hcas.values()):
            self._drop(hca)
        self._order = []
        self._batch = None


# -- reading one tick ------------------------------------------------------------------------


_pread = os.pread


def _read_path(path: str) -> bytes:
    fd = os.open(path, _OPEN_FLAGS)
    try:
        return os.read(fd, _READ_SIZE)
    finally:
        os.close(fd)


def _read_one(source: _Source) -> _Raw:
    try:
        if isinstance(source, int):
            return _pread(source, _READ_SIZE, 0)
        return _read_path(source)
    except OSError as exc:
        return exc


def _read_batch(
    fds: Optional[Tuple[int, ...]], sources: List[Tuple[str, _Source]]
) -> Tuple[List[_Raw], bool]:
    """Every file's bytes or its error, in ``sources`` order, and whether any read failed.

    With a descriptor held for each file, ``map`` runs the preads from C: a Python loop with
    a try block per file costs as much CPU as the system calls themselves. Only when a read
    fails (rare: a removed device) is the batch read again one file at a time, to tell which.
    """
    if fds is not None:
        try:
            return list(map(_pread, fds, _repeat(_READ_SIZE), _repeat(0))), False
        except OSError:
            pass
    raws = [_read_one(source) for _, source in sources]
    return raws, any(isinstance(raw, OSError) for raw in raws)


def _sample_hca(hca: _Hca) -> Tuple[List[Section], bool]:
    """The HCA's port records, and whether a read found the device gone."""
    records = []
    gone = False
    for port in hca.ports:
        record, port_gone = _sample_port(port)
        records.append(record)
        gone = gone or port_gone
    return records, gone


def _sample_port(port: _Port) -> Tuple[Section, bool]:
    """The port's record, reading its files itself; and whether a read found it gone."""
    raw_fields, fields_failed = _read_batch(port.field_fds, port.fields)
    raw_counters, counters_failed = _read_batch(port.counter_fds, port.counters)
    gone = False
    if fields_failed or counters_failed:
        gone = any(
            isinstance(raw, OSError) and raw.errno in _GONE for raw in raw_fields + raw_counters
        )
    return _port_record(port, raw_fields, raw_counters, fields_failed), gone


def _port_record(
    port: _Port, raw_fields: Sequence[_Raw], raw_counters: Sequence[_Raw], fields_failed: bool
) -> Section:
    """The port's record from what its files gave."""
    head, field_errors, _ = _port_fields(port, raw_fields, fields_failed)
    errors = dict(field_errors)
    try:
        # The common case in one C-level pass: int() takes the bytes, newline and all, and
        # raises TypeError on a failed read's OSError, which the slow path then reports.
        values: List[int] = list(map(int, raw_counters))  # type: ignore[arg-type]
        counters = dict(zip(port.counter_names, values))  # noqa: B905 - same length
    except (TypeError, ValueError):
        counters = _counters_one_by_one(port.counter_names, raw_counters, errors)
    xmit_words = counters.get("port_xmit_data")
    rcv_words = counters.get("port_rcv_data")
    record = head.copy()
    record["counters"] = counters
    record["counter_errors"] = errors
    # PortXmitData/PortRcvData count 4-byte words (IBA PortCounters).
    record["xmit_bytes"] = xmit_words * 4 if xmit_words is not None else None
    record["rcv_bytes"] = rcv_words * 4 if rcv_words is not None else None
    return record


def _batch_records(slices: List[Tuple[_Port, int, int, int]], raws: List[bytes]) -> Section:
    """The section from one batch of reads that all succeeded, with its JSON text.

    :func:`_port_record` inlined into one loop (at 1 Hz the code runs with cold caches, and
    every extra Python call per port shows in the tick's CPU time), which also writes each
    record's JSON from the port's templates: the generic encoder would spend more on these
    two hundred numbers than the rest of the sample together.
    """
    records = []
    texts: Optional[List[str]] = []
    for port, start, mid, end in slices:
        fields = raws[start:mid]
        if fields == port.last_fields:
            head, field_errors, head_text = port.parsed_fields
        else:
            head, field_errors, head_text = _port_fields(port, fields, False)
        errors = dict(field_errors) if field_errors else {}
        try:
            values = list(map(int, raws[mid:end]))  # int() takes the bytes, newline and all
        except ValueError:
            counters = _counters_one_by_one(port.counter_names, raws[mid:end], errors)
            counters_text = ENCODER.encode(counters)
        else:
            counters = dict(zip(port.counter_names, values))  # noqa: B905 - same length
            counters_text = port.template % tuple(values)
        xmit_words = counters.get("port_xmit_data")
        rcv_words = counters.get("port_rcv_data")
        # PortXmitData/PortRcvData count 4-byte words (IBA PortCounters).
        xmit = xmit_words * 4 if xmit_words is not None else None
        rcv = rcv_words * 4 if rcv_words is not None else None
        record = head.copy()
        record["counters"] = counters
        record["counter_errors"] = errors
        record["xmit_bytes"] = xmit
        record["rcv_bytes"] = rcv
        records.append(record)
        if texts is not None and head_text is not None:
            texts.append(
                head_text
                + ',"counters":'
                + counters_text
                + ',"counter_errors":'
                + (ENCODER.encode(errors) if errors else "{}")
                + (',"xmit_bytes":%d' % xmit if xmit is not None else ',"xmit_bytes":null')
                + (',"rcv_bytes":%d}' % rcv if rcv is not None else ',"rcv_bytes":null}')
            )
        else:
            texts = None
    if texts is None:
        return {"ports": records}
    return EncodedSection({"ports": records}, '{"ports":[' + ",".join(texts) + "]}")


def _counters_one_by_one(
    names: Tuple[str, ...], raws: Sequence[_Raw], errors: Dict[str, str]
) -> Dict[str, int]:
    counters: Dict[str, int] = {}
    for name, raw in zip(names, raws):  # noqa: B905 - same length
        if isinstance(raw, OSError):
            errors[name] = _read_error(raw)
            continue
        try:
            counters[name] = int(raw)
        except ValueError:
            # Older kernels print "N/A (no PMA)" when the counter query fails.
            errors[name] = _unrecognised(raw.decode("ascii", "replace"), "not a number")
    return counters


def _port_fields(port: _Port, raws: Sequence[_Raw], failed: bool) -> _Fields:
    """The record's fields up to ``sm_lid``, and the errors found on the way.

    State, rate and LIDs rarely change, so the bytes of the last tick are kept with what
    they parsed to: the same bytes (read afresh every tick) give the same fields without
    parsing them again. Errors are not kept: a failed read is parsed every tick.
    """
    key = list(raws)
    if key == port.last_fields:
        return port.parsed_fields
    errors: Dict[str, str] = {}
    values: Dict[str, str] = {}
    for (name, _), raw in zip(port.fields, raws):  # noqa: B905 - same length
        if isinstance(raw, OSError):
            errors[name] = _read_error(raw)
        else:
            values[name] = raw.decode("ascii", "replace").strip()
    state, state_name = _numbered(values, "state", errors)
    phys_state, phys_state_name = _numbered(values, "phys_state", errors)
    rate = values.get("rate")
    rate_gbps = None
    if rate is not None:
        rate_gbps = _parse_rate(rate)
        if rate_gbps is None:
            errors["rate"] = _unrecognised(rate)
    head: Section = {
        "hca": port.hca,
        "port": port.number,
        "state": state,
        "state_name": state_name,
        "phys_state": phys_state,
        "phys_state_name": phys_state_name,
        "link_layer": port.link_layer if port.link_layer is not None else values.get("link_layer"),
        "rate": rate,
        "rate_gbps": rate_gbps,
        "lid": _hex_field(values, "lid", errors),
        "sm_lid": _hex_field(values, "sm_lid", errors),
    }
    try:
        text: Optional[str] = ENCODER.encode(head)[:-1]
    except ValueError:  # a rate too large for a float: the generic encoder makes it null
        text = None
    if not failed:
        port.last_fields = key
        port.parsed_fields = (head, errors, text)
    return head, errors, text


def _numbered(
    text: Dict[str, str], name: str, errors: Dict[str, str]
) -> Tuple[Optional[int], Optional[str]]:
    """``"4: ACTIVE"`` -> ``(4, "ACTIVE")``; ``"7: Phy Test"`` -> ``(7, "Phy Test")``."""
    value = text.get(name)
    if value is None:
        return None, None
    number, colon, word = value.partition(":")
    try:
        if not colon:
            raise ValueError(value)
        return int(number), word.strip()
    except ValueError:
        errors[name] = _unrecognised(value)
        return None, None


def _hex_field(text: Dict[str, str], name: str, errors: Dict[str, str]) -> Optional[int]:
    value = text.get(name)
    if value is None:
        return None
    parsed = _parse_hex(value)
    if parsed is None:
        errors[name] = _unrecognised(value)
    return parsed


# -- parsing ---------------------------------------------------------------------------------


def _parse_rate(text: str) -> Optional[float]:
    """``"400 Gb/sec (4X NDR)"`` -> 400.0, ``"2.5 Gb/sec (1X SDR)"`` -> 2.5."""
    match = _RATE.match(text)
    return float(match.group(1)) if match else None


def _parse_hex(text: Optional[str]) -> Optional[int]:
    """sysfs prints LIDs as ``0x1a``."""
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def _port_guid(gid: Optional[str]) -> Optional[str]:
    """The low 64 bits of GID 0, written as a GUID; None when unset (all zeros) or garbled."""
    if gid is None:
        return None
    groups = gid.split(":")
    if len(groups) != 8 or not all(len(group) == 4 for group in groups):
        return None
    guid = ":".join(groups[4:])
    try:
        if int(guid.replace(":", ""), 16) == 0:
            return None
    except ValueError:
        return None
    return guid.lower()


def _optional_text(path: str) -> Optional[str]:
    """A fact's text; None when the driver does not provide it (missing or empty file)."""
    text = fsread.read_optional(path)
    return text if text else None


def _port_folders(hca_folder: str) -> List[Tuple[int, str]]:
    ports_folder = os.path.join(hca_folder, "ports")
    numbers = sorted(int(name) for name in os.listdir(ports_folder) if name.isdigit())
    return [(number, os.path.join(ports_folder, str(number))) for number in numbers]


def _layout(hca_folder: str) -> _Layout:
    try:
        folders = _port_folders(hca_folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    layout = []
    for number, port_folder in folders:
        counter_folder, names = _counter_names(port_folder)
        layout.append((number, port_folder, counter_folder, tuple(names)))
    return layout


def _listings_changed(hca: _Hca, folder: str) -> bool:
    """Whether the folders an HCA's plan came from list other names now.

    Only what can change while the device lives is listed again: ``hw_counters/`` (drivers
    add optional counters at run time), or a port that had no counters folder yet. The ports
    and the PMA ``counters/`` group are made once, when the device registers; a device made
    again is a new inode, or fails reads with ENODEV, and is re-planned for that.
    """
    if not hca.layout:
        return _layout(folder) != hca.layout
    for _, port_folder, counter_folder, names in hca.layout:
        if os.path.basename(counter_folder) == "counters":
            continue
        if _counter_names(port_folder) != (counter_folder, list(names)):
            return True
    return False


def _counter_names(port_folder: str) -> Tuple[str, List[str]]:
    """``counters/`` (the PMA counters), or ``hw_counters/`` where there is none (EFA)."""
    for folder_name in ("counters", "hw_counters"):
        folder = os.path.join(port_folder, folder_name)
        try:
            return folder, sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return port_folder, []


def _natural(name: str) -> Tuple[Tuple[int, str], ...]:
    """``mlx5_2`` before ``mlx5_10``."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in _DIGITS.split(name))


def _read_error(exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return "read failed: %s (%s)" % (reason, code) if code else "read failed: %s" % reason


def _unrecognised(text: str, what: str = "unrecognised value") -> str:
    text = text.strip()
    return "%s: %r" % (what, text[:40] + "..." if len(text) > 40 else text)
