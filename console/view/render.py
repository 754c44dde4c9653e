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
    LIFE_STYLE,
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
    Column("findings", "FINDINGS", 16),
    Column("link", "LINK", 11),
    Column("life", "LIFE", 13),  # "bootstrapping", the longest state
    Column("site", "SITE/POOL", 10),
    Column("gpus", "GPU", 4, right=True),
    Column("util", "UTIL", SPARK_WIDTH + 5),
    Column("mem", "MEM", 4, right=True),
    Column("temp", "TEMP", 5, right=True),
    Column("ib", "IB UP ERR/m", 11),
    Column("fs", "FULLEST FS", 14),
    Column("net", "NET", 8, right=True),
    Column("age", "AGE", 5, right=True),
)
NAME_TITLE = "NODE"
GAP = " "


def name_width(names: Sequence[str], floor: int = 8, ceiling: int = 32) -> int:
    return min(max([floor, *(len(n) for n in names)]), ceiling)


def _cell(value: str, column: Column) -> str:
    """``value`` in exactly ``column.width`` cells. A longer value is cut, with an ellipsis:
    one wide cell (``15/16`` GPUs, a fold's sum) must not push the columns after it."""
    if column.right and len(value) <= column.width:
        return value.rjust(column.width)
    return cells.fit(value, column.width)


def _marked(title: str, width: int, marker: str) -> str:
    """A title with the sort marker; when both do not fit, the title gives way, not the
    marker (``IB UP ERR/m`` fills its column)."""
    if len(title) + len(marker) > width:
        title = cells.fit(title, width - len(marker))
    return title + marker


def heading(name_w: int, sort: str, reverse: bool) -> Text:
    text = Text(no_wrap=True, overflow="crop")
    marker = "▲" if reverse else "▼"
    title = _marked(NAME_TITLE, name_w, marker) if sort == "name" else NAME_TITLE
    text.append(cells.fit(title, name_w), style="bold")
    for column in COLUMNS:
        title = column.title
        if column.key == sort:
            title = _marked(title, column.width, marker)
        text.append(GAP)
        text.append(_cell(title, column), style="bold")
    return text


def findings_cell(row: NodeRow) -> str:
    """The worst finding's code and how many more; the link's error when there is none."""
    if row.codes:
        more = len(row.codes) - 1
        return row.codes[0] + (f" +{more}" if more else "")
    if row.health is not Severity.OK and row.worst:
        return row.worst
    return ""


def life_cell(row: NodeRow) -> tuple[str, str]:
    """The lifecycle state's word and style; blank for a node the store does not know."""
    if row.life is None:
        return "", ""
    return row.life.value, LIFE_STYLE[row.life]


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
        (findings_cell(row), HEALTH_STYLE[row.health]),
        (link_word(row.link), LINK_STYLE[row.link]),
        life_cell(row),
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
        text.append(GAP)
        text.append(_cell(value, column), style=style)
    return text


def node_text(row: NodeRow, name_w: int, now: float, spark: Sequence[float]) -> Text:
    return _assemble(row.name, name_w, _cells(row, now, spark), "bold")


def fold_text(line: Line, name_w: int, now: float, rows: Sequence[NodeRow] | None = None) -> Text:
    """A folded node set: its count, shared state, and the group's figures (mean or worst).

    ``rows``: the members' current rows (the table's model keeps them fresher than the
    line's, which are as of the layout).
    """
    rows = line.rows if rows is None else rows
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
        life=first.life,
    )
    label = f"{line.label} ({len(rows)})"
    return _assemble(label, name_w, _cells(summary, now, ()), "bold")


def group_text(line: Line) -> Text:
    return Text(f"── {line.label} ", style="bold reverse", no_wrap=True, overflow="crop")
