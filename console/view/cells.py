"""Plain-text cells for the front ends: bars, sparklines, sizes, rates and ages.

Every function returns a short ``str`` of a known width (or less) and never raises on a missing
value: ``None`` and NaN render as ``-``, which the console reads as "not known" rather than 0.
Hand-written because they are a few lines each; Rich's bar and Textual's Sparkline are
widgets, and a table of a thousand rows needs strings it can cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "-"
#: Eight heights of a sparkline column, lowest first.
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
#: A bar's eighths of a cell, emptiest first.
_BAR_EIGHTHS = " ▏▎▍▌▋▊▉"
_UNITS = ("", "K", "M", "G", "T", "P", "E")


def known(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def sparkline(values: Sequence[float], width: int, top: float | None = None) -> str:
    """The last ``width`` values as block characters; gaps (NaN) as spaces.

    ``top`` fixes the scale (100 for percentages); without it the largest value is the top,
    so a flat series of small rates still shows its shape.
    """
    tail = list(values[-width:]) if width > 0 else []
    if not tail:
        return ""
    present = [v for v in tail if not math.isnan(v)]
    scale = top if top is not None else max(present, default=0.0)
    out = []
    for value in tail:
        if math.isnan(value):
            out.append(" ")
        elif scale <= 0:
            out.append(SPARK_LEVELS[0])
        else:
            level = round(min(max(value / scale, 0.0), 1.0) * (len(SPARK_LEVELS) - 1))
            out.append(SPARK_LEVELS[level])
    return "".join(out).rjust(width)


def bar(fraction: float | None, width: int) -> str:
    """A horizontal bar ``width`` cells wide, filled to ``fraction`` (0-1) in eighths."""
    if not known(fraction) or width <= 0:
        return " " * max(width, 0)
    assert fraction is not None
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_BAR_EIGHTHS[part] if part else "")
    return text.ljust(width)


def human(value: float | None, suffix: str = "", *, base: int = 1000) -> str:
    """``1234567`` → ``1.2M``: three significant figures at most, SI or binary steps."""
    if not known(value):
        return MISSING
    assert value is not None
    step = 0
    magnitude = abs(value)
    while magnitude >= 999.5 and step < len(_UNITS) - 1:
        magnitude /= base
        step += 1
    sign = "-" if value < 0 else ""
    digits = f"{magnitude:.0f}" if magnitude >= 9.95 or step == 0 else f"{magnitude:.1f}"
    return f"{sign}{digits}{_UNITS[step]}{suffix}"


def percent(value: float | None) -> str:
    return f"{value:.0f}%" if known(value) else MISSING


def age(seconds: float | None) -> str:
    """How old something is, in the unit a person would say: 0s, 12s, 3m, 2h, 4d.

    Whole seconds: a tenth would change on every repaint of every row, for nothing an
    operator can act on (a sample is fresh, or it is seconds late).
    """
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{int(seconds)}s"  # floored, as the larger units are: 59.9 s is not "1m"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}d"


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with an ellipsis, or padded to it."""
    if len(text) <= width:
        return text.ljust(width)
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "…"
