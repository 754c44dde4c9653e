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
from tidectl.agents.probes.fsread import read_optional, read_text

#: Errors of a sysfs read that mean "the link or driver has no such value right now".
_UNSUPPORTED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})

#: ethtool's SPEED_UNKNOWN is -1; old kernels print it unsigned.
_SPEED_UNKNOWN = frozenset({0xFFFFFFFF, 0xFFFF})

# Columns of /proc/net/dev after the ``name:``: 8 receive, then 8 transmit.
_COLUMNS = (
    ("rx_bytes", 0),
    ("tx_bytes", 8),
    ("rx_packets", 1),
    ("tx_packets", 9),
    ("rx_errors", 2),
    ("tx_errors", 10),
    ("rx_drops", 3),
    ("tx_drops", 11),
)


def parse_net_dev(text: str) -> Dict[str, Dict[str, int]]:
    """/proc/net/dev as ``{name: {rx_bytes, tx_bytes, ...}}``, in the file's order."""
    out: Dict[str, Dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        # Names cannot hold ':' (dev_valid_name), but big counters can touch it: "eth0:123".
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        values = rest.split()
        if len(values) < 16:
            continue
        out[name.strip()] = {key: int(values[i]) for key, i in _COLUMNS}
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
        self._dev_path = os.path.join(proc_root, "net", "dev")
        self._class_net = os.path.join(sysfs_root, "class", "net")
        self._ignore = tuple(ignore)
        # name -> (operstate, carrier, speed) paths; built once per interface name.
        self._paths: Dict[str, Tuple[str, str, str]] = {}
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
            speed = self._read(base + "/speed", parse_speed, "speed_mbps", errors)
            mtu = self._read(base + "/mtu", int, "mtu", errors)
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
        counters = parse_net_dev(read_text(self._dev_path))
        nics: Dict[str, Section] = {}
        for name, nic in counters.items():
            if self._skip(name):
                continue
            paths = self._paths.get(name)
            if paths is None:
                base = os.path.join(self._class_net, name)
                paths = (base + "/operstate", base + "/carrier", base + "/speed")
                if len(self._paths) > 4096:
                    self._paths.clear()
                self._paths[name] = paths
            errors: Dict[str, str] = {}
            out: Section = dict(nic)
            out["operstate"] = self._read(paths[0], str, "operstate", errors)
            out["carrier"] = self._read(paths[1], _carrier, "carrier", errors)
            out["speed_mbps"] = self._read(paths[2], parse_speed, "speed_mbps", errors)
            if errors:
                out["field_errors"] = errors
            nics[name] = out
        return {"nics": nics}

    @staticmethod
    def _read(path: str, parse: Any, key: str, errors: Dict[str, str]) -> Any:
        try:
            return parse(read_text(path))
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                errors[key] = describe_error(exc)
        except ValueError as exc:
            errors[key] = describe_error(exc)
        return None


def _carrier(text: str) -> bool:
    return int(text) != 0
