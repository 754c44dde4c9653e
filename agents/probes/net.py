"""The ``net`` section: per-NIC counters from /proc/net/dev, link state from sysfs.

One read of /proc/net/dev gives every interface's counters; sysfs adds ``operstate``,
``carrier`` and ``speed``. The kernel fails ``read()`` of ``carrier`` and ``speed`` with
EINVAL while a link is down (and some drivers answer EOPNOTSUPP): that is "no value", not an
error. Other failures null the field and name it in the NIC's ``field_errors`` (present only
when something failed).
"""

from __future__ import annotations

import errno
import fnmatch
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tidectl.agents.probes.base import Probe, Section, describe_error
from tidectl.agents.probes.fsread import HeldFile, read_optional, read_text

#: Errors of a sysfs read that mean "the link or driver has no such value right now".
_UNSUPPORTED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})

#: Operational states the kernel only sets while the carrier is good (net/core/link_watch.c
#: ``default_operstate``): in them ``carrier`` is 1 and need not be read.
_CARRIER_OK_STATES = frozenset({"up", "dormant"})

#: ``operstate`` is read every sample. ``carrier`` and ``speed`` follow it (a carrier change
#: changes operstate; renegotiating a speed drops the link), so they are re-read when it
#: changes, and at least every this many samples for what it does not show: a bond's speed
#: as its slaves come and go, a down link's carrier going from admin-down (EINVAL) to 0.
REFRESH_EVERY = 10

#: At most this many ``operstate`` files are kept open (see HeldFile); a node with more
#: interfaces (a Kubernetes node's veths) opens the rest on each read, slower but correct.
MAX_HELD_FILES = 256

#: ethtool's SPEED_UNKNOWN is -1; old kernels print it unsigned.
_SPEED_UNKNOWN = frozenset({0xFFFFFFFF, 0xFFFF})


def parse_net_dev(text: str) -> Dict[str, Dict[str, int]]:
    """/proc/net/dev as ``{name: {rx_bytes, tx_bytes, ...}}``, in the file's order.

    After ``name:`` come 8 receive columns (bytes packets errs drop fifo frame compressed
    multicast) and 8 transmit ones (bytes packets errs drop fifo colls carrier compressed).
    """
    out: Dict[str, Dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        # Names cannot hold ':' (dev_valid_name), but big counters can touch it: "eth0:123".
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        v = rest.split()
        if len(v) < 16:
            continue
        out[name.strip()] = {
            "rx_bytes": int(v[0]),
            "tx_bytes": int(v[8]),
            "rx_packets": int(v[1]),
            "tx_packets": int(v[9]),
            "rx_errors": int(v[2]),
            "tx_errors": int(v[10]),
            "rx_drops": int(v[3]),
            "tx_drops": int(v[11]),
        }
    return out


def parse_speed(text: str) -> Optional[int]:
    """Mb/s from sysfs ``speed``; None for unknown (-1, its unsigned forms, 0)."""
    value = int(text)
    if value <= 0 or value in _SPEED_UNKNOWN:
        return None
    return value


class NetProbe(Probe):
    """Per-NIC throughput, errors, drops and link state.

    ``ignore``: fnmatch patterns of interface names left out (the loopback by default).
    """

    name = "net"

    def __init__(
        self,
        proc_root: str = "/proc",
        sysfs_root: str = "/sys",
        ignore: Sequence[str] = ("lo",),
    ) -> None:
        self._dev_file = HeldFile(os.path.join(proc_root, "net", "dev"))
        self._class_net = os.path.join(sysfs_root, "class", "net")
        self._ignore = tuple(ignore)
        self._links: Dict[str, _Link] = {}  # per interface name: held file, cached state
        self._names: Tuple[str, ...] = ()  # /proc/net/dev's interfaces last tick, in order
        self._ignored: Dict[str, bool] = {}

    def _skip(self, name: str) -> bool:
        skip = self._ignored.get(name)
        if skip is None:
            skip = any(fnmatch.fnmatchcase(name, pat) for pat in self._ignore)
            if len(self._ignored) > 4096:  # interfaces come and go (veths): stay bounded
                self._ignored.clear()
            self._ignored[name] = skip
        return skip

    def facts(self) -> Section:
        nics: List[Section] = []
        for name in sorted(os.listdir(self._class_net)):
            if self._skip(name):
                continue
            base = os.path.join(self._class_net, name)
            errors: Dict[str, str] = {}
            speed = self._read_path(base + "/speed", parse_speed, "speed_mbps", errors)
            mtu = self._read_path(base + "/mtu", int, "mtu", errors)
            try:
                driver: Optional[str] = os.path.basename(os.readlink(base + "/device/driver"))
            except OSError:
                driver = None  # virtual interfaces (bonds, bridges, veths) have no driver link
            nic: Section = {
                "name": name,
                "mac": read_optional(base + "/address"),
                "mtu": mtu,
                "speed_mbps": speed,
                "driver": driver,
            }
            if errors:
                nic["field_errors"] = errors
            nics.append(nic)
        return {"nics": nics}

    def sample(self) -> Section:
        counters = parse_net_dev(self._dev_file.read().decode("utf-8", "replace"))
        names = tuple(counters)
        if names != self._names:
            self._follow(names)
        nics: Dict[str, Section] = {}
        for name, nic in counters.items():
            if self._skip(name):
                continue
            link = self._links.get(name)
            if link is None:
                link = self._links[name] = _Link(
                    os.path.join(self._class_net, name), hold=len(self._links) < MAX_HELD_FILES
                )
            errors: Dict[str, str] = {}
            out: Section = nic  # a fresh dict per sample: the counters, then the link state
            link.age += 1
            if link.age >= REFRESH_EVERY:
                # Reopen now and then: a name taken over by another device within one tick
                # (a rename, netns moves) is not left reading the old device's file.
                link.operstate_file.close()
            operstate: Optional[str] = None
            try:
                operstate = link.operstate_file.read().decode("utf-8", "replace").strip()
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    errors["operstate"] = describe_error(exc)
            if operstate != link.operstate or link.age >= REFRESH_EVERY or link.failed:
                link.age = 0
                link.operstate = operstate
                if operstate in _CARRIER_OK_STATES:
                    link.carrier = True
                else:
                    link.carrier = self._read_path(link.carrier_path, _carrier, "carrier", errors)
                link.speed = self._read_path(link.speed_path, parse_speed, "speed_mbps", errors)
                link.failed = len(errors) > ("operstate" in errors)
            out["operstate"] = operstate
            out["carrier"] = link.carrier
            out["speed_mbps"] = link.speed
            if errors:
                out["field_errors"] = errors
            nics[name] = out
        return {"nics": nics}

    def _follow(self, names: Tuple[str, ...]) -> None:
        """The interfaces changed: forget those gone, and reopen the held files of the rest.

        A held file follows its device, not its name: after a rename (udev's eth0 -> ens1f0)
        another device may carry the old name. The kernel lists interfaces in index order,
        so any rename or replacement changes this tuple, even when the set of names is alike.
        """
        present = set(names)
        for name, link in list(self._links.items()):
            link.operstate_file.close()
            if name not in present:
                del self._links[name]
        self._names = names

    def close(self) -> None:
        self._dev_file.close()
        for link in self._links.values():
            link.operstate_file.close()

    @staticmethod
    def _read_path(path: str, parse: Any, key: str, errors: Dict[str, str]) -> Any:
        try:
            return parse(read_text(path))
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                errors[key] = describe_error(exc)
        except ValueError as exc:
            errors[key] = describe_error(exc)
        return None


class _Link:
    """What the probe keeps per interface between samples."""

    __slots__ = (
        "age",
        "carrier",
        "carrier_path",
        "failed",
        "operstate",
        "operstate_file",
        "speed",
        "speed_path",
    )

    def __init__(self, base: str, hold: bool = True) -> None:
        self.operstate_file = HeldFile(base + "/operstate", 64, keep_open=hold)
        self.carrier_path = base + "/carrier"
        self.speed_path = base + "/speed"
        self.operstate: Optional[str] = None
        self.carrier: Optional[bool] = None
        self.speed: Optional[int] = None
        self.failed = False  # the last carrier or speed read failed: retry every sample
        self.age = REFRESH_EVERY


def _carrier(text: str) -> bool:
    return int(text) != 0
