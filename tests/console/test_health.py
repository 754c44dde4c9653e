"""Health rules against the real simulated node: every sim fault gives its finding, and
clearing it gives OK back; rules the sim cannot trigger get real-shaped records edited in
the one field that matters. docs/health.md and the rules name the same codes.

Records take the real path: the sim probes build the sections, ``protocol.encode`` writes the
JSON line an agent would, and msgspec decodes it into ``schema.Sample`` as the collector does.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidectl.agents import protocol
from tidectl.agents.probes.sim import SimNode
from tidectl.agents.probes.simfaults import Fault
from tidectl.console import health, schema
from tidectl.console.config.model import NodeSpec
from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.model import Finding, LinkState, Severity
from tidectl.console.thresholds import HealthThresholds

ROOT = Path(__file__).resolve().parents[2]
T0 = 5000.0
WALL0 = 1_764_363_000.0
SECTIONS = ("host", "gpu", "ib", "storage", "net")
Record = dict[str, Any]
Mutate = Callable[[Record], None]

_DECODE_SAMPLE = msgspec.json.Decoder(schema.Sample)
_DECODE_HELLO = msgspec.json.Decoder(schema.Hello)


class FakeClock:
    """Monotonic time that moves only when a test says so; ``wall`` moves with it."""

    def __init__(self, start: float = T0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return WALL0 + (self.t - T0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


def spec(name: str, site: str = "dc1") -> NodeSpec:
    return NodeSpec(name=name, address="127.0.0.1", port=22, site=site, user="root")


class SimFeed:
    """One simulated node speaking to a Fleet in real wire records, on a shared fake clock."""

    def __init__(
        self, fleet: Fleet, name: str, clock: FakeClock, seed: int = 7, **sim: Any
    ) -> None:
        self.fleet = fleet
        self.name = name
        self.clock = clock
        self.node = SimNode(seed, name, clock, clock.wall, **sim)
        self.seq = 0
        self.interval_s = 1.0

    def hello_record(self) -> Record:
        facts = {section: getattr(self.node, section + "_facts")() for section in SECTIONS}
        return protocol.hello("0.1.0", self.clock.wall(), self.interval_s, facts, self.node.seed)

    def sample_record(self) -> Record:
        self.seq += 1
        probes = {section: getattr(self.node, section + "_sample")() for section in SECTIONS}
        agent = {"cpu_ms": 0.3, "duration_ms": 0.4, "max_rss_bytes": 30_000_000}
        return protocol.sample(
            seq=self.seq, ts=self.clock.wall(), mono=self.clock.t, agent=agent, probes=probes
        )

    def hello(self) -> schema.Hello:
        return _DECODE_HELLO.decode(protocol.encode(self.hello_record()))

    def sample(self, mutate: Mutate | None = None) -> schema.Sample:
        record = self.sample_record()
        if mutate is not None:
            mutate(record)
        return _DECODE_SAMPLE.decode(protocol.encode(record))

    def start(self) -> NodeState:
        self.fleet.on_link(self.name, LinkState.STREAMING)
        self.fleet.on_hello(self.name, self.hello())
        return self.state

    def line(self, mutate: Mutate | None = None) -> bytes:
        """The next sample as the agent's line (no newline, as the collector splits it)."""
        record = self.sample_record()
        if mutate is not None:
            mutate(record)
        return protocol.encode(record).rstrip(b"\n")

    def send(self, mutate: Mutate | None = None) -> NodeState:
        """The next sample into the fleet, with its line, as the collector hands it over."""
        line = self.line(mutate)
        self.fleet.on_sample(self.name, _DECODE_SAMPLE.decode(line), line)
        return self.state

    @property
    def state(self) -> NodeState:
        return self.fleet.nodes[self.name]


def run(
    feeds: Iterable[SimFeed],
    clock: FakeClock,
    seconds: float,
    step: float = 1.0,
    mutate: Mutate | None = None,
) -> None:
    """Every feed sends one sample per ``step`` for ``seconds`` of the fake clock."""
    feeds = list(feeds)
    for _ in range(round(seconds / step)):
        clock.advance(step)
        for feed in feeds:
            feed.send(mutate)


def single(
    thresholds: HealthThresholds | None = None, seed: int = 7, **sim: Any
) -> tuple[SimFeed, FakeClock]:
    clock = FakeClock()
    fleet = Fleet([spec("gpu001")], thresholds or HealthThresholds(), clock=clock)
    feed = SimFeed(fleet, "gpu001", clock, seed, **sim)
    feed.start()
    run([feed], clock, 3)
    assert health_of(feed.state) is Severity.OK, feed.state.findings
    return feed, clock


def health_of(state: NodeState) -> Severity:
    """The node's health, read afresh (an assert on the attribute would narrow its type)."""
    return state.health


def codes(state: NodeState) -> dict[tuple[str, str | None], Severity]:
    return {(f.code, f.subject): f.severity for f in state.findings}


def finding(state: NodeState, code: str, subject: str | None = None) -> Finding:
    for item in state.findings:
        if item.code == code and (subject is None or item.subject == subject):
            return item
    raise AssertionError(f"no {code} {subject or ''} in {state.findings}")


# --- the simulated faults, each in and out --------------------------------------------------


@pytest.mark.parametrize(
    ("code", "severity", "meaning"),
    [(79, Severity.CRITICAL, "GPU has fallen off the bus"), (13, Severity.WARN, "graphics")],
)
def test_xid_is_held_then_expires(code: int, severity: Severity, meaning: str) -> None:
    feed, clock = single()
    feed.node.inject(Fault("xid", gpu=3, code=code))
    run([feed], clock, 12)
    state = feed.state
    seen = finding(state, "gpu.xid", "gpu3")
    assert seen.severity is severity
    assert health_of(state) is severity
    assert f"GPU 3 reported XID {code} ({meaning}" in seen.message
    assert "12 s ago" in seen.message
    # One-shot: the event was in one sample only, yet the finding holds...
    run([feed], clock, HealthThresholds().xid_hold_s - 30, step=10)
    assert finding(feed.state, "gpu.xid").severity is severity
    # ...until xid_hold_s has passed.
    run([feed], clock, 60, step=10)
    assert health_of(feed.state) is Severity.OK, feed.state.findings


def test_repeated_xids_are_counted_and_ignored_codes_never_show() -> None:
    feed, clock = single(HealthThresholds(xid_ignored_codes=(43,)))
    for _ in range(3):
        feed.node.inject(Fault("xid", gpu=2, code=31))
        run([feed], clock, 2)
    feed.node.inject(Fault("xid", gpu=2, code=43))
    run([feed], clock, 2)
    found = [f for f in feed.state.findings if f.code == "gpu.xid"]
    assert len(found) == 1
    assert "XID 31" in found[0].message
    assert "(3 times in the last 10 min)" in found[0].message


def test_ecc_dbe_is_critical_and_stays_until_the_gpu_is_reset() -> None:
    feed, clock = single()
    feed.node.inject(Fault("ecc_dbe", gpu=1))
    run([feed], clock, 2)
    state = feed.state
    assert codes(state)["gpu.ecc_dbe", "gpu1"] is Severity.CRITICAL
    assert "1 uncorrectable (double-bit) ECC error" in finding(state, "gpu.ecc_dbe").message
    remap = finding(state, "gpu.remapped_rows", "gpu1")
    assert remap.severity is Severity.WARN
    assert "reset the GPU" in remap.message
    # The sim's clear is what a GPU reset does to the pending flag; the counters keep what
    # they counted, as NVML's do until the driver reloads: the node stays critical.
    feed.node.clear()
    run([feed], clock, 2)
    state = feed.state
    assert health_of(state) is Severity.CRITICAL
    assert "pending" not in finding(state, "gpu.remapped_rows").message
    assert "1 row remapped" in finding(state, "gpu.remapped_rows").message


def test_ecc_dbe_rising_lifetime_count_is_critical_even_with_volatile_zero() -> None:
    feed, clock = single()
    feed.node.inject(Fault("ecc_dbe", gpu=4))

    def driver_reloaded(record: Record) -> None:
        for gpu in record["probes"]["gpu"]["gpus"]:
            gpu["ecc_dbe_volatile"] = 0

    run([feed], clock, 1, mutate=driver_reloaded)
    message = finding(feed.state, "gpu.ecc_dbe", "gpu4").message
    assert "new uncorrectable (double-bit) ECC errors (lifetime 1)" in message


def test_ecc_sbe_storm_warns_then_fades_after_clear() -> None:
    feed, clock = single()
    feed.node.inject(Fault("ecc_sbe", gpu=2, rate=50))
    run([feed], clock, 30)
    sbe = finding(feed.state, "gpu.ecc_sbe_rate", "gpu2")
    assert sbe.severity is Severity.WARN
    assert "single-bit ECC errors an hour (warn at 100)" in sbe.message
    feed.node.clear(kind="ecc_sbe")
    run([feed], clock, 600, step=30)
    assert finding(feed.state, "gpu.ecc_sbe_rate").severity is Severity.WARN  # still fading
    run([feed], clock, 1800, step=30)
    assert health_of(feed.state) is Severity.OK, feed.state.findings


def test_a_few_corrected_errors_are_not_a_storm() -> None:
    feed, clock = single()
    feed.node.inject(Fault("ecc_sbe", gpu=2, rate=1))
    run([feed], clock, 3)  # three corrected errors
    feed.node.clear()
    run([feed], clock, 60, step=5)
    assert "gpu.ecc_sbe_rate" not in {f.code for f in feed.state.findings}


def test_lost_gpu_is_missing_and_comes_back() -> None:
    feed, clock = single()
    feed.node.inject(Fault("gpu_lost", gpu=5))
    run([feed], clock, 1)
    missing = finding(feed.state, "gpu.missing")
    assert missing.severity is Severity.CRITICAL
    assert missing.subject == "gpu5"
    assert missing.message.startswith("1 of 8 GPUs missing (GPU 5)")
    feed.node.clear()
    run([feed], clock, 1)
    assert health_of(feed.state) is Severity.OK


def test_hot_gpu_warns_then_goes_critical_and_cools_down() -> None:
    feed, clock = single()
    feed.node.inject(Fault("hot", gpu=0, temp=95))
    severities = []
    for _ in range(30):
        run([feed], clock, 10, step=5)
        temps = [f.severity for f in feed.state.findings if f.code == "gpu.temp"]
        severities.extend(temps)
        if temps == [Severity.CRITICAL]:
            break
    assert Severity.WARN in severities  # it heats up through the warn band (a 30 s lag)
    assert severities[-1] is Severity.CRITICAL
    message = finding(feed.state, "gpu.temp", "gpu0").message
    assert re.search(r"GPU 0 is at 9[2-5] °C \(critical at 92 °C\)", message), message
    feed.node.clear(kind="hot")
    run([feed], clock, 300, step=5)
    assert health_of(feed.state) is Severity.OK, feed.state.findings


def test_ib_port_down_is_critical_and_its_link_downed_is_held() -> None:
    thresholds = HealthThresholds(ib_link_downed_hold_s=120)
    feed, clock = single(thresholds)
    port = feed.node.ports[2]
    feed.node.inject(Fault("ib_down", port=port, phys="polling"))
    run([feed], clock, 2)
    down = finding(feed.state, "ib.port_down", port)
    assert down.severity is Severity.CRITICAL
    assert f"{port} is DOWN (physical state Polling): no link partner" in down.message
    flap = finding(feed.state, "ib.link_downed", port)
    assert flap.severity is Severity.WARN
    assert "went down 1 time" in flap.message
    feed.node.clear()
    run([feed], clock, 2)
    assert "ib.port_down" not in {f.code for f in feed.state.findings}
    assert health_of(feed.state) is Severity.WARN  # the flap is still held
    run([feed], clock, 120, step=10)
    assert health_of(feed.state) is Severity.OK, feed.state.findings


def test_a_flapping_link_adds_up_while_held() -> None:
    feed, clock = single()
    port = feed.node.ports[0]
    for _ in range(2):
        feed.node.inject(Fault("ib_down", port=port))
        run([feed], clock, 5)
        feed.node.clear()
        run([feed], clock, 30, step=5)
    flap = finding(feed.state, "ib.link_downed", port)
    assert re.search(r"went down 2 times in the last 10 min, last 3\d s ago", flap.message)
    assert "ib.port_down" not in {f.code for f in feed.state.findings}


def test_symbol_errors_warn_then_critical_with_rcv_errors() -> None:
    feed, clock = single()
    port = feed.node.ports[0]
    feed.node.inject(Fault("symbol_errors", port=port, rate=20))  # 1,200 a minute
    run([feed], clock, 5)
    assert codes(feed.state)["ib.symbol_errors", port] is Severity.WARN
    run([feed], clock, 180, step=5)
    state = feed.state
    symbols = finding(state, "ib.symbol_errors", port)
    assert symbols.severity is Severity.CRITICAL
    assert re.search(
        r"logs 1,[01]\d\d symbol errors a minute \(critical at 1,000\)", symbols.message
    )
    rcv = finding(state, "ib.rcv_errors", port)  # a tenth of them corrupt packets
    assert rcv.severity is Severity.WARN
    assert re.search(r"logs 1[01]\d receive errors", rcv.message), rcv.message
    feed.node.clear()
    run([feed], clock, 600, step=10)
    assert health_of(feed.state) is Severity.OK, feed.state.findings


@pytest.mark.parametrize(("pct", "severity"), [(99.5, Severity.CRITICAL), (93.0, Severity.WARN)])
def test_full_disk(pct: float, severity: Severity) -> None:
    feed, clock = single()
    feed.node.inject(Fault("disk_full", mount="/scratch", pct=pct))
    run([feed], clock, 1)
    full = finding(feed.state, "storage.full", "/scratch")
    assert full.severity is severity
    assert f"/scratch has used {pct:.1f} % of its space" in full.message
    feed.node.clear()
    run([feed], clock, 1)
    assert health_of(feed.state) is Severity.OK, feed.state.findings


def test_inodes_fill_up_too() -> None:
    feed, _ = single()

    def inodes(record: Record) -> None:
        for mount in record["probes"]["storage"]["mounts"]:
            if mount["mountpoint"] == "/home":
                mount["inodes_used"] = int(mount["inodes_total"] * 0.95)

    full = finding(feed.send(inodes), "storage.full", "/home")
    assert full.severity is Severity.WARN
    assert "/home has used 95.0 % of its inodes (warn at 90 %)" in full.message


def test_stale_mount_is_critical() -> None:
    feed, clock = single()
    feed.node.inject(Fault("stale_mount", mount="/home"))
    run([feed], clock, 1)
    stale = finding(feed.state, "storage.stale_mount", "/home")
    assert stale.severity is Severity.CRITICAL
    assert stale.message.startswith("/home (nfs4) does not answer: statvfs(/home)")
    feed.node.clear()
    run([feed], clock, 1)
    assert health_of(feed.state) is Severity.OK


def test_fault_file_errors_are_agent_errors(tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    feed, clock = single(faults_path=str(faults))
    faults.write_text("xidd gpu=3\n")
    run([feed], clock, 1)
    error = finding(feed.state, "agent.error", "faults")
    assert error.severity is Severity.WARN
    assert "unknown fault kind 'xidd'" in error.message
    faults.write_text("")
    run([feed], clock, 1)
    assert health_of(feed.state) is Severity.OK


def test_a_healthy_node_stays_ok_through_jobs_and_gaps() -> None:
    """No false alarms: an hour of a busy simulated node (jobs, checkpoints, idle gaps)."""
    for seed in (1, 2, 3):
        feed, clock = single(seed=seed)
        run([feed], clock, 3600, step=10)
        assert feed.state.findings == [], (seed, feed.state.findings)
        assert len({round(u) for u in feed.state.history.node_series("gpu_util_pct")}) > 2


# --- rules the sim has no fault for: one field edited in a real record -----------------------


def gpu_field(index: int, **fields: Any) -> Mutate:
    def mutate(record: Record) -> None:
        for gpu in record["probes"]["gpu"]["gpus"]:
            if gpu["index"] == index:
                gpu.update(fields)

    return mutate


def test_power_over_the_limit_warns() -> None:
    feed, _ = single()
    state = feed.send(gpu_field(2, power_w=760.0))
    power = finding(state, "gpu.power", "gpu2")
    assert power.severity is Severity.WARN
    assert "GPU 2 draws 760 W, over its 700 W limit (warn above 102%)" in power.message
    assert feed.send(gpu_field(2, power_w=700.0)).health is Severity.OK


def test_remapping_failure_is_critical() -> None:
    feed, _ = single()
    state = feed.send(gpu_field(6, remapped_rows_failure=True))
    assert codes(state)["gpu.remapped_rows", "gpu6"] is Severity.CRITICAL
    assert "replace the GPU" in finding(state, "gpu.remapped_rows").message


def test_nvlinks_down_warn() -> None:
    feed, _ = single()
    state = feed.send(gpu_field(3, nvlink={"up": 16, "total": 18}))
    assert "GPU 3 has 16 of 18 NVLinks up" in finding(state, "gpu.nvlink", "gpu3").message


def test_no_driver_means_every_gpu_missing() -> None:
    feed, _ = single()

    def driver_gone(record: Record) -> None:
        record["probes"]["gpu"] = {"source": None, "gpus": [], "no_driver": "no libnvidia-ml"}

    missing = finding(feed.send(driver_gone), "gpu.missing")
    assert missing.severity is Severity.CRITICAL
    assert missing.message.startswith("8 of 8 GPUs missing (GPU 0, GPU 1,")
    assert "the driver is gone (no libnvidia-ml)" in missing.message


def test_a_failed_probe_is_an_agent_error_and_not_a_missing_gpu() -> None:
    feed, _ = single()

    def gpu_timed_out(record: Record) -> None:
        record["probes"]["gpu"] = {"error": "nvmlInit took 5 s", "timed_out": True}

    state = feed.send(gpu_timed_out)
    assert [(f.code, f.subject, f.severity) for f in state.findings] == [
        ("agent.error", "gpu", Severity.WARN)
    ]
    assert state.findings[0].message == "The gpu probe did not finish in time: nvmlInit took 5 s"


def test_nic_errors_warn() -> None:
    feed, clock = single()

    def errors(record: Record) -> None:
        nic = record["probes"]["net"]["nics"]["eth0"]
        nic["rx_errors"] = 1000 + int((clock.t - T0) * 5)  # 300 a minute

    run([feed], clock, 60, mutate=errors)
    net = finding(feed.state, "net.errors", "eth0")
    assert net.severity is Severity.WARN
    assert re.search(r"eth0 logs \d{3} errors a minute \(warn at 100\)", net.message)


def test_ib_rate_below_the_peers_is_degraded() -> None:
    clock = FakeClock()
    names = [f"gpu{i:03d}" for i in range(1, 5)]
    fleet = Fleet([spec(n) for n in names], HealthThresholds(), clock=clock)
    feeds = [SimFeed(fleet, name, clock, seed) for seed, name in enumerate(names, 1)]
    for feed in feeds:
        feed.start()
    run(feeds, clock, 2)
    slow = feeds[2]
    port = slow.node.ports[1]

    def trained_down(record: Record) -> None:
        hca, number = port.split("/")
        for item in record["probes"]["ib"]["ports"]:
            if item["hca"] == hca and item["port"] == int(number):
                item.update(rate="200 Gb/sec (4X HDR)", rate_gbps=200.0)

    state = slow.send(trained_down)
    degraded = finding(state, "ib.rate_degraded", port)
    assert degraded.severity is Severity.WARN
    total = sum(len(f.node.ports) for f in feeds)
    assert (
        f"{port} runs at 200 Gb/sec (4X HDR), below the 400 Gb/sec (4X NDR) of "
        f"{total - 1} of {total} peer ports" in degraded.message
    )
    assert all(f.state.health is Severity.OK for f in feeds if f is not slow)
    assert slow.send().health is Severity.OK


def test_peer_rates_group_by_hca_model_and_ties_go_to_the_faster() -> None:
    peers = health.PeerRates()
    ndr = ("InfiniBand", "MT4129")
    hdr = ("InfiniBand", "MT4123")
    assert peers.update("a", health.PortShare({(ndr, 400.0, "400"): 2}))
    assert peers.update("b", health.PortShare({(ndr, 200.0, "200"): 2, (hdr, 200.0, "200"): 4}))
    context = peers.context
    assert context.ib_rates[ndr] == health.PeerRate(400.0, "400", 2, 4)
    assert context.ib_rates[hdr] == health.PeerRate(200.0, "200", 4, 4)
    assert not peers.update("b", health.PortShare({(ndr, 200.0, "200"): 2, (hdr, 200.0, "200"): 4}))
    assert peers.update("a", health.PortShare())
    assert peers.context.ib_rates[ndr].gbps == 200.0
    # A node that joins at the common rate changes the counts, not the rate: no fleet-wide
    # re-evaluation is asked for (that would make a thousand joins cost a million rule runs).
    assert not peers.update("c", health.PortShare({(hdr, 200.0, "200"): 4}))
    assert peers.context.ib_rates[hdr] == health.PeerRate(200.0, "200", 8, 8)


# --- health of a node the console cannot hear -------------------------------------------------


def test_unknown_before_the_first_sample_and_when_the_link_is_down() -> None:
    clock = FakeClock()
    fleet = Fleet([spec("gpu001")], HealthThresholds(), clock=clock)
    state = fleet.nodes["gpu001"]
    assert health_of(state) is Severity.UNKNOWN
    assert [f.code for f in state.findings] == ["agent.link"]
    feed = SimFeed(fleet, "gpu001", clock)
    feed.start()
    assert health_of(state) is Severity.UNKNOWN  # a hello is not a sample
    feed.node.inject(Fault("disk_full", mount="/scratch"))
    feed.send()
    assert health_of(state) is Severity.CRITICAL
    fleet.on_link("gpu001", LinkState.UNREACHABLE, "connection refused by 127.0.0.1 port 22")
    assert health_of(state) is Severity.UNKNOWN
    assert state.findings[0].code == "agent.link"
    assert state.findings[0].message == (
        "The console is not streaming from this node's agent (unreachable): "
        "connection refused by 127.0.0.1 port 22."
    )
    # The last-known findings stay listed after the reason.
    assert [f.code for f in state.findings[1:]] == ["storage.full"]


def test_muted_codes_are_not_reported_but_silence_is_still_unknown() -> None:
    thresholds = HealthThresholds(muted_codes=("storage.full", "agent.link"))
    feed, _ = single(thresholds)
    feed.node.inject(Fault("disk_full", mount="/scratch"))
    assert feed.send().health is Severity.OK
    feed.fleet.on_link("gpu001", LinkState.UNREACHABLE, "timed out")
    assert feed.state.findings == []
    assert health_of(feed.state) is Severity.UNKNOWN


# --- the documentation names every code -------------------------------------------------------


def documented() -> dict[str, str]:
    text = (ROOT / "docs" / "health.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z]+\.[a-z_]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", text, re.M)
    return {code: threshold for code, _severity, _trigger, threshold in rows}


def test_every_rule_is_documented_and_every_documented_code_is_a_rule() -> None:
    docs = documented()
    assert sorted(docs) == sorted(health.CODES)
    assert len(health.CODES) >= 19


def test_documented_thresholds_exist_and_every_threshold_is_documented() -> None:
    fields = {f.name for f in dataclasses.fields(HealthThresholds)}
    named = {
        name for column in documented().values() for name in re.findall(r"`([a-z_]+)`", column)
    }
    assert named <= fields, named - fields
    text = (ROOT / "docs" / "health.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in text for name in fields), fields
    for code, meaning in health.XID_MEANINGS.items():
        assert f"| {code} | {meaning} |" in text


# --- quiet tests: skipping rules that have nothing to judge never hides a finding -------------


def _count_rule_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record which rules ``evaluate`` runs."""
    runs: list[str] = []

    def counted(code: str, rule: health.Rule) -> health.Rule:
        def run_rule(*args: Any) -> Iterable[Finding]:
            runs.append(code)
            return rule(*args)

        return run_rule

    plan = tuple(
        (quiet, tuple((code, counted(code, rule)) for code, rule in rules))
        for quiet, rules in health._PLAN
    )
    monkeypatch.setattr(health, "_PLAN", plan)
    return runs


def test_a_healthy_node_runs_only_the_rules_without_a_quiet_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed, clock = single()
    runs = _count_rule_runs(monkeypatch)
    run([feed], clock, 1)
    assert runs == ["gpu.missing"]
    # A hot GPU wakes its group up: every per-GPU rule runs, gpu.temp reports.
    runs.clear()
    state = feed.send(gpu_field(3, temp_c=88))
    assert set(runs) == {
        "gpu.missing", "gpu.ecc_dbe", "gpu.remapped_rows", "gpu.temp", "gpu.power", "gpu.nvlink"
    }  # fmt: skip
    assert codes(state) == {("gpu.temp", "gpu3"): Severity.WARN}


def test_every_rule_but_gpu_missing_has_a_quiet_test_and_each_runs_once() -> None:
    assert set(health.RULES) - set(health.QUIET) == {"gpu.missing"}
    planned = [code for _quiet, rules in health._PLAN for code, _rule in rules]
    assert sorted(planned) == sorted(health.RULES)


_BASE: dict[str, Any] = {}


def _base_records() -> tuple[bytes, Record, Record]:
    """A hello and two consecutive samples of a busy simulated node (built once)."""
    if not _BASE:
        clock = FakeClock()
        fleet = Fleet([spec("gpu001")], HealthThresholds(), clock=clock)
        feed = SimFeed(fleet, "gpu001", clock, seed=5)
        clock.advance(700)
        _BASE["hello"] = protocol.encode(feed.hello_record())
        _BASE["first"] = feed.sample_record()
        clock.advance(1.0)
        _BASE["second"] = feed.sample_record()
    return _BASE["hello"], _BASE["first"], _BASE["second"]


THRESHOLDS = [
    HealthThresholds(),
    # Misconfigured on purpose: critical below warn must still report critical.
    HealthThresholds(gpu_temp_warn_c=95.0, gpu_temp_critical_c=80.0),
    HealthThresholds(storage_full_warn_pct=99.0, storage_full_critical_pct=40.0),
    HealthThresholds(gpu_power_warn_fraction=0.5, muted_codes=("gpu.temp",)),
]


@st.composite
def edits(draw: st.DrawFn) -> list[Mutate]:
    """Edits of a real sample record around what the rules judge (failed sections last)."""
    out: list[Mutate] = []
    failed: list[Mutate] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["gpu", "gpu", "mount", "port", "section", "faults", "drop"]))
        index = draw(st.integers(0, 7))
        if kind == "gpu":
            field_name, value = draw(
                st.sampled_from(
                    [
                        ("temp_c", None), ("temp_c", 84.9), ("temp_c", 85), ("temp_c", 92),
                        ("temp_c", 81), ("power_w", None), ("power_w", 714.0), ("power_w", 714.1),
                        ("power_w", 360.0), ("power_limit_w", 0), ("power_limit_w", None),
                        ("ecc_dbe_volatile", 1), ("ecc_dbe_volatile", None),
                        ("ecc_dbe_aggregate", 3), ("remapped_rows_uncorrectable", 2),
                        ("remapped_rows_pending", True), ("remapped_rows_failure", True),
                        ("nvlink", {"up": 16, "total": 18}), ("nvlink", {"up": 0, "total": 0}),
                        ("nvlink", None),
                    ]
                )
            )  # fmt: skip
            out.append(gpu_field(index, **{field_name: value}))
        elif kind == "mount":
            pct = draw(st.sampled_from([10.0, 39.99, 40.0, 89.99, 90.0, 97.0, 99.5, 100.0]))
            what = draw(st.sampled_from(["space", "inodes", "stale"]))
            out.append(_mount_edit(index % 4, what, pct))
        elif kind == "port":
            out.append(
                _port_edit(
                    index % 7, draw(st.sampled_from([(1, 400.0), (4, 200.0), (None, 400.0)]))
                )
            )
        elif kind == "section":
            failed.append(_failed_section(draw(st.sampled_from(SECTIONS))))
        elif kind == "faults":
            out.append(_fault_file_errors)
        else:
            out.append(_lost_gpu(index))
    return out + failed


def _failed_section(name: str) -> Mutate:
    def mutate(record: Record) -> None:
        record["probes"][name] = {"error": "EIO"}

    return mutate


def _fault_file_errors(record: Record) -> None:
    record["probes"]["host"]["fault_errors"] = ["line 1: unknown fault kind '?'"]


def _lost_gpu(index: int) -> Mutate:
    def mutate(record: Record) -> None:
        gpus = record["probes"]["gpu"]["gpus"]
        record["probes"]["gpu"]["gpus"] = [g for g in gpus if g["index"] != index]

    return mutate


def _mount_edit(position: int, what: str, pct: float) -> Mutate:
    def mutate(record: Record) -> None:
        mounts = record["probes"]["storage"]["mounts"]
        mount = mounts[position % len(mounts)]
        if what == "stale":
            mount.update(stale=True, error="statvfs did not answer")
        elif what == "space":
            total = mount["used_bytes"] + mount["avail_bytes"]
            mount["used_bytes"] = int(total * pct / 100.0)
            mount["avail_bytes"] = total - mount["used_bytes"]
        else:
            mount["inodes_used"] = int(mount["inodes_total"] * pct / 100.0)

    return mutate


def _port_edit(position: int, state_rate: tuple[int | None, float]) -> Mutate:
    def mutate(record: Record) -> None:
        ports = record["probes"]["ib"]["ports"]
        port = ports[position % len(ports)]
        port.update(state=state_rate[0], rate_gbps=state_rate[1])

    return mutate


@settings(max_examples=120, deadline=None)
@given(
    mutations=edits(),
    thresholds=st.sampled_from(THRESHOLDS),
    link=st.sampled_from([LinkState.STREAMING] * 3 + [LinkState.STALE, LinkState.UNREACHABLE]),
    silent_s=st.sampled_from([0.0, 0.0, 5.0]),
    agent_error=st.sampled_from([None, None, "unreadable line"]),
)
def test_skipping_quiet_rules_never_hides_a_finding(
    mutations: list[Mutate],
    thresholds: HealthThresholds,
    link: LinkState,
    silent_s: float,
    agent_error: str | None,
) -> None:
    hello, first, second = _base_records()
    clock = FakeClock()
    fleet = Fleet([spec("gpu001")], thresholds, clock=clock)
    fleet.on_link("gpu001", LinkState.STREAMING)
    fleet.on_hello("gpu001", _DECODE_HELLO.decode(hello))
    fleet.on_sample("gpu001", _DECODE_SAMPLE.decode(protocol.encode(first)))
    record = msgspec.json.decode(protocol.encode(second))
    for mutate in mutations:
        mutate(record)
    clock.advance(1.0)
    fleet.on_sample("gpu001", _DECODE_SAMPLE.decode(protocol.encode(record)))
    fleet.on_link("gpu001", link, "timed out" if link is LinkState.UNREACHABLE else None)
    if agent_error is not None:
        fleet.on_agent_error("gpu001", agent_error)
    clock.advance(silent_s)
    node = fleet.nodes["gpu001"]
    context = fleet._peers.context
    skipped = health.evaluate(node, context, thresholds, clock.t)
    everything = health.evaluate(node, context, thresholds, clock.t, skip_quiet=False)
    assert skipped == everything


def test_the_link_finding_follows_the_links_state_and_error() -> None:
    feed, _ = single()
    fleet = feed.fleet
    for state, error in [
        (LinkState.UNREACHABLE, "connection refused"),
        (LinkState.UNREACHABLE, "timed out"),
        (LinkState.AUTH_FAILED, "timed out"),
    ]:
        fleet.on_link("gpu001", state, error)
        assert feed.state.findings[0].message == (
            f"The console is not streaming from this node's agent ({state.value}): {error}."
        )
