"""Table lines as Rich ``Text``: the columns, their widths, and how each row reads.

Only the lines on screen are rendered, so this runs for a few dozen rows a repaint; the
front end caches the result per row until the row changes. Rich is the console's own
dependency (not Textual's), so the headless core can own the look of a row and tests can read
it as plain text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from tidectl.console.model import Severity
from tidectl.console.view import cells
from tidectl.console.view.badges import (
    HEALTH_STYLE,
    LINK_STYLE,
    health_badge,
    link_word,
)
from tidectl.console.view.rows import NodeRow, row_age
from tidectl.console.view.table import Line

SPARK_WIDTH = 8


@dataclass(frozen=True, slots=True)
class Column:
    key: str  # also the sort key (view.table.SORTS)
    title: str
    width: int
    right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("health", "HEALTH", 9),
    Column("link", "LINK", 12),
    Column("site", "SITE/POOL", 12),
    Column("gpus", "GPU", 4, right=True),
    Column("util", "UTIL", SPARK_WIDTH + 5),
    Column("mem", "MEM", 4, right=True),
    Column("temp", "TEMP", 5, right=True),
    Column("ib", "IB UP ERR/m", 11),
    Column("fs", "FULLEST FS", 16),
    Column("net", "NET", 8, right=True),
    Column("age", "AGE", 5, right=True),
)
NAME_TITLE = "NODE"
GAP = " "


def name_width(names: Sequence[str], floor: int = 8, ceiling: int = 40) -> int:
    return min(max([floor, *(len(n) for n in names)]), ceiling)


def heading(name_w: int, sort: str, reverse: bool) -> Text:
    text = Text(no_wrap=True, overflow="crop")
    marker = "▲" if reverse else "▼"
    title = NAME_TITLE + (marker if sort == "name" else "")
    text.append(cells.fit(title, name_w), style="bold")
    for column in COLUMNS:
        title = column.title + (marker if column.key == sort else "")
        cell = title.rjust(column.width) if column.right else cells.fit(title, column.width)
        text.append(GAP)
        text.append(cell[: column.width + 1], style="bold")
    return text


def _cells(row: NodeRow, now: float, spark: Sequence[float]) -> list[tuple[str, str]]:
    """(text, style) per column, in COLUMNS order."""
    gpus = cells.MISSING if row.gpus is None else str(row.gpus)
    gpu_style = ""
    if row.gpus_expected is not None and row.gpus is not None and row.gpus < row.gpus_expected:
        gpus, gpu_style = f"{row.gpus}/{row.gpus_expected}", "bold red"
    util = cells.sparkline(spark, SPARK_WIDTH, top=100.0) if spark else " " * SPARK_WIDTH
    util = f"{util} {cells.percent(row.util_pct):>4}"
    temp = cells.MISSING if row.hottest_c is None else f"{row.hottest_c:.0f}°C"
    ib = cells.MISSING
    ib_style = ""
    if row.ib_total is not None:
        rate = row.ib_errors_per_min
        err = cells.human(rate) if rate else "0"
        ib = f"{row.ib_up}/{row.ib_total} {err:>5}"
        if row.ib_up is not None and row.ib_up < row.ib_total:
            ib_style = "red"
        elif rate:
            ib_style = "yellow"
    fs = cells.MISSING
    if row.fs_pct is not None:
        fs = f"{row.fs_pct:3.0f}% {row.fs_mount}"
    return [
        (health_badge(row.health), HEALTH_STYLE[row.health]),
        (link_word(row.link), LINK_STYLE[row.link]),
        (row.site if row.pool == "-" else f"{row.site}/{row.pool}", ""),
        (gpus, gpu_style),
        (util, ""),
        (cells.percent(row.mem_pct), ""),
        (temp, "red" if row.hottest_c is not None and row.hottest_c >= 85 else ""),
        (ib, ib_style),
        (fs, "red" if row.fs_pct is not None and row.fs_pct >= 90 else ""),
        (cells.human(row.net_bytes_s, "B/s"), ""),
        (cells.age(row_age(row, now)), ""),
    ]


def _assemble(label: str, name_w: int, values: list[tuple[str, str]], label_style: str) -> Text:
    text = Text(no_wrap=True, overflow="crop")
    text.append(cells.fit(label, name_w), style=label_style)
    for column, (value, style) in zip(COLUMNS, values, strict=True):
        cell = value.rjust(column.width) if column.right else cells.fit(value, column.width)
        text.append(GAP)
        text.append(cell, style=style)
    return text


def node_text(row: NodeRow, name_w: int, now: float, spark: Sequence[float]) -> Text:
    text = _assemble(row.name, name_w, _cells(row, now, spark), "bold")
    if row.codes or (row.worst and row.health is not Severity.OK):
        text.append(GAP * 2)
        text.append(" ".join(row.codes) or (row.worst or ""), style=HEALTH_STYLE[row.health])
    return text


def fold_text(line: Line, name_w: int, now: float) -> Text:
    """A folded node set: its count, shared state, and the group's figures (mean or worst)."""
    rows = line.rows
    first = rows[0]
    utils = [r.util_pct for r in rows if r.util_pct is not None]
    mems = [r.mem_pct for r in rows if r.mem_pct is not None]
    temps = [r.hottest_c for r in rows if r.hottest_c is not None]
    fulls = [r for r in rows if r.fs_pct is not None]
    fullest = max(fulls, key=lambda r: r.fs_pct or 0.0) if fulls else None
    ib_rows = [r for r in rows if r.ib_total is not None]
    nets = [r.net_bytes_s for r in rows if r.net_bytes_s is not None]
    ages = [a for r in rows if (a := row_age(r, now)) is not None]
    summary = NodeRow(
        name=line.label,
        site=first.site,
        pool=first.pool,
        link=first.link,
        link_error=None,
        health=first.health,
        codes=first.codes,
        worst=None,
        gpus=sum(r.gpus or 0 for r in rows) if any(r.gpus is not None for r in rows) else None,
        gpus_expected=None,
        util_pct=sum(utils) / len(utils) if utils else None,
        mem_pct=sum(mems) / len(mems) if mems else None,
        hottest_c=max(temps) if temps else None,
        ib_up=sum(r.ib_up or 0 for r in ib_rows) if ib_rows else None,
        ib_total=sum(r.ib_total or 0 for r in ib_rows) if ib_rows else None,
        ib_errors_per_min=max((r.ib_errors_per_min or 0.0 for r in ib_rows), default=None),
        fs_pct=fullest.fs_pct if fullest else None,
        fs_mount=fullest.fs_mount if fullest else None,
        net_bytes_s=sum(nets) if nets else None,
        sample_at=now - max(ages) if ages else -math.inf,
    )
    label = f"{line.label} ({len(rows)})"
    text = _assemble(label, name_w, _cells(summary, now, ()), "bold")
    if first.codes:
        text.append(GAP * 2)
        text.append(" ".join(first.codes), style=HEALTH_STYLE[first.health])
    return text


def group_text(line: Line) -> Text:
    return Text(f"── {line.label} ", style="bold reverse", no_wrap=True, overflow="crop")
