"""Plain-text rendering of agent records for ``once`` and ``facts``.

Standard library only (the agent runs on bare nodes, so no Rich here). Every field is read
with ``.get``: a section may be an error, or come from a newer agent with fields we do not
know, and rendering must never be what fails.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

_GIB = float(1 << 30)


def _num(value: Any, fmt: str = "%.0f", unit: str = "") -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return (fmt % value) + unit


def _gib(value: Any) -> str:
    return _num(value / _GIB if isinstance(value, (int, float)) else None, "%.1f")


def _error_line(name: str, section: Dict[str, Any]) -> Optional[str]:
    if "error" in section:
        return "%-8s error: %s\n" % (name, section["error"])
    return None


def _host(section: Dict[str, Any]) -> List[str]:
    return [
        "host     cpu %s  load %s/%s/%s  mem avail %s of %s GiB  up %s  procs %s\n"
        % (
            _num(section.get("cpu_pct"), "%.1f", "%"),
            _num(section.get("load1"), "%.2f"),
            _num(section.get("load5"), "%.2f"),
            _num(section.get("load15"), "%.2f"),
            _gib(section.get("mem_available_bytes")),
            _gib(section.get("mem_total_bytes")),
            _num(section.get("uptime_s"), "%.0f", "s"),
            _num(section.get("procs")),
        )
    ]


def _gpu(section: Dict[str, Any]) -> List[str]:
    if section.get("no_driver"):
        return ["gpu      none: %s\n" % section["no_driver"]]
    gpus = section.get("gpus") or []
    lines = [
        "gpu      %s, driver %s, %d GPUs\n"
        % (section.get("source"), section.get("driver_version") or "-", len(gpus))
    ]
    for gpu in gpus:
        nvlink = gpu.get("nvlink") or {}
        xids = gpu.get("xid") or []
        lines.append(
            "  %-3s %-22s util %5s  mem %s/%s GiB  %5s  %s/%s  %s  ecc sbe %s dbe %s"
            "  nvlink %s/%s%s%s\n"
            % (
                gpu.get("index"),
                (gpu.get("name") or "?")[:22],
                _num(gpu.get("util_pct"), "%.0f", "%"),
                _gib(gpu.get("mem_used_bytes")),
                _gib(gpu.get("mem_total_bytes")),
                _num(gpu.get("temp_c"), "%.0f", "C"),
                _num(gpu.get("power_w"), "%.0f"),
                _num(gpu.get("power_limit_w"), "%.0f", "W"),
                _num(gpu.get("sm_clock_mhz"), "%.0f", "MHz"),
                _num(gpu.get("ecc_sbe_volatile")),
                _num(gpu.get("ecc_dbe_volatile")),
                _num(nvlink.get("up")),
                _num(nvlink.get("total")),
                "  XID " + ",".join(str(x.get("code")) for x in xids) if xids else "",
                "  (%d field errors)" % len(gpu["field_errors"]) if gpu.get("field_errors") else "",
            )
        )
    return lines


_IB_COUNTERS = ("symbol_error", "link_downed", "link_error_recovery", "port_rcv_errors")


def _ib(section: Dict[str, Any]) -> List[str]:
    ports = section.get("ports") or []
    lines = ["ib       %d ports\n" % len(ports)]
    for port in ports:
        counters = port.get("counters") or {}
        errors = "  ".join(
            "%s %s" % (name, counters[name]) for name in _IB_COUNTERS if name in counters
        )
        lines.append(
            "  %-10s %-8s %-12s %-10s %-10s lid %-5s %s%s\n"
            % (
                "%s/%s" % (port.get("hca"), port.get("port")),
                port.get("state_name") or "-",
                port.get("phys_state_name") or "-",
                _num(port.get("rate_gbps"), "%g", "Gb/s"),
                port.get("link_layer") or "-",
                _num(port.get("lid")),
                errors,
                "  (%d unreadable counters)" % len(port["counter_errors"])
                if port.get("counter_errors")
                else "",
            )
        )
    return lines


def _storage(section: Dict[str, Any]) -> List[str]:
    mounts = section.get("mounts") or []
    lines = ["storage  %d mounts\n" % len(mounts)]
    for mount in mounts:
        size, used = mount.get("size_bytes"), mount.get("used_bytes")
        pct = 100.0 * used / size if isinstance(size, int) and size and used is not None else None
        status = "STALE: %s" % (mount.get("error") or "") if mount.get("stale") else ""
        lines.append(
            "  %-24s %-8s %-9s %6s of %s GiB  %s\n"
            % (
                mount.get("mountpoint"),
                mount.get("fstype"),
                mount.get("kind"),
                _num(pct, "%.1f", "%"),
                _gib(size),
                status or (mount.get("error") or ""),
            )
        )
    return lines


def _net(section: Dict[str, Any]) -> List[str]:
    nics = section.get("nics") or {}
    lines = ["net      %d NICs\n" % len(nics)]
    for name in sorted(nics):
        nic = nics[name] or {}
        lines.append(
            "  %-12s %-6s %9s  rx %s GiB  tx %s GiB  errors %s/%s  drops %s/%s\n"
            % (
                name,
                nic.get("operstate") or "-",
                _num(nic.get("speed_mbps"), "%.0f", "Mb/s"),
                _gib(nic.get("rx_bytes")),
                _gib(nic.get("tx_bytes")),
                _num(nic.get("rx_errors")),
                _num(nic.get("tx_errors")),
                _num(nic.get("rx_drops")),
                _num(nic.get("tx_drops")),
            )
        )
    return lines


_RENDERERS = {"host": _host, "gpu": _gpu, "ib": _ib, "storage": _storage, "net": _net}


def render_sample(hello: Dict[str, Any], record: Dict[str, Any]) -> str:
    host_facts = (hello.get("facts") or {}).get("host") or {}
    out = [
        "%s  agent %s  schema %s  sample %s%s\n"
        % (
            host_facts.get("hostname", "?"),
            hello.get("agent"),
            record.get("schema"),
            record.get("seq"),
            "  (simulated, seed %s)" % hello["sim"] if hello.get("sim") is not None else "",
        )
    ]
    for name, section in (record.get("probes") or {}).items():
        if not isinstance(section, dict):
            continue
        error = _error_line(name, section)
        if error:
            out.append(error)
        elif name in _RENDERERS:
            out.extend(_RENDERERS[name](section))
    agent = record.get("agent") or {}
    out.append(
        "agent    %s ms CPU, %s ms wall, peak RSS %s MiB\n"
        % (
            _num(agent.get("cpu_ms"), "%.2f"),
            _num(agent.get("duration_ms"), "%.2f"),
            _num((agent.get("max_rss_bytes") or 0) / float(1 << 20), "%.1f"),
        )
    )
    return "".join(out)


def render_facts(hello: Dict[str, Any]) -> str:
    facts = hello.get("facts") or {}
    out = ["agent %s, schema %s\n" % (hello.get("agent"), hello.get("schema"))]
    for name, section in facts.items():
        if isinstance(section, dict) and "error" in section:
            out.append("%-8s error: %s\n" % (name, section["error"]))
            continue
        out.append("%s:\n" % name)
        out.extend(_facts_lines(section))
    return "".join(out)


def _facts_lines(section: Any, indent: str = "  ") -> List[str]:
    lines: List[str] = []
    if isinstance(section, dict):
        for key, value in section.items():
            if isinstance(value, (dict, list)) and value:
                lines.append("%s%s:\n" % (indent, key))
                lines.extend(_facts_lines(value, indent + "  "))
            else:
                lines.append("%s%s: %s\n" % (indent, key, value))
    elif isinstance(section, list):
        for item in section:
            if isinstance(item, dict):
                first = True
                for key, value in item.items():
                    prefix = indent + ("- " if first else "  ")
                    first = False
                    if isinstance(value, (dict, list)) and value:
                        lines.append("%s%s:\n" % (prefix, key))
                        lines.extend(_facts_lines(value, indent + "    "))
                    else:
                        lines.append("%s%s: %s\n" % (prefix, key, value))
            else:
                lines.append("%s- %s\n" % (indent, item))
    return lines
