"""The cost report (``console/cost/report.py``) over a real store: spend per pool, node and
burst in a window, today and this month (UTC), each burst's P&L (node-hours times its price is
its spend; GPU-hours paid and used), idle burn now and idle spend, the burn over the day, and
when and why a burst ended, read from its nodes' moves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.console.cost.helpers import HOUR, POOL, Clock, burst, end, hear, launch
from tests.console.test_health import FakeClock
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import Budget, BudgetPeriod, ClusterConfig
from tidectl.console.cost.ends import EndCause, end_cause
from tidectl.console.cost.report import cost_report, empty_report
from tidectl.console.cost.usage import UsageMeter
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.records import IntentStatus
from tidectl.console.lifecycle.states import State, Transition
from tidectl.console.lifecycle.store import Store
from tidectl.console.scheduler.base import SchedulerSnapshot
from tidectl.console.thresholds import HealthThresholds
from tidectl.console.view.costs import burn_series

#: 02:00 UTC on the 1st of March: yesterday was in February.
NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC).timestamp()
A100 = replace(POOL, name="a100", gpus_per_node=4, price_per_hour=10.0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite3") as opened:
        yield opened


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "lab"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu1"\n'
    )
    base = parse_config(text, tmp_path / "cluster.toml")
    return replace(base, pools=(POOL, A100), budgets=(Budget(1000.0, BudgetPeriod.DAY),))


def test_a_bursts_spend_is_its_node_hours_times_its_price(
    store: Store, config: ClusterConfig
) -> None:
    intent = burst(store, "h100", NOW - 5 * HOUR)  # 21:00 on the 28th of February
    launch(store, "h-1", intent, 24.0, NOW - 5 * HOUR)
    launch(store, "h-2", intent, 24.0, NOW - 3 * HOUR)
    end(store, "h-2", NOW - 1 * HOUR, reason="drain asked by bob: job done", actor="bob")
    report = cost_report(store, config, NOW)

    (b,) = report.bursts
    assert (b.intent_id, b.pool, b.asked_by, b.running, b.nodes) == (
        intent,
        "h100",
        "alice",
        True,
        2,
    )
    assert b.node_hours == pytest.approx(5 + 2)
    assert b.spend == pytest.approx(b.node_hours * 24.0)
    assert b.gpu_hours_paid == pytest.approx(7 * 8)
    assert b.burn_per_hour == 24.0
    assert b.spend_in_window == pytest.approx((2 + 1) * 24.0)  # since midnight: 2 h + 1 h
    assert b.ended_at is None and b.ended_why is None

    end(store, "h-1", NOW, reason="drain asked by policy: policy: idle: no jobs", actor="policy")
    done = cost_report(store, config, NOW + HOUR)
    (b,) = done.bursts
    assert not b.running and b.burn_per_hour == 0
    assert b.spend == pytest.approx(7 * 24.0)  # nothing after the end
    assert (b.ended_at, b.ended_why, b.ended_by) == (NOW, EndCause.IDLE, "policy")
    assert b.ended_reason == "drain asked by policy: policy: idle: no jobs"


def test_spend_per_pool_and_node_today_this_month_and_in_the_window(
    store: Store, config: ClusterConfig
) -> None:
    h100, a100 = (
        burst(store, "h100", NOW - 30 * HOUR, token="h"),
        burst(store, "a100", NOW - 30 * HOUR, token="a"),
    )
    launch(store, "h-1", h100, 24.0, NOW - 4 * HOUR)  # since 22:00 yesterday, running
    launch(store, "a-1", a100, 10.0, NOW - 30 * HOUR, pool="a100")  # February only
    end(store, "a-1", NOW - 26 * HOUR, reason="drain asked by bob: x", actor="bob")
    launch(store, "a-2", a100, 10.0, NOW - HOUR, pool="a100")
    report = cost_report(store, config, NOW)

    assert (report.since, report.day_start) == (NOW - 2 * HOUR, NOW - 2 * HOUR)
    pools = {p.pool: p for p in report.pools}
    assert list(pools) == ["h100", "a100"]  # the config's order
    h, a = pools["h100"], pools["a100"]
    assert (h.billing, h.burn_per_hour, a.billing, a.burn_per_hour) == (1, 24.0, 1, 10.0)
    assert h.today == pytest.approx(48.0) and h.month == pytest.approx(48.0)
    assert h.spend == pytest.approx(48.0) and h.node_hours == pytest.approx(2)
    assert h.gpu_hours_paid == pytest.approx(16)
    assert a.today == pytest.approx(10.0) and a.month == pytest.approx(10.0)  # a-1: February
    assert report.today == pytest.approx(58.0) and report.burn_per_hour == 34.0
    assert {n.node: round(n.spend, 6) for n in report.nodes} == {"h-1": 48.0, "a-2": 10.0}

    wider = cost_report(store, config, NOW, since=NOW - 28 * HOUR)
    spent = {n.node: round(n.spend, 6) for n in wider.nodes}
    assert spent == {"a-1": 20.0, "h-1": 96.0, "a-2": 10.0}  # a-1: its last 2 of 4 hours
    assert wider.spend == pytest.approx(126.0) and wider.today == pytest.approx(58.0)
    assert {b.pool for b in wider.bursts} == {"h100", "a100"}
    (status,) = report.budgets
    assert status.spent == pytest.approx(58.0) and status.burn_per_hour == 34.0


def test_gpu_hours_used_and_idle_come_from_the_meter(store: Store, config: ClusterConfig) -> None:
    intent = burst(store, "h100", NOW - HOUR)
    launch(store, "h-1", intent, 36.0, NOW - HOUR)
    fleet = Fleet([], HealthThresholds(), clock=FakeClock())
    clock = Clock(NOW - HOUR)
    meter = UsageMeter(store, config.pools, fleet, clock=clock, min_interval_s=1)
    meter.record(None)
    for utils in [(100,) * 8] * 30 + [(0,) * 8] * 30:  # busy for 30 minutes, then idle
        clock.advance(60)
        hear(fleet, "h-1", *utils)
        meter.record(SchedulerSnapshot())
    report = cost_report(store, config, NOW)
    (b,) = report.bursts
    assert b.gpu_hours_used == pytest.approx(8 * 0.5)
    assert b.gpu_hours_paid == pytest.approx(8 * 1.0)
    assert report.idle_spend == pytest.approx(0.5 * 36.0)
    assert report.idle_per_hour == 36.0  # idle at the last metering, a moment ago
    (node,) = report.nodes
    assert node.idle and node.gpu_hours_used == pytest.approx(4.0)

    # A window that starts inside the metered hour counts its share of the hour's row, in
    # proportion to time (rows are per hour: within one, use is taken as even).
    quarter = cost_report(store, config, NOW, since=NOW - 15 * 60)
    assert quarter.idle_spend == pytest.approx(18.0 / 4)
    assert quarter.gpu_hours_used == pytest.approx(4.0 / 4)

    # A meter that stopped long ago says nothing about idleness now.
    later = cost_report(store, config, NOW + HOUR)
    assert later.idle_per_hour == 0 and not later.nodes[0].idle


def test_the_burn_over_the_day_adds_up_to_today(store: Store, config: ClusterConfig) -> None:
    intent = burst(store, "h100", NOW - 3 * HOUR)
    launch(store, "h-1", intent, 24.0, NOW - 3 * HOUR)
    launch(store, "h-2", intent, 12.0, NOW - 30 * 60)
    report = cost_report(store, config, NOW - 10 * 60)  # 01:50: the last slot is half gone
    assert len(report.day_spend) == 8 and sum(report.day_spend) == pytest.approx(report.today)
    series = burn_series(report)
    assert series[:6] == pytest.approx([24.0] * 6)
    assert series[6] == pytest.approx(36.0) and series[7] == pytest.approx(36.0)


def test_a_burst_that_launched_nothing_ended_with_its_intent(
    store: Store, config: ClusterConfig
) -> None:
    intent = burst(store, "h100", NOW - HOUR, done=False)
    store.set_intent_status(intent, IntentStatus.FAILED, at=NOW - HOUR + 5, error="no capacity")
    (b,) = cost_report(store, config, NOW).bursts
    assert not b.running and b.nodes == 0 and b.spend == 0
    assert (b.ended_at, b.ended_why, b.ended_reason) == (
        NOW - HOUR + 5,
        EndCause.FAILED,
        "no capacity",
    )


@pytest.mark.parametrize(
    ("after", "reason", "actor", "cause"),
    [
        (
            State.DRAINING,
            "drain asked by policy: policy: budget: the cluster's…",
            "policy",
            EndCause.BUDGET,
        ),
        (
            State.DRAINING,
            "drain asked by policy: policy: max lifetime: up 8 h",
            "policy",
            EndCause.MAX_LIFETIME,
        ),
        (State.DRAINING, "drain asked by bob: firmware", "bob", EndCause.PERSON),
        (
            State.DRAINING,
            "Slurm powers it down idle (SuspendProgram, as slurm)",
            "slurm",
            EndCause.SLURM,
        ),
        (State.TERMINATING, "burst cancelled by bob", "bob", EndCause.CANCELLED),
        (State.TERMINATING, "drained and empty for 3700 s", "reconcile", EndCause.RECONCILE),
        (State.FAILED, "the instance vanished", "reconcile", EndCause.FAILED),
    ],
)
def test_why_a_node_left_service(after: State, reason: str, actor: str, cause: EndCause) -> None:
    assert end_cause(Transition("n", State.ACTIVE, after, 0.0, reason, actor, "r")) is cause


def test_a_cluster_that_never_billed_reports_zeros(config: ClusterConfig) -> None:
    report = empty_report(config, NOW)
    assert (report.spend, report.burn_per_hour, report.pools, report.bursts) == (0, 0, (), ())
    assert [s.spent for s in report.budgets] == [0.0] and report.since == NOW - 2 * HOUR
