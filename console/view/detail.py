"""One node in full: per-GPU history, IB ports, filesystems, NICs, findings and events.

Rendered as Rich renderables for the console's node view (Enter on a row); read-only, built
from the fleet's ``NodeState`` at the time of the call.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tidectl.console.fleet import NodeState
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.model import Severity
from tidectl.console.scheduler.base import SchedulerSnapshot
from tidectl.console.view import cells
from tidectl.console.view.badges import HEALTH_STYLE, LIFE_STYLE, LINK_STYLE, health_badge
from tidectl.console.view.events import FleetEvent, events_table
from tidectl.console.view.scheduler import node_scheduler

GPU_SPARK = 30


def _table(title: str, *columns: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=None,
        header_style="bold",
        expand=False,
        pad_edge=False,
    )
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def title(node: NodeState, now: float) -> Text:
    text = Text()
    text.append(node.name, style="bold")
    text.append(f"  {node.spec.user}@{node.spec.address}:{node.spec.port}  site {node.spec.site}")
    text.append("  ")
    text.append(health_badge(node.health), style=HEALTH_STYLE[node.health])
    text.append("  link ")
    text.append(node.link.value, style=LINK_STYLE[node.link])
    if node.link_error:
        text.append(f" ({node.link_error})", style=LINK_STYLE[node.link])
    text.append("\n")
    if node.hello is not None:
        text.append(f"agent {node.hello.agent}, every {node.hello.interval_s or 1:g}s")
    age = now - node.sample_at if node.sample is not None else None
    text.append(f"  last sample {cells.age(age)} ago" if age is not None else "  no sample yet")
    if node.agent_error:
        text.append(f"\nagent error: {node.agent_error}", style="red")
    return text


def findings(node: NodeState) -> RenderableType:
    if not node.findings:
        return Text("No findings.", style="green" if node.health is Severity.OK else "")
    table = _table("Findings", "HEALTH", "CODE", "ON", "WHAT")
    table.columns[-1].no_wrap = False
    for finding in sorted(node.findings, key=lambda f: -f.severity):
        table.add_row(
            Text(health_badge(finding.severity), style=HEALTH_STYLE[finding.severity]),
            finding.code,
            finding.subject or "",
            finding.message,
        )
    return table


def gpus(node: NodeState) -> RenderableType | None:
    section = node.sample.probes.gpu if node.sample else None
    if section is None:
        return None
    if section.error or not section.gpus:
        return Text(f"GPUs: {section.error or section.no_driver or 'none'}", style="yellow")
    table = _table(
        "GPUs", "#", "MODEL", "UTIL (history)", "", "MEM", "TEMP", "POWER", "ECC S/D", "XID"
    )
    for gpu in section.gpus:
        history = node.history.gpu_series(gpu.index, "util_pct")
        mem = cells.MISSING
        if gpu.mem_total_bytes:
            used = cells.human(gpu.mem_used_bytes, base=1024)
            mem = f"{used}/{cells.human(gpu.mem_total_bytes, base=1024)}"
        power = (
            f"{gpu.power_w:.0f}/{gpu.power_limit_w:.0f}W"
            if gpu.power_w is not None and gpu.power_limit_w
            else cells.MISSING
        )
        xids = ",".join(str(x.code) for x in gpu.xid or []) or "-"
        table.add_row(
            str(gpu.index),
            gpu.name or cells.MISSING,
            cells.sparkline(history, GPU_SPARK, top=100.0),
            cells.percent(gpu.util_pct),
            mem,
            cells.MISSING if gpu.temp_c is None else f"{gpu.temp_c:.0f}°C",
            power,
            f"{gpu.ecc_sbe_volatile if gpu.ecc_sbe_volatile is not None else '-'}/"
            f"{gpu.ecc_dbe_volatile if gpu.ecc_dbe_volatile is not None else '-'}",
            Text(xids, style="bold red" if gpu.xid else ""),
        )
    return table


def ib_ports(node: NodeState) -> RenderableType | None:
    section = node.sample.probes.ib if node.sample else None
    if section is None:
        return None
    if section.error or not section.ports:
        return Text(f"InfiniBand: {section.error or 'no ports'}", style="yellow")
    table = _table("InfiniBand", "PORT", "STATE", "PHYS", "RATE", "RX/s", "TX/s", "ERR/m", "RISING")
    rates = node.rates.ib
    for port in section.ports:
        key = port.key
        step = rates.get(key, {})
        errors = node.rates.ib_errors.get(key, {})
        worst = max(errors.values(), default=0.0) * 60.0
        rising = ", ".join(sorted(node.rates.ib_counted.get(key, {})))
        state = port.state_name or str(port.state)
        table.add_row(
            key,
            Text(state, style="green" if port.state == 4 else "bold red"),
            port.phys_state_name or cells.MISSING,
            f"{port.rate_gbps:g} Gb/s" if port.rate_gbps else cells.MISSING,
            cells.human(step.get("rcv_bytes"), "B"),
            cells.human(step.get("xmit_bytes"), "B"),
            Text(cells.human(worst) if worst else "0", style="yellow" if worst else ""),
            rising,
        )
    return table


def filesystems(node: NodeState) -> RenderableType | None:
    section = node.sample.probes.storage if node.sample else None
    if section is None:
        return None
    if section.error:
        return Text(f"Filesystems: {section.error}", style="yellow")
    table = _table("Filesystems", "MOUNT", "TYPE", "USED", "", "SIZE", "STATE")
    for mount in section.mounts:
        used = mount.used_fraction
        state = "stale" if mount.stale else (mount.error or "ok")
        table.add_row(
            mount.mountpoint,
            mount.fstype or cells.MISSING,
            cells.bar(used, 10),
            cells.percent(used * 100.0 if used is not None else None),
            cells.human(mount.size_bytes, "B", base=1024),
            Text(state, style="green" if state == "ok" else "bold red"),
        )
    return table


def nics(node: NodeState) -> RenderableType | None:
    section = node.sample.probes.net if node.sample else None
    if section is None:
        return None
    if section.error:
        return Text(f"Network: {section.error}", style="yellow")
    table = _table("Network", "NIC", "STATE", "SPEED", "RX/s", "TX/s", "ERR+DROP/m")
    for name, nic in sorted(section.nics.items()):
        step = node.rates.nic.get(name, {})
        errors = sum(node.rates.nic_errors.get(name, {}).values()) * 60.0
        table.add_row(
            name,
            nic.operstate or cells.MISSING,
            f"{nic.speed_mbps:g} Mb/s" if nic.speed_mbps else cells.MISSING,
            cells.human(step.get("rx_bytes"), "B"),
            cells.human(step.get("tx_bytes"), "B"),
            Text(cells.human(errors) if errors else "0", style="yellow" if errors else ""),
        )
    return table


def lifecycle(record: NodeRecord, wall_now: float) -> Text:
    """Where the node stands in its lifecycle, as the store has it (``wall_now``: the store's
    clock, wall seconds)."""
    line = Text("Lifecycle ", style="bold")
    line.append(f"{record.state}", style=LIFE_STYLE.get(record.state, ""))
    line.append(f" for {cells.age(wall_now - record.state_since)}")
    facts = [str(record.kind)]
    if record.pool:
        facts.append(f"pool {record.pool}")
    if record.instance_id:
        facts.append(f"instance {record.instance_id}")
    if record.price_per_hour is not None:
        facts.append(f"${record.price_per_hour:,.2f}/h")
    line.append(f"  ({', '.join(facts)})", style="dim")
    return line


def node_detail(
    node: NodeState,
    now: float,
    life: NodeRecord | None = None,
    wall_now: float = 0.0,
    scheduler: SchedulerSnapshot | None = None,
) -> Group:
    """The whole page; ``life`` (the store's record of the node, when it has one) adds its
    lifecycle line under the title, ``scheduler`` (the last read of one) its state and jobs
    there (Slurm's and the sim scheduler's clock is the wall's: ``wall_now``)."""
    parts: list[RenderableType] = [title(node, now)]
    if life is not None:
        parts.append(lifecycle(life, wall_now))
    if scheduler is not None:
        name = node.name
        parts.append(node_scheduler(scheduler.node(name), scheduler.jobs_on(name), wall_now))
    parts += [Text(), findings(node)]
    for section in (gpus(node), ib_ports(node), filesystems(node), nics(node)):
        if section is not None:
            parts += [Text(), section]
    parts += [Text(), Text("Recent events", style="bold")]
    events = [FleetEvent(node.name, event) for event in node.events]
    parts.append(events_table(events, now, show_node=False) if events else Text("None yet."))
    return Group(*parts)
