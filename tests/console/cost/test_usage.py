"""The usage meter (``console/cost/usage.py``) over a real store and a real Fleet on simulated
clocks: GPU-seconds used from the utilisations the node reports, idle seconds and dollars only
while the node has no job and every GPU is below its pool's threshold, nothing for a node not
heard from or not up, hours split at UTC hours, and no metering across a gap."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.console.cost.helpers import HOUR, POOL, Clock, burst, hear, launch
from tests.console.test_health import FakeClock
from tidectl.console.config.model import PoolPolicy
from tidectl.console.cost.usage import UsageMeter
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.scheduler.base import Job, JobState, SchedulerSnapshot
from tidectl.console.thresholds import HealthThresholds

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()
PRICE = 36.0  # $/h: $0.01 a second


def job_on(node: str) -> SchedulerSnapshot:
    job = Job("7", "train", "bob", JobState.RUNNING, "gpu", 1, 8, nodes=(node,))
    return SchedulerSnapshot(jobs=(job,))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite3") as opened:
        yield opened


@pytest.fixture
def fleet() -> Fleet:
    return Fleet([], HealthThresholds(), clock=FakeClock())


def test_gpu_seconds_and_idle_dollars_add_up_over_the_passes(store: Store, fleet: Fleet) -> None:
    intent = burst(store, "h100", T0)
    launch(store, "h-1", intent, PRICE, T0)
    clock = Clock(T0)
    meter = UsageMeter(store, [POOL], fleet, clock=clock, min_interval_s=10)
    assert meter.record(None) == 0  # the first pass starts the clock

    clock.advance(60)  # a job on it, GPUs at 80 % and 40 %: 1.2 GPU-seconds a second
    hear(fleet, "h-1", 80, 40)
    meter.record(job_on("h-1"))
    assert meter.idle == frozenset()
    clock.advance(60)  # no job, every GPU under 5 %: idle
    hear(fleet, "h-1", 2, 3, seq=2)
    meter.record(SchedulerSnapshot())
    assert meter.idle == {"h-1"}
    clock.advance(60)  # no job, but one GPU busy: not idle
    hear(fleet, "h-1", 2, 50, seq=3)
    meter.record(SchedulerSnapshot())
    assert meter.idle == frozenset()

    (row,) = store.usage()
    assert (row.node, row.pool, row.intent_id) == ("h-1", "h100", intent)
    assert row.up_s == pytest.approx(180)
    assert row.gpu_s == pytest.approx(60 * 1.2 + 60 * 0.05 + 60 * 0.52)
    assert row.idle_s == pytest.approx(60)
    assert row.idle_usd == pytest.approx(60 * PRICE / HOUR)  # $0.60: the idle minute only
    assert (row.first_at, row.last_at, row.last_idle) == (T0, T0 + 180, False)


def test_a_node_not_heard_from_or_not_up_is_never_idle(store: Store, fleet: Fleet) -> None:
    intent = burst(store, "h100", T0)
    launch(store, "quiet", intent, PRICE, T0)  # active, but its agent never spoke
    launch(store, "booting", intent, PRICE, T0)
    store.transition(
        "booting", State.FAILED, reason="gone", actor="reconcile", request_id="r", at=T0
    )
    hear(fleet, "booting", 0, 0)  # failed still bills, but is no capacity anyone could use
    clock = Clock(T0)
    meter = UsageMeter(store, [POOL], fleet, clock=clock, min_interval_s=10)
    meter.record(None)
    clock.advance(30)
    meter.record(SchedulerSnapshot())
    rows = {row.node: row for row in store.usage()}
    assert set(rows) == {"quiet", "booting"}
    assert rows["quiet"].gpu_s == 0 and rows["quiet"].idle_s == 0
    assert rows["booting"].up_s == pytest.approx(30) and rows["booting"].idle_s == 0


def test_without_a_scheduler_the_gpus_alone_decide_against_the_pools_threshold(
    store: Store, fleet: Fleet
) -> None:
    pool = replace(POOL, policy=PoolPolicy(idle_gpu_util_below=20.0))
    intent = burst(store, "h100", T0)
    launch(store, "h-1", intent, PRICE, T0)
    hear(fleet, "h-1", 15, 19)
    clock = Clock(T0)
    meter = UsageMeter(store, [pool], fleet, clock=clock, min_interval_s=10)
    meter.record(None)
    clock.advance(20)
    meter.record(None)  # no scheduler: no job known, and both GPUs under 20 %
    (row,) = store.usage()
    assert row.idle_s == pytest.approx(20) and row.last_idle
    assert row.gpu_s == pytest.approx(20 * 0.34)


def test_passes_are_spaced_split_at_hours_and_a_gap_is_not_metered(
    store: Store, fleet: Fleet
) -> None:
    start = T0 + HOUR - 20  # 12:59:40
    intent = burst(store, "h100", start)
    launch(store, "h-1", intent, PRICE, start)
    hear(fleet, "h-1", 100)
    clock = Clock(start)
    meter = UsageMeter(store, [POOL], fleet, clock=clock, min_interval_s=15, max_gap_s=300)
    meter.record(None)
    clock.advance(5)
    assert meter.record(None) == 0  # under min_interval_s: nothing written yet
    clock.advance(35)  # 13:00:20: 40 s since the first pass, 20 of them in each hour
    assert meter.record(None) == 2
    by_hour = {row.hour: row for row in store.usage()}
    assert sorted(by_hour) == [T0, T0 + HOUR]
    assert by_hour[T0].up_s == pytest.approx(20) and by_hour[T0].last_at == T0 + HOUR
    assert (
        by_hour[T0 + HOUR].gpu_s == pytest.approx(20) and by_hour[T0 + HOUR].first_at == T0 + HOUR
    )

    clock.advance(3600)  # the control plane was stopped for an hour: not metered
    assert meter.record(None) == 0
    clock.advance(30)
    meter.record(None)
    assert sum(row.up_s for row in store.usage()) == pytest.approx(70)


def test_a_node_that_bills_no_more_is_not_metered(store: Store, fleet: Fleet) -> None:
    intent = burst(store, "h100", T0)
    launch(store, "h-1", intent, PRICE, T0)
    for state in (State.DRAINING, State.DRAINED, State.TERMINATING, State.TERMINATED):
        store.transition("h-1", state, reason="end", actor="a", request_id="r", at=T0)
    clock = Clock(T0)
    meter = UsageMeter(store, [POOL], fleet, clock=clock, min_interval_s=1)
    meter.record(None)
    clock.advance(30)
    assert meter.record(None) == 0 and store.usage() == []
