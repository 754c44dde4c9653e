"""Table lines as text: the heading's sort mark, health in words, aligned columns, the header."""

from __future__ import annotations

import copy

import msgspec
import pytest
from rich.text import Text

from tests.console.test_health import Record
from tests.console.view.sim_fleets import Place, SimFleet, every_gpu, gpu_utils
from tidectl.agents import protocol
from tidectl.agents.probes.simfaults import Fault
from tidectl.console import schema
from tidectl.console.model import LinkState, Severity
from tidectl.console.view import render
from tidectl.console.view.badges import HEALTH_STYLE, HEALTH_SYMBOL, HEALTH_WORD
from tidectl.console.view.header import header_text
from tidectl.console.view.rows import NodeRow
from tidectl.console.view.table import SORTS, FleetTableModel, Line

BIG = "big16"  # a node of 16 GPUs, one of them lost


def sixteen_gpus(record: Record) -> None:
    """A sample of 16 GPUs (the sim's eight, twice over) with GPU 15 missing."""
    gpus = record["probes"]["gpu"]["gpus"]
    more = [dict(gpu, index=gpu["index"] + 8, uuid=gpu["uuid"] + "-b") for gpu in gpus]
    record["probes"]["gpu"]["gpus"] = [g for g in gpus + more if g["index"] != 15]


def hello_of_sixteen(sim: SimFleet, name: str) -> schema.Hello:
    record = sim.feeds[name].hello_record()
    facts = record["facts"]["gpu"]["gpus"]
    facts += [dict(copy.deepcopy(g), index=g["index"] + 8) for g in facts]
    return msgspec.json.Decoder(schema.Hello).decode(protocol.encode(record))


def render_fleet() -> SimFleet:
    sim = SimFleet(
        [
            Place("a1", pool="a100"),
            Place("a2", pool="a100"),
            Place("a3", pool="a100"),
            Place("g1", pool="a100"),
            Place("far1", site="frankfurt-colo-7", pool="h100-80g"),
            Place(BIG, site="dc2"),
            Place("c1", site="aws"),
        ],
        silent=["c1"],
    )
    sim.fleet.on_link("c1", LinkState.UNREACHABLE, "connection refused")
    sim.fleet.on_hello(BIG, hello_of_sixteen(sim, BIG))
    edits = {BIG: sixteen_gpus}
    sim.tick(2, mutate=edits)
    a2 = sim.feeds["a2"].node
    a2.inject(Fault("ib_down", port=a2.ports[0]))
    sim.feeds["a3"].node.inject(Fault("disk_full", mount="/scratch", pct=93.0))
    sim.feeds["g1"].node.inject(Fault("gpu_lost", gpu=7))
    sim.tick(2, mutate=edits)
    return sim


@pytest.fixture(scope="module")
def sim() -> SimFleet:
    return render_fleet()


# --- reading a line back into columns -----------------------------------------------------------


def spans(name_w: int) -> dict[str, tuple[int, int]]:
    """Each column's [start, end) on a line, from the widths, after the name and a gap."""
    out = {"name": (0, name_w)}
    at = name_w
    for column in render.COLUMNS:
        at += len(render.GAP)
        out[column.key] = (at, at + column.width)
        at += column.width
    return out


def columns_of(plain: str, name_w: int) -> dict[str, str]:
    cut = spans(name_w)
    for key, (start, _) in cut.items():
        if key != "name":
            assert plain[start - 1] == " ", f"no gap before {key} in {plain!r}"
    return {key: plain[start:end] for key, (start, end) in cut.items()}


def fitted(value: str, width: int) -> str:
    """What a cell of ``width`` can show of ``value``: all of it, or its start and an ellipsis."""
    return value if len(value) <= width else value[: width - 1] + "…"


def width_of(key: str) -> int:
    return next(c.width for c in render.COLUMNS if c.key == key)


def lines_of(sim: SimFleet, *, folded: bool = False) -> tuple[list[Line], int]:
    model = FleetTableModel()
    model.load(sim.fleet)
    model.folded = folded
    lines = model.lines()
    # As wide as the longest label as drawn: a fold's label is followed by its count.
    labels = [
        line.label + (f" ({len(line.rows)})" if line.kind == "fold" else "") for line in lines
    ]
    return lines, render.name_width(labels)


def text_of(line: Line, name_w: int, now: float) -> Text:
    if line.kind == "fold":
        return render.fold_text(line, name_w, now)
    if line.kind == "group":
        return render.group_text(line)
    return render.node_text(line.rows[0], name_w, now, [10.0, 50.0, 90.0])


# --- heading ------------------------------------------------------------------------------------


def test_every_sort_key_has_a_column_to_mark() -> None:
    assert set(SORTS) <= {"name"} | {column.key for column in render.COLUMNS}


@pytest.mark.parametrize("key", list(SORTS))
@pytest.mark.parametrize(("reverse", "marker"), [(False, "▼"), (True, "▲")])
def test_heading_marks_the_sort_column_and_only_it(key: str, reverse: bool, marker: str) -> None:
    name_w = 10
    plain = render.heading(name_w, key, reverse).plain
    assert plain.count(marker) == 1 and "▼▲".replace(marker, "") not in plain
    cut = columns_of(plain, name_w)
    assert marker in cut[key]
    # The mark never moves a column: the heading is as long whatever the sort.
    assert len(plain) == len(render.heading(name_w, "name" if key != "name" else "age", False))
    unmarked = render.heading(name_w, "name", False).plain
    for other, cell in cut.items():
        if other not in (key, "name"):
            assert cell == columns_of(unmarked, name_w)[other]


def test_heading_titles_sit_in_their_columns() -> None:
    plain = render.heading(12, "name", False).plain
    cut = columns_of(plain, 12)
    assert cut["name"] == "NODE▼".ljust(12)
    for column in render.COLUMNS:
        cell = cut[column.key]
        assert cell.strip() == fitted(column.title, column.width)
        if column.right:
            assert cell == cell.strip().rjust(column.width)
        else:
            assert cell == cell.strip().ljust(column.width)


# --- node lines ---------------------------------------------------------------------------------


def expected_cells(row: NodeRow) -> dict[str, str]:
    """What a person reads in each column of a node's line (as much as a test can say)."""
    gpus = "-" if row.gpus is None else str(row.gpus)
    if row.gpus is not None and row.gpus_expected is not None and row.gpus < row.gpus_expected:
        gpus = f"{row.gpus}/{row.gpus_expected}"
    out = {
        "name": row.name,
        "health": f"{HEALTH_SYMBOL[row.health]} {HEALTH_WORD[row.health]}",
        "link": {LinkState.STREAMING: "streaming", LinkState.UNREACHABLE: "unreachable"}[row.link],
        "site": row.site if row.pool == "-" else f"{row.site}/{row.pool}",
        "gpus": gpus,
        "mem": "-" if row.mem_pct is None else f"{row.mem_pct:.0f}%",
        "temp": "-" if row.hottest_c is None else f"{row.hottest_c:.0f}°C",
    }
    if row.ib_total is not None:
        out["ib"] = f"{row.ib_up}/{row.ib_total}"  # then the error rate
    if row.fs_pct is not None:
        out["fs"] = f"{row.fs_pct:3.0f}% {row.fs_mount}"
    if row.codes:
        out["findings"] = row.codes[0]  # the worst, then "+n" for the others
    return out


def test_node_lines_line_up_under_the_heading(sim: SimFleet) -> None:
    lines, name_w = lines_of(sim)
    heading = render.heading(name_w, "health", False).plain
    assert len(lines) == len(sim.fleet.nodes)
    for line in lines:
        row = line.rows[0]
        plain = text_of(line, name_w, sim.now).plain
        assert len(plain) == len(heading), plain
        cut = columns_of(plain, name_w)
        for key, value in expected_cells(row).items():
            width = name_w if key == "name" else width_of(key)
            shown = fitted(value, width)
            right = key != "name" and next(c for c in render.COLUMNS if c.key == key).right
            if right:
                assert cut[key] == shown.rjust(width), (row.name, key, cut[key])
            else:
                assert cut[key].startswith(shown), (row.name, key, cut[key])


def test_health_reads_as_words_not_colour_alone(sim: SimFleet) -> None:
    lines, name_w = lines_of(sim)
    seen: set[Severity] = set()
    for line in lines:
        row = line.rows[0]
        text = text_of(line, name_w, sim.now)
        badge = f"{HEALTH_SYMBOL[row.health]} {HEALTH_WORD[row.health]}"
        assert columns_of(text.plain, name_w)["health"].strip() == badge
        start = text.plain.index(badge)
        # ...and a colour on top of the words.
        assert any(
            s.start <= start and s.end >= start + len(badge) and s.style == HEALTH_STYLE[row.health]
            for s in text.spans
        )
        seen.add(row.health)
    assert seen == set(Severity)  # the fleet shows every level
    words = {HEALTH_WORD[level] for level in Severity}
    assert len(words) == len(Severity) and len(set(HEALTH_SYMBOL.values())) == len(Severity)


def test_the_findings_of_a_node_are_on_its_line(sim: SimFleet) -> None:
    row = sim.row("a2")
    assert row.codes[:1] == ("ib.port_down",)
    plain = render.node_text(row, 8, sim.now, []).plain
    assert "ib.port_down" in plain
    assert "ib.port_down" not in render.node_text(sim.row("a1"), 8, sim.now, []).plain


def test_missing_gpus_show_as_present_over_expected(sim: SimFleet) -> None:
    row = sim.row("g1")
    assert (row.gpus, row.gpus_expected) == (7, 8)
    text = render.node_text(row, 8, sim.now, [])
    cell = columns_of(text.plain, 8)["gpus"]
    assert cell.strip() == "7/8"
    start = text.plain.index("7/8")
    assert any(s.start <= start and s.style == "bold red" for s in text.spans)
    # A node with all its GPUs shows only the count.
    assert columns_of(render.node_text(sim.row("a1"), 8, sim.now, []).plain, 8)["gpus"] == (
        "8".rjust(width_of("gpus"))
    )


def test_a_cell_too_wide_for_its_column_is_cut_and_moves_nothing(sim: SimFleet) -> None:
    row = sim.row(BIG)
    assert (row.gpus, row.gpus_expected) == (15, 16)
    heading = render.heading(8, "gpus", False).plain
    plain = render.node_text(row, 8, sim.now, []).plain
    assert len(plain) == len(heading)
    cell = columns_of(plain, 8)["gpus"].strip()
    assert cell == fitted("15/16", width_of("gpus"))
    assert cell.startswith("15/")


def test_the_sparkline_sits_in_the_util_column(sim: SimFleet) -> None:
    row = sim.row("a1")
    sim_plain = render.node_text(row, 8, sim.now, [0.0, 100.0]).plain
    cell = columns_of(sim_plain, 8)["util"]
    assert "▁█" in cell
    assert cell.rstrip().endswith(f"{row.util_pct:.0f}%")


# --- folds and groups ---------------------------------------------------------------------------


def test_fold_lines_line_up_and_say_how_many_and_how_healthy() -> None:
    sim = SimFleet([Place(f"n{i}") for i in range(1, 7)])
    sim.tick(2, mutate=every_gpu(util_pct=40.0))
    for name in ("n5", "n6"):
        sim.feeds[name].node.inject(Fault("disk_full", mount="/scratch", pct=93.0))
    sim.tick(1, mutate=every_gpu(util_pct=40.0))
    lines, name_w = lines_of(sim, folded=True)
    heading = render.heading(name_w, "health", False).plain
    assert [(line.kind, line.label) for line in lines] == [("fold", "n[5-6]"), ("fold", "n[1-4]")]
    warn, ok = (text_of(line, name_w, sim.now) for line in lines)
    for text in (warn, ok):
        assert len(text.plain) == len(heading)
    warn_cells, ok_cells = columns_of(warn.plain, name_w), columns_of(ok.plain, name_w)
    assert warn_cells["name"].strip() == "n[5-6] (2)"
    assert ok_cells["name"].strip() == "n[1-4] (4)"
    assert warn_cells["health"].strip() == "▲ warn"
    assert ok_cells["health"].strip() == "✔ ok"
    assert "storage.full" in warn.plain and "storage.full" not in ok.plain
    assert ok_cells["gpus"].strip() == "32"  # the fold's GPUs, all together
    assert ok_cells["util"].rstrip().endswith("40%")  # their mean


def test_group_heading_text() -> None:
    text = render.group_text(Line("group", "group:site:dc1", "site dc1: 3 nodes"))
    assert text.plain == "── site dc1: 3 nodes "


# --- header -------------------------------------------------------------------------------------


def test_header_counts_links_health_gpus_in_use_and_mean_util() -> None:
    sim = SimFleet(
        [Place("n1"), Place("n2"), Place("n3", site="dc2"), Place("n4", site="dc2")],
    )
    edits = {
        "n1": gpu_utils([60.0] * 4 + [0.0] * 4),  # four GPUs in use
        "n2": every_gpu(util_pct=20.0),  # eight
        "n3": every_gpu(util_pct=90.0),
        "n4": every_gpu(util_pct=0.0),
    }
    sim.tick(2, mutate=edits)
    sim.fleet.on_link("n3", LinkState.UNREACHABLE, "timed out")  # not heard: not in use
    n4 = sim.feeds["n4"].node
    n4.inject(Fault("ib_down", port=n4.ports[0]))
    sim.tick(1, only=["n1", "n2", "n4"], mutate=edits)
    text = header_text("lab", sim.fleet.summary())
    first, second = text.plain.split("\n")
    assert first == "tidectl · lab  4 nodes (dc1 2, dc2 2) · 3 streaming, 1 unreachable"
    # 32 GPUs; in use: 4 on n1 and 8 on n2; mean over n1, n2, n4: (240 + 160 + 0) / 24.
    assert second == (
        "GPUs 32, 12 in use · mean util 17% · ✖ 1 crit  ▲ 0 warn  ? 1 unknown  ✔ 2 ok"
    )
    # Levels with nodes in them wear their colour; the empty ones are dim.
    styles = {text.plain[s.start : s.end]: s.style for s in text.spans}
    assert styles["✖ 1 crit"] == HEALTH_STYLE[Severity.CRITICAL]
    assert styles["▲ 0 warn"] == "dim"


def test_header_of_a_fleet_never_heard_from() -> None:
    sim = SimFleet(["n1"], start=False)
    plain = header_text("empty", sim.fleet.summary()).plain
    assert plain == (
        "tidectl · empty  1 nodes (dc1 1) · 1 connecting\n"
        "GPUs 0, 0 in use · mean util - · ✖ 0 crit  ▲ 0 warn  ? 1 unknown  ✔ 0 ok"
    )
