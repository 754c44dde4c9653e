"""One row of the fleet table per node: the figures an operator scans, read from the fleet.

``node_row`` reduces a ``NodeState`` to a flat, frozen ``NodeRow`` of numbers and words (no
formatting, no clock): the table sorts, filters and folds these, and formats only the rows on
screen. Building a row is the per-node cost of a tick at a thousand nodes, so it reads each
section once and allocates little.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tidectl.console.fleet import NodeState
from tidectl.console.lifecycle.states import State
from tidectl.console.model import LinkState, Severity

#: Label that names a node's pool until cloud pools arrive (``labels = { pool = "..." }``).
POOL_LABEL = "pool"
NO_POOL = "-"


@dataclass(frozen=True, slots=True)
class NodeRow:
    """What the fleet table shows of one node. ``None``: not known (no sample, failed probe)."""

    name: str
    site: str
    pool: str
    link: LinkState
    link_error: str | None
    health: Severity
    #: Finding codes, worst first; and the worst finding's sentence.
    codes: tuple[str, ...]
    worst: str | None
    gpus: int | None
    gpus_expected: int | None
    util_pct: float | None  # mean over the node's GPUs
    mem_pct: float | None  # GPU memory used over total, all GPUs
    hottest_c: float | None
    ib_up: int | None
    ib_total: int | None
    ib_errors_per_min: float | None  # the worst port's smoothed error rate
    fs_pct: float | None  # the fullest filesystem's Use%
    fs_mount: str | None
    net_bytes_s: float | None  # NICs, received plus sent
    sample_at: float  # the fleet's clock at the last sample; -inf before the first
    #: The node's lifecycle state in the control plane's store; None: the store does not know
    #: it (an on-prem node never drained), or no control plane runs.
    life: State | None = None

    @property
    def fold_key(self) -> tuple[object, ...]:
        """Nodes with equal keys fold into one node set: same place, link, health, findings
        and lifecycle state."""
        return (self.site, self.pool, self.link, self.health, self.codes, self.life)


def node_row(node: NodeState, life: State | None = None) -> NodeRow:
    figures = node.figures
    errors = [rate for port in node.rates.ib_errors.values() for rate in port.values()]
    rx, tx = node.rates.nic_total("rx_bytes"), node.rates.nic_total("tx_bytes")
    findings = sorted(node.findings, key=lambda f: -f.severity)
    return NodeRow(
        name=node.name,
        site=node.spec.site,
        pool=node.spec.labels.get(POOL_LABEL, NO_POOL),
        link=node.link,
        link_error=node.link_error,
        health=node.health,
        codes=tuple(dict.fromkeys(f.code for f in findings)),
        worst=findings[0].message if findings else node.link_error,
        gpus=figures.gpus,
        gpus_expected=node.expected_gpus,
        util_pct=figures.util_pct,
        mem_pct=figures.mem_pct,
        hottest_c=figures.hottest_c,
        ib_up=figures.ib_up,
        ib_total=figures.ib_total,
        ib_errors_per_min=max(errors) * 60.0 if errors else (0.0 if figures.ib_total else None),
        fs_pct=figures.fs_pct,
        fs_mount=figures.fs_mount,
        net_bytes_s=(rx or 0.0) + (tx or 0.0) if rx is not None or tx is not None else None,
        sample_at=node.sample_at,
        life=life,
    )


def row_age(row: NodeRow, now: float) -> float | None:
    """Seconds since the row's node last sampled; None before its first."""
    return now - row.sample_at if math.isfinite(row.sample_at) else None
