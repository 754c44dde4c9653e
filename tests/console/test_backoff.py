"""Reconnect delays: capped, growing, jittered, and reset by success."""

from __future__ import annotations

import random

import pytest

from tidectl.console.transport.backoff import Backoff


def test_delays_grow_to_the_cap_and_never_leave_the_bounds() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(40)]
    assert all(1.0 <= d <= 60.0 for d in delays)
    # The ceiling doubles from 1 s: the first delays are short, later ones can reach the cap.
    assert delays[0] == 1.0
    assert max(delays[:3]) <= 4.0
    assert max(delays[10:]) > 30.0


def test_full_jitter_spreads_nodes_that_failed_together() -> None:
    rng = random.Random(1)
    fifth = [Backoff(1.0, 60.0, rng=rng) for _ in range(200)]
    for backoff in fifth:
        for _ in range(4):
            backoff.next_delay()
    delays = sorted(b.next_delay() for b in fifth)  # each a draw in [1, 16]
    assert delays[0] < 3.0 and delays[-1] > 14.0
    assert len({round(d, 3) for d in delays}) > 150


def test_reset_starts_again_from_the_minimum() -> None:
    backoff = Backoff(0.5, 10.0, rng=random.Random(3))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="need 0 < minimum"):
        Backoff(5.0, 1.0)
