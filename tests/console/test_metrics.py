"""The Prometheus endpoint: a fleet fed by simulated agents in real wire records and a real
control plane over a SQLite store, scraped over HTTP from the real server on loopback and read
back with prometheus_client's own parsers. Names, labels and values are checked against the
samples; docs/metrics.md lists exactly what is emitted."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.console.lifecycle.conftest import clock, world
from tests.console.lifecycle.world import POOL, S, World
from tests.console.roles import TEST_ROLES
from tests.console.test_health import FakeClock, Record, SimFeed, run, spec
from tidectl.agents.probes.simfaults import Fault
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import NodeSpec
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.plane import ControlPlane
from tidectl.console.fleet import Fleet
from tidectl.console.metrics import FleetCollector
from tidectl.console.metrics_server import MetricsAddressError, MetricsServer, parse_address
from tidectl.console.model import LinkState, Severity
from tidectl.console.thresholds import HealthThresholds

__all__ = ["clock", "world"]  # the lifecycle tests' fixtures, used here

ROOT = Path(__file__).resolve().parents[2]
Families = dict[str, Metric]


def cloud_spec(name: str) -> NodeSpec:
    return replace(spec(name, site="cloud"), labels={"pool": "gpu", "instance": "i-1"})


def fleet_of(*specs: NodeSpec) -> tuple[Fleet, dict[str, SimFeed], FakeClock]:
    clock = FakeClock()
    fleet = Fleet(list(specs), HealthThresholds(), clock=clock)
    feeds = {s.name: SimFeed(fleet, s.name, clock, seed) for seed, s in enumerate(specs, 1)}
    return fleet, feeds, clock


async def scrape(source: FleetCollector, accept: str | None = None) -> tuple[str, str]:
    """The body and content type of one GET /metrics to a real server on 127.0.0.1."""
    async with MetricsServer(source, "127.0.0.1:0") as server:
        request = urllib.request.Request(server.url, headers={"Accept": accept} if accept else {})

        def get() -> tuple[str, str]:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read().decode(), response.headers["Content-Type"]

        return await asyncio.to_thread(get)


async def families_of(source: FleetCollector) -> Families:
    text, content_type = await scrape(source)
    assert content_type.startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(families: Families, name: str, **match: str) -> dict[tuple[str, ...], float]:
    """Samples of family ``name`` whose labels include ``match``, keyed by their other labels'
    values in label-name order."""
    found: dict[tuple[str, ...], float] = {}
    for sample in families[name].samples:
        if all(sample.labels.get(k) == v for k, v in match.items()):
            key = tuple(v for k, v in sorted(sample.labels.items()) if k not in match)
            assert key not in found, f"duplicate series {sample}"
            found[key] = sample.value
    return found


def nodes_in(families: Families, name: str) -> set[str]:
    return {sample.labels["node"] for sample in families[name].samples}


# --- the fleet ------------------------------------------------------------------------------


async def test_every_gpu_port_and_mount_is_reported_with_its_labels_and_its_value() -> None:
    fleet, feeds, clock = fleet_of(spec("gpu001", site="dc1"), cloud_spec("burst-1"))
    for feed in feeds.values():
        feed.start()
    run(feeds.values(), clock, 3)
    families = await families_of(FleetCollector(fleet))
    sample = fleet.nodes["gpu001"].sample
    assert sample is not None
    gpus = sample.probes.gpu
    ports = sample.probes.ib
    mounts = sample.probes.storage
    host = sample.probes.host
    assert gpus is not None and ports is not None and mounts is not None and host is not None
    assert len(gpus.gpus) == 8 and len(ports.ports) >= 2 and mounts.mounts

    on_prem = {"node": "gpu001", "site": "dc1", "pool": ""}
    assert values(families, "tidectl_node_up", **on_prem) == {(): 1.0}
    assert values(families, "tidectl_node_up", node="burst-1", site="cloud", pool="gpu") == {
        (): 1.0
    }
    assert values(families, "tidectl_node_memory_total_bytes", **on_prem) == {
        (): host.mem_total_bytes
    }
    assert values(families, "tidectl_gpu_temperature_celsius", **on_prem) == {
        (str(g.index),): g.temp_c for g in gpus.gpus
    }
    assert values(families, "tidectl_gpu_power_watts", **on_prem) == {
        (str(g.index),): g.power_w for g in gpus.gpus
    }
    assert values(families, "tidectl_gpu_utilisation_ratio", **on_prem) == pytest.approx(
        {(str(g.index),): (g.util_pct or 0) / 100 for g in gpus.gpus}
    )
    assert values(families, "tidectl_gpu_memory_used_bytes", **on_prem) == {
        (str(g.index),): g.mem_used_bytes for g in gpus.gpus
    }
    assert values(families, "tidectl_gpu_ecc_errors", **on_prem, type="double_bit") == {
        (str(g.index),): g.ecc_dbe_volatile for g in gpus.gpus
    }
    assert values(families, "tidectl_ib_port_state", **on_prem) == {
        (p.hca, str(p.port)): p.state for p in ports.ports
    }
    assert values(families, "tidectl_ib_port_transmit_bytes", **on_prem) == {
        (p.hca, str(p.port)): p.xmit_bytes for p in ports.ports
    }
    assert values(families, "tidectl_ib_port_errors", **on_prem, counter="port_rcv_errors") == {
        (p.hca, str(p.port)): p.counters.port_rcv_errors for p in ports.ports
    }
    assert values(families, "tidectl_filesystem_used_bytes", **on_prem) == {
        (m.mountpoint,): m.used_bytes for m in mounts.mounts
    }
    # Counters come out under their _total sample names, as Prometheus wants.
    assert {s.name for s in families["tidectl_ib_port_errors"].samples} == {
        "tidectl_ib_port_errors_total"
    }
    # The cloud node carries its pool and site on every series, as the on-prem one does.
    assert len(values(families, "tidectl_gpu_temperature_celsius", node="burst-1", pool="gpu")) == 8


async def test_a_critical_finding_is_health_3_and_its_xid_is_counted_on_its_gpu() -> None:
    fleet, feeds, clock = fleet_of(spec("gpu001"), spec("gpu002"))
    for feed in feeds.values():
        feed.start()
    run(feeds.values(), clock, 3)
    feeds["gpu001"].node.inject(Fault("xid", gpu=3, code=79))
    run(feeds.values(), clock, 2)
    assert fleet.nodes["gpu001"].health is Severity.CRITICAL
    families = await families_of(FleetCollector(fleet))
    assert values(families, "tidectl_node_health") == {
        ("gpu001", "", "dc1"): 3.0,
        ("gpu002", "", "dc1"): 0.0,
    }
    assert values(families, "tidectl_node_findings", node="gpu001", severity="critical") == {
        ("", "dc1"): 1.0
    }
    xids = values(families, "tidectl_gpu_recent_xids", node="gpu001")
    assert xids[("3", "", "dc1")] == 1.0
    assert sum(xids.values()) == 1.0


async def test_a_stale_or_silent_node_keeps_up_and_health_but_no_sample_values() -> None:
    fleet, feeds, clock = fleet_of(spec("gpu001"), spec("gpu002"), spec("gpu003"))
    for name in ("gpu001", "gpu002"):
        feeds[name].start()
    run(feeds.values(), clock, 3)  # gpu003 never connects: no link, no sample
    # gpu002 falls silent; gpu001 goes on.
    run([feeds["gpu001"]], clock, 30)
    fleet.check_staleness()
    assert fleet.nodes["gpu002"].stale
    families = await families_of(FleetCollector(fleet))
    assert values(families, "tidectl_node_up") == {
        ("gpu001", "", "dc1"): 1.0,
        ("gpu002", "", "dc1"): 0.0,
        ("gpu003", "", "dc1"): 0.0,
    }
    health = values(families, "tidectl_node_health")
    assert health[("gpu002", "", "dc1")] == float(Severity.UNKNOWN)
    for name in ("tidectl_gpu_temperature_celsius", "tidectl_ib_port_state"):
        assert nodes_in(families, name) == {"gpu001"}, name
    for name in ("tidectl_node_load1", "tidectl_filesystem_used_bytes"):
        assert nodes_in(families, name) == {"gpu001"}, name
    # Streaming again: back.
    fleet.on_link("gpu002", LinkState.UNREACHABLE, "timed out")
    fleet.on_link("gpu002", LinkState.STREAMING)
    feeds["gpu002"].send()
    families = await families_of(FleetCollector(fleet))
    assert nodes_in(families, "tidectl_gpu_temperature_celsius") == {"gpu001", "gpu002"}


async def test_a_value_the_agent_could_not_read_is_left_out_not_reported_as_zero() -> None:
    fleet, feeds, clock = fleet_of(spec("gpu001"))
    feeds["gpu001"].start()

    def unreadable(record: Record) -> None:
        record["probes"]["gpu"]["gpus"][0]["temp_c"] = None
        record["probes"]["ib"] = {"error": "ibstat: no such device", "ports": []}

    clock.advance(1.0)
    feeds["gpu001"].send(unreadable)
    families = await families_of(FleetCollector(fleet))
    temps = values(families, "tidectl_gpu_temperature_celsius")
    assert len(temps) == 7 and ("0", "gpu001", "", "dc1") not in temps
    assert families["tidectl_ib_port_state"].samples == []
    assert len(values(families, "tidectl_gpu_power_watts")) == 8


# --- the lifecycle --------------------------------------------------------------------------


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n' + TEST_ROLES
    )
    config = replace(parse_config(text, tmp_path / "cluster.toml"), pools=(POOL,))
    yield ControlPlane(config, world.store, world.engine(), scheduler=world.scheduler)


async def test_lifecycle_counts_burn_rate_and_spend_come_from_the_store(
    plane: ControlPlane,
) -> None:
    ana = Caller("ana", Frontend.CLI)
    burst = await plane.burst(ana, "gpu", count=3)
    progress = await plane.wait(burst.nodes, {S.ACTIVE}, timeout_s=20)
    assert progress.done == 3
    await plane.drain(ana, sorted(burst.nodes)[:1], reason="metrics test")
    families = await families_of(FleetCollector(lifecycle=plane))
    counts = values(families, "tidectl_lifecycle_nodes", pool="gpu")
    assert counts[("active",)] == 2.0
    assert counts[("draining",)] + counts[("drained",)] == 1.0
    assert set(counts) == {(s.value,) for s in S if s is not S.TERMINATED}  # zeros too
    assert sum(counts.values()) == 3.0
    assert values(families, "tidectl_burn_rate_dollars_per_hour") == {
        ("gpu",): pytest.approx(plane.burn_rate("gpu"))
    }
    assert plane.burn_rate("gpu") == pytest.approx(3 * 24.0)
    spent = values(families, "tidectl_spend_dollars")[("gpu",)]
    assert 0 < spent <= plane.spend(pool="gpu")
    assert {s.name for s in families["tidectl_spend_dollars"].samples} == {
        "tidectl_spend_dollars_total"
    }


# --- the contract: docs/metrics.md ----------------------------------------------------------


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """docs/metrics.md's metrics table: name → (type, labels)."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    table = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(tidectl_\w+)` \| (\w+) \| ([\w, ]+) \|", table, re.MULTILINE)
    return {
        name: (kind, frozenset(label.strip() for label in labels.split(",")))
        for name, kind, labels in rows
    }


async def test_the_doc_lists_exactly_the_metrics_emitted_with_their_types_and_labels(
    plane: ControlPlane,
) -> None:
    await plane.burst(Caller("ana", Frontend.CLI), "gpu", count=1)
    fleet, feeds, clock = fleet_of(spec("gpu001"), cloud_spec("burst-1"))
    for feed in feeds.values():
        feed.start()
    run(feeds.values(), clock, 3)
    families = await families_of(FleetCollector(fleet, plane))
    emitted: dict[str, tuple[str, frozenset[str]]] = {}
    for family in families.values():
        assert family.samples, f"{family.name} has no samples in a full fleet"
        labels = {frozenset(sample.labels) for sample in family.samples}
        assert len(labels) == 1, f"{family.name} has series with different label sets"
        name = family.name + ("_total" if family.type == "counter" else "")
        emitted[name] = (family.type, labels.pop())
    doc = documented()
    assert len(doc) >= 25
    assert emitted == doc
    for name in emitted:
        assert name.startswith("tidectl_")


# --- the server -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:0", ("localhost", 0)),
        (" 10.1.2.3:80 ", ("10.1.2.3", 80)),
    ],
)
def test_an_address_is_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("9464", "has no host"),
        (":9464", "has no host"),
        ("127.0.0.1:metrics", "port 'metrics' is not a number"),
        ("127.0.0.1:70000", "outside 0-65535"),
        ("::1:9464", "IPv6 host in brackets"),
        ("[gpu01]:9464", "not an IPv6 address"),
    ],
)
def test_a_bad_address_is_refused_with_a_sentence(text: str, says: str) -> None:
    with pytest.raises(MetricsAddressError, match=re.escape(says)) as refused:
        parse_address(text)
    assert "HOST:PORT" in str(refused.value)


async def test_the_server_binds_only_its_address_answers_only_get_metrics_and_stops() -> None:
    fleet, _, _ = fleet_of(spec("gpu001"))
    async with MetricsServer(FleetCollector(fleet), "127.0.0.1:0") as server:
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        # Another loopback address of this machine: nothing listens there.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.2", port)

        def status(path: str, method: str = "GET") -> int:
            url = f"http://127.0.0.1:{port}{path}"
            request = urllib.request.Request(url, method=method)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return error.code

        assert await asyncio.to_thread(status, "/metrics?x=1") == 200
        assert await asyncio.to_thread(status, "/") == 404
        assert await asyncio.to_thread(status, "/metrics", "POST") == 405
        # A client that connects and says nothing does not hold the close up.
        reader, writer = await asyncio.open_connection(host, port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, port)


async def test_a_taken_port_is_refused_with_a_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fleet, _, _ = fleet_of(spec("gpu001"))
        server = MetricsServer(FleetCollector(fleet), f"127.0.0.1:{port}")
        with pytest.raises(MetricsAddressError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await server.start()


async def test_openmetrics_is_served_when_asked_and_parses() -> None:
    fleet, feeds, clock = fleet_of(spec("gpu001"))
    feeds["gpu001"].start()
    run(feeds.values(), clock, 2)
    text, content_type = await scrape(FleetCollector(fleet), "application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(text)}  # type: ignore[no-untyped-call]
    assert len(families["tidectl_gpu_temperature_celsius"].samples) == 8
    assert families["tidectl_ib_port_errors"].type == "counter"


def test_the_collector_also_works_in_a_plain_registry() -> None:
    fleet, feeds, clock = fleet_of(spec("gpu001"))
    feeds["gpu001"].start()
    run(feeds.values(), clock, 2)
    registry = CollectorRegistry()
    registry.register(FleetCollector(fleet))
    text = generate_latest(registry).decode()
    assert 'tidectl_node_up{node="gpu001",pool="",site="dc1"} 1.0' in text.splitlines()
    # An empty fleet still names every family (a dashboard's queries stay valid).
    empty = FleetCollector(Fleet([], HealthThresholds()))
    assert [m.name for m in empty.collect()] == [m.name for m in registry.collect()]
    assert all(not m.samples for m in empty.collect())
    with pytest.raises(ValueError, match="needs a fleet"):
        FleetCollector()
