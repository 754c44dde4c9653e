"""The fleet model: coalesced notifications, staleness, links, summary, memory and cost."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import tracemalloc
from pathlib import Path

import msgspec
import pytest

from tests.console.test_health import FakeClock, Mutate, Record, SimFeed, health_of, run, spec
from tidectl.agents import protocol
from tidectl.console import schema
from tidectl.console.collector import Collector
from tidectl.console.config.model import AgentSettings, ClusterConfig, Site, SshSettings
from tidectl.console.fleet import (
    MAX_EVENTS,
    DuplicateNodeError,
    Fleet,
    UnknownNodeError,
)
from tidectl.console.history import GPU_SERIES
from tidectl.console.model import LinkState, Severity
from tidectl.console.thresholds import HealthThresholds


def make_fleet(count: int, **kwargs: float) -> tuple[Fleet, list[SimFeed], FakeClock]:
    clock = FakeClock()
    names = [f"gpu{i:03d}" for i in range(1, count + 1)]
    fleet = Fleet([spec(n) for n in names], HealthThresholds(), clock=clock, **kwargs)
    feeds = [SimFeed(fleet, name, clock, seed) for seed, name in enumerate(names, 1)]
    return fleet, feeds, clock


# --- change notifications ---------------------------------------------------------------------


def test_coalescing_in_a_loop_one_call_per_flush_with_every_changed_name() -> None:
    fleet, feeds, clock = make_fleet(50, coalesce_s=0.05)
    for feed in feeds:
        feed.start()
    fleet.flush()
    # 100 samples, two per node, decoded before the burst so the burst itself is instant.
    burst: list[tuple[str, schema.Sample]] = []
    for _ in range(2):
        clock.advance(1.0)
        burst.extend((feed.name, feed.sample()) for feed in feeds)
    calls: list[frozenset[str]] = []
    fleet.subscribe(calls.append)

    async def scenario() -> None:
        for name, sample in burst:
            fleet.on_sample(name, sample)
        assert calls == []  # nothing before the coalescing window ends
        deadline = time.monotonic() + 5.0
        while not calls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # and nothing more after it
        assert calls == [frozenset(feed.name for feed in feeds)]
        clock.advance(1.0)
        feeds[7].send()
        feeds[9].send()
        deadline = time.monotonic() + 5.0
        while len(calls) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert calls[1] == {feeds[7].name, feeds[9].name}

    asyncio.run(scenario())
    assert len(calls) == 2


def test_a_fleet_that_outlives_its_loop_flushes_in_the_next() -> None:
    fleet, feeds, clock = make_fleet(1, coalesce_s=0.01)
    calls: list[frozenset[str]] = []
    fleet.subscribe(calls.append)

    async def start_only() -> None:
        feeds[0].start()  # schedules a flush, then the loop ends before it runs

    asyncio.run(start_only())
    assert calls == []

    async def one_sample() -> None:
        clock.advance(1.0)
        feeds[0].send()
        for _ in range(500):
            if calls:
                return
            await asyncio.sleep(0.01)

    asyncio.run(one_sample())
    assert calls == [{"gpu001"}]


def test_without_a_loop_flush_is_called_by_hand() -> None:
    fleet, feeds, _ = make_fleet(3)
    calls: list[frozenset[str]] = []
    fleet.subscribe(calls.append)
    assert fleet.flush() == {"gpu001", "gpu002", "gpu003"}  # added nodes are changes
    assert fleet.flush() == frozenset()
    feeds[1].start()
    assert fleet.flush() == {"gpu002"}
    assert calls == [{"gpu001", "gpu002", "gpu003"}, {"gpu002"}]


def test_a_failing_subscriber_is_logged_kept_and_harms_no_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet, feeds, _ = make_fleet(2)
    fleet.flush()
    broken_calls = []
    good: list[frozenset[str]] = []

    def broken(changed: frozenset[str]) -> None:
        broken_calls.append(changed)
        raise RuntimeError("panel exploded")

    fleet.subscribe(broken)
    fleet.subscribe(good.append)
    with caplog.at_level(logging.ERROR, logger="tidectl.console.fleet"):
        feeds[0].start()
        fleet.flush()
        feeds[1].start()
        fleet.flush()
    assert broken_calls == [{"gpu001"}, {"gpu002"}]  # kept subscribed
    assert good == [{"gpu001"}, {"gpu002"}]
    assert "panel exploded" in caplog.text
    assert "stays subscribed" in caplog.text


def test_unsubscribe() -> None:
    fleet, feeds, _ = make_fleet(1)
    calls: list[frozenset[str]] = []
    unsubscribe = fleet.subscribe(calls.append)
    fleet.flush()
    unsubscribe()
    unsubscribe()  # twice is harmless
    feeds[0].start()
    fleet.flush()
    assert calls == [{"gpu001"}]


# --- link, staleness, agent errors -----------------------------------------------------------


def test_staleness_follows_the_hellos_interval() -> None:
    fleet, feeds, clock = make_fleet(2)
    fast, slow = feeds
    slow.interval_s = 5.0
    for feed in feeds:
        feed.start()
    run(feeds, clock, 3)
    fleet.flush()
    assert health_of(fast.state) is Severity.OK
    assert health_of(slow.state) is Severity.OK
    clock.advance(3.5)  # more than 3 x 1 s, less than 3 x 5 s
    fleet.check_staleness()
    assert fleet.flush() == {"gpu001"}
    state = fast.state
    assert health_of(state) is Severity.UNKNOWN
    assert state.stale
    assert state.findings[0].code == "agent.stale"
    assert state.findings[0].message.startswith(
        "No sample from the agent for more than 3 s (3 times its 1 s interval); last sample at"
    )
    assert state.events[0].kind == "health"
    assert (state.events[0].before, state.events[0].after) == ("ok", "unknown")
    assert state.health_since == clock.t
    assert health_of(slow.state) is Severity.OK
    fleet.check_staleness()
    assert fleet.flush() == frozenset()  # nothing changed: nothing to repaint
    clock.advance(12.0)
    fleet.check_staleness()
    assert fleet.flush() == {"gpu002"}
    fast.send()
    assert health_of(fast.state) is Severity.OK
    assert not fast.state.stale


def test_link_states_and_events() -> None:
    fleet, feeds, clock = make_fleet(1)
    feed = feeds[0]
    feed.start()
    run(feeds, clock, 2)
    state = feed.state
    assert health_of(state) is Severity.OK
    fleet.on_link("gpu001", LinkState.UNREACHABLE, "connection refused")
    fleet.on_link("gpu001", LinkState.UNREACHABLE, "connection refused")  # no new event
    assert health_of(state) is Severity.UNKNOWN
    assert state.link_error == "connection refused"
    assert [(e.kind, e.after) for e in list(state.events)[:3]] == [
        ("health", "unknown"),
        ("link", "unreachable"),
        ("health", "ok"),
    ]
    assert state.events[1].detail == "connection refused"
    clock.advance(5.0)
    fleet.on_link("gpu001", LinkState.STREAMING)
    assert health_of(state) is Severity.UNKNOWN  # streaming again, but its sample is old
    assert state.findings[0].code == "agent.stale"
    feed.send()
    assert health_of(state) is Severity.OK
    for i in range(MAX_EVENTS * 2):
        fleet.on_link("gpu001", LinkState.CONNECTING if i % 2 else LinkState.STREAMING)
    assert len(state.events) == MAX_EVENTS


def test_agent_error_shows_until_the_next_good_sample() -> None:
    fleet, feeds, clock = make_fleet(1)
    feeds[0].start()
    run(feeds, clock, 2)
    fleet.on_agent_error("gpu001", "unreadable line from the agent (not JSON): 'Segfault'")
    state = feeds[0].state
    assert health_of(state) is Severity.WARN
    assert state.findings[0].code == "agent.error"
    assert state.findings[0].message == "unreadable line from the agent (not JSON): 'Segfault'"
    feeds[0].send()
    assert health_of(state) is Severity.OK


def test_unknown_and_duplicate_nodes_are_refused_with_a_sentence() -> None:
    fleet, feeds, _ = make_fleet(1)
    with pytest.raises(UnknownNodeError) as caught:
        fleet.on_sample("gpu999", feeds[0].sample())
    assert str(caught.value) == (
        "node 'gpu999' is not part of this fleet; add it to cluster.toml first"
    )
    with pytest.raises(DuplicateNodeError, match="listed twice"):
        fleet.add(spec("gpu001"))


def test_nodes_join_and_leave() -> None:
    fleet, _, _ = make_fleet(1)
    fleet.flush()
    joined = fleet.add(spec("cloud-a1", site="aws-us-east-1"))
    assert health_of(joined) is Severity.UNKNOWN
    assert joined.link is LinkState.CONNECTING
    assert fleet.flush() == {"cloud-a1"}
    fleet.remove("cloud-a1")
    assert "cloud-a1" not in fleet.nodes
    assert fleet.flush() == {"cloud-a1"}
    with pytest.raises(UnknownNodeError):
        fleet.remove("cloud-a1")


# --- model contents -------------------------------------------------------------------------


def util_pct(value: float) -> Mutate:
    def mutate(record: Record) -> None:
        for gpu in record["probes"]["gpu"]["gpus"]:
            gpu["util_pct"] = value

    return mutate


def test_summary_counts() -> None:
    clock = FakeClock()
    fleet = Fleet(
        [spec("gpu001"), spec("gpu002"), spec("gpu003", site="dc2"), spec("gpu004", site="dc2")],
        HealthThresholds(),
        clock=clock,
    )
    busy, idle, gone = (SimFeed(fleet, f"gpu00{i}", clock, i) for i in (1, 2, 3))
    for feed in (busy, idle, gone):
        feed.start()
    clock.advance(1.0)
    busy.send(util_pct(50))
    idle.send(util_pct(0))
    gone.send(util_pct(90))
    fleet.on_link("gpu003", LinkState.UNREACHABLE, "timed out")
    summary = fleet.summary()
    assert summary.nodes == 4
    assert summary.by_site == {"dc1": 2, "dc2": 2}
    assert summary.by_link == {
        LinkState.STREAMING: 2,
        LinkState.UNREACHABLE: 1,
        LinkState.CONNECTING: 1,
    }
    assert summary.by_health == {Severity.OK: 2, Severity.UNKNOWN: 2}
    assert summary.gpus_total == 24  # the unreachable node's GPUs still exist
    assert summary.gpus_in_use == 8  # but only GPUs heard from now count as in use
    assert summary.gpu_util_mean == 25.0


def test_history_and_rates_through_the_fleet() -> None:
    fleet, feeds, clock = make_fleet(2)
    one, two = feeds
    two.interval_s = 2.0
    for feed in feeds:
        feed.start()
    assert one.state.history.capacity == 600  # 10 minutes at 1 Hz
    assert two.state.history.capacity == 300  # 10 minutes at 0.5 Hz
    clock.advance(700)  # into a job
    samples = []
    for _ in range(5):
        clock.advance(1.0)
        sample = one.sample()
        samples.append(sample)
        fleet.on_sample("gpu001", sample)
    state = one.state
    assert state.sample is samples[-1]
    assert state.sample_at == clock.t
    assert len(state.history) == 5
    gpus = samples[-1].probes.gpu
    assert gpus is not None
    mean = sum(g.util_pct or 0 for g in gpus.gpus) / len(gpus.gpus)
    assert state.history.node_series("gpu_util_pct")[-1] == pytest.approx(mean, rel=1e-6)
    assert state.history.gpu_series(3, "temp_c")[-1] == gpus.gpus[3].temp_c
    rx = state.history.node_series("ib_rx_bytes_s")
    assert rx[-1] == pytest.approx(state.rates.ib_total("rcv_bytes"), rel=1e-6)
    assert rx[-1] > 1e9
    assert state.history.times()[-1] == clock.t


def test_history_keeps_each_gpus_series_from_its_own_fields() -> None:
    fleet, feeds, clock = make_fleet(1)
    feeds[0].start()
    samples = []
    for _ in range(3):
        clock.advance(1.0)
        samples.append(feeds[0].sample())
        fleet.on_sample("gpu001", samples[-1])
    history = feeds[0].state.history
    for sample_at, sample in enumerate(samples):
        assert sample.probes.gpu is not None
        for gpu in sample.probes.gpu.gpus:
            for name in GPU_SERIES:
                value = getattr(gpu, name)
                assert history.gpu_series(gpu.index, name)[sample_at] == pytest.approx(
                    value, rel=1e-6
                ), (gpu.index, name)


def test_the_collector_refuses_another_major_even_after_reading_this_one() -> None:
    fleet, feeds, _ = make_fleet(1)
    config = ClusterConfig(
        name="t",
        path=Path("cluster.toml"),
        ssh=SshSettings(user="u", identity_file=None, known_hosts=Path("/dev/null")),
        agent=AgentSettings(),
        sites=(Site("dc1"),),
        nodes=(spec("gpu001"),),
        health=HealthThresholds(),
    )
    collector = Collector(config, fleet, stream_agents=False)
    line = protocol.encode(feeds[0].sample_record()).rstrip(b"\n")
    collector._on_line("gpu001", line)
    assert collector.lines_decoded == 1
    collector._on_line("gpu001", line.replace(b'"schema":"1.0"', b'"schema":"2.0"'))
    assert (collector.lines_decoded, collector.lines_refused) == (1, 1)
    assert "agent speaks schema 2.0" in (fleet.nodes["gpu001"].agent_error or "")
    collector._on_line("gpu001", line.replace(b'"schema":"1.0"', b'"schema":"1.7"'))  # a minor
    assert (collector.lines_decoded, collector.lines_refused) == (2, 1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="history_s"):
        Fleet([], HealthThresholds(), history_s=0)
    with pytest.raises(ValueError, match="coalesce_s"):
        Fleet([], HealthThresholds(), coalesce_s=-1)


# --- 1,000 nodes: memory and per-sample cost --------------------------------------------------

NODES = 1000


def real_lines(clock: FakeClock, seeds: int, ticks: int) -> tuple[list[bytes], list[list[bytes]]]:
    """Hello and sample lines of a few sim nodes, as agents would write them."""
    fleet = Fleet([spec(f"s{i}") for i in range(seeds)], HealthThresholds(), clock=clock)
    feeds = [SimFeed(fleet, f"s{i}", clock, 100 + i) for i in range(seeds)]
    hellos = [protocol.encode(feed.hello_record()) for feed in feeds]
    ticks_lines = []
    for _ in range(ticks):
        clock.advance(1.0)
        ticks_lines.append([protocol.encode(feed.sample_record()) for feed in feeds])
    return hellos, ticks_lines


@pytest.mark.slow
def test_a_thousand_nodes_fit_the_memory_budget_and_apply_fast() -> None:
    clock = FakeClock()
    hellos, ticks = real_lines(clock, seeds=8, ticks=4)
    decode_hello = msgspec.json.Decoder(schema.Hello)
    decode_sample = msgspec.json.Decoder(schema.Sample)
    specs = [spec(f"gpu{i:04d}") for i in range(NODES)]
    clock.t -= len(ticks)  # replay the ticks on the fleet's clock
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fleet = Fleet(specs, HealthThresholds(), clock=clock)
        for i, node in enumerate(specs):
            fleet.on_link(node.name, LinkState.STREAMING)
            fleet.on_hello(node.name, decode_hello.decode(hellos[i % 8]))
        for lines in ticks[:2]:  # the second sample fills the rates; rings are full-size
            clock.advance(1.0)
            for i, node in enumerate(specs):
                # Decoded per node: every node holds its own objects, as in production.
                fleet.on_sample(node.name, decode_sample.decode(lines[i % 8]))
        fleet.flush()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    rings = sum(node.history.nbytes for node in fleet.nodes.values())
    # The rings are allocated in full (600 rows) by the first sample and never grow
    # (test_history checks that), so this is the memory of 1,000 nodes x 600 samples.
    assert all(node.history.capacity == 600 for node in fleet.nodes.values())
    assert rings == NODES * 600 * (37 * 4 + 8)
    print(
        f"\n1,000 nodes: {used / 1e6:.1f} MB in all, of which history rings "
        f"{rings / 1e6:.1f} MB ({rings / NODES / 1e3:.1f} kB a node)"
    )
    assert used < 200e6
    assert all(node.health is Severity.OK for node in fleet.nodes.values())

    # Per-sample cost: two more ticks of the whole fleet.
    batches = [[decode_sample.decode(lines[i % 8]) for i in range(NODES)] for lines in ticks[2:]]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for batch in batches:
        clock.advance(1.0)
        for node, sample in zip(specs, batch, strict=True):
            fleet.on_sample(node.name, sample)
    calls = NODES * len(batches)
    cpu_us = (time.process_time() - cpu0) / calls * 1e6
    wall_us = (time.perf_counter() - wall0) / calls * 1e6
    print(f"on_sample: {cpu_us:.0f} us CPU ({wall_us:.0f} us wall) per sample, 8 GPUs, 4-8 ports")
    assert cpu_us < 2000
