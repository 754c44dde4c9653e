"""Plain-text cells: sparklines, bars, sizes, ages and fitted text."""

from __future__ import annotations

import math

import pytest

from tidectl.console.view.cells import (
    MISSING,
    SPARK_LEVELS,
    age,
    bar,
    fit,
    human,
    percent,
    sparkline,
)

NAN = math.nan

# --- sparkline ----------------------------------------------------------------------------------


def test_sparkline_scales_to_its_largest_value_without_a_top() -> None:
    # 0, a half and the top: lowest, middle (3.5 of 7 rounds to 4) and highest level.
    assert sparkline([0.0, 5.0, 10.0], 3) == SPARK_LEVELS[0] + SPARK_LEVELS[4] + SPARK_LEVELS[7]
    # The same shape at any scale: small rates still show it.
    assert sparkline([0.0, 0.005, 0.01], 3) == sparkline([0.0, 5.0, 10.0], 3)


def test_sparkline_with_a_fixed_top_does_not_stretch_small_values() -> None:
    assert sparkline([10.0, 10.0], 2, top=100.0) == SPARK_LEVELS[1] * 2  # 0.7 of 7 → 1
    assert sparkline([10.0, 10.0], 2) == SPARK_LEVELS[7] * 2  # its own top
    # Above the top and below zero are clamped, not wrapped or raised.
    assert sparkline([250.0, -40.0], 2, top=100.0) == SPARK_LEVELS[7] + SPARK_LEVELS[0]


def test_sparkline_shows_gaps_as_spaces_and_keeps_its_width() -> None:
    line = sparkline([4.0, NAN, 8.0, NAN], 4)
    assert line == SPARK_LEVELS[4] + " " + SPARK_LEVELS[7] + " "
    assert sparkline([NAN, NAN], 2) == "  "  # nothing known: blank, no error


def test_sparkline_takes_the_last_values_and_pads_on_the_left() -> None:
    series = [float(v) for v in range(20)]
    line = sparkline(series, 8, top=19.0)
    assert len(line) == 8
    assert line == sparkline(series[-8:], 8, top=19.0)
    assert line[-1] == SPARK_LEVELS[7]
    short = sparkline([1.0, 2.0], 6)
    assert short == "    " + SPARK_LEVELS[4] + SPARK_LEVELS[7]
    assert sparkline([1.0], 0) == ""
    assert sparkline([], 5) == ""


def test_a_flat_zero_series_is_the_lowest_level_not_an_error() -> None:
    assert sparkline([0.0, 0.0, 0.0], 3) == SPARK_LEVELS[0] * 3


# --- bar ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "width", "expected"),
    [
        (0.0, 4, "    "),
        (1.0, 4, "████"),
        (0.5, 3, "█▌ "),  # 12 eighths: one full cell and a half
        (1 / 32, 4, "▏   "),  # one eighth of four cells
        (0.25 + 3 / 32, 4, "█▍  "),  # eleven eighths
        (1.7, 2, "██"),  # over full is full
        (-0.3, 2, "  "),  # below empty is empty
    ],
)
def test_bar_fills_in_eighths(fraction: float, width: int, expected: str) -> None:
    assert bar(fraction, width) == expected
    assert len(bar(fraction, width)) == width


@pytest.mark.parametrize("fraction", [None, NAN])
def test_bar_of_an_unknown_fraction_is_blank(fraction: float | None) -> None:
    assert bar(fraction, 5) == " " * 5
    assert bar(0.5, 0) == ""


# --- human --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (7, "7"),
        (999, "999"),
        (999.5, "1.0K"),  # would print as 1000: the next unit instead
        (1234, "1.2K"),
        (12_345, "12K"),
        (1_234_567, "1.2M"),
        (987_654_321, "988M"),
        (4.2e9, "4.2G"),
        (-1_234_567, "-1.2M"),
        (-3, "-3"),
    ],
)
def test_human_si(value: float, expected: str) -> None:
    assert human(value) == expected


def test_human_binary_and_suffix() -> None:
    assert human(1024, "B", base=1024) == "1.0KB"
    assert human(1536, "B", base=1024) == "1.5KB"
    assert human(80 * 1024**3, "B", base=1024) == "80GB"
    assert human(80 * 1024**3, "B") == "86GB"  # the same bytes in SI steps
    assert human(2_500_000, "B/s") == "2.5MB/s"


@pytest.mark.parametrize("value", [None, NAN])
def test_human_and_percent_of_unknown_are_a_dash(value: float | None) -> None:
    assert human(value) == MISSING == "-"
    assert human(value, "B/s") == MISSING  # no suffix on nothing
    assert percent(value) == MISSING
    assert percent(42.4) == "42%"


# --- age ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, "0s"),
        (0.42, "0s"),  # whole seconds: tenths would repaint every row each frame
        (9.9, "9s"),
        (12.3, "12s"),
        (59.0, "59s"),
        (60.0, "1m"),
        (3599.0, "59m"),
        (3600.0, "1h"),
        (86399.0, "23h"),
        (86400.0 * 4 + 5, "4d"),
        (-3.0, "0s"),  # a clock step backwards is "just now", not negative
    ],
)
def test_age_in_the_unit_a_person_would_say(seconds: float, expected: str) -> None:
    assert age(seconds) == expected


@pytest.mark.parametrize("seconds", [None, math.inf, NAN])
def test_age_of_nothing_is_a_dash(seconds: float | None) -> None:
    assert age(seconds) == MISSING


# --- fit ----------------------------------------------------------------------------------------


def test_fit_pads_or_cuts_with_an_ellipsis() -> None:
    assert fit("gpu001", 8) == "gpu001  "
    assert fit("gpu001", 6) == "gpu001"
    assert fit("/very/long/mount", 8) == "/very/l…"
    assert len(fit("/very/long/mount", 8)) == 8
    assert fit("abc", 1) == "a"  # no room for an ellipsis and a letter
    assert fit("abc", 0) == ""
