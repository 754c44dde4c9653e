"""Counter → rate: real sim samples, resets, 32/64-bit wraps, PMA saturation, gaps, smoothing,
and the short paths of the common step against the per-subject rates."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.console.test_health import FakeClock, Record, SimFeed, spec
from tidectl.console import schema
from tidectl.console.fleet import Fleet
from tidectl.console.rates import (
    ECC_TAU_S,
    ERROR_TAU_S,
    IB_ERROR_COUNTER_BITS,
    MAX_GAP_S,
    NIC_ERROR_COUNTERS,
    NodeRates,
    Rates,
    _smooth,
    counter_delta,
    counter_rate,
    disk_rates,
    ib_rates,
    step_seconds,
)
from tidectl.console.thresholds import HealthThresholds

TOP32 = 1 << 32
TOP64 = 1 << 64


# --- one counter ------------------------------------------------------------------------------


def test_increase_is_the_difference() -> None:
    assert counter_delta(100, 250) == 150
    assert counter_delta(7, 7) == 0
    assert counter_rate(100, 250, 2.0) == 75.0


def test_a_drop_is_a_reset_not_a_rate() -> None:
    assert counter_delta(5_000_000, 1_200) is None  # agent restarted, counters cleared
    assert counter_delta(TOP32 // 2, 10) is None  # mid-range: not a wrap
    assert counter_rate(5_000_000, 1_200, 1.0) is None


def test_a_drop_from_near_the_top_of_32_or_64_bits_is_a_wrap() -> None:
    assert counter_delta(TOP32 - 1_000, 3_000) == 4_000
    assert counter_delta(TOP64 - 10, 5) == 15
    # From near the top but to far above the bottom: a reset after all.
    assert counter_delta(TOP32 - 1_000, TOP32 // 2) is None


def test_a_saturated_pma_counter_has_no_rate() -> None:
    assert counter_delta(65_000, 65_535, saturates_at=65_535) is None
    assert counter_delta(65_535, 65_535, saturates_at=65_535) is None
    # A counter wider than the PMA's (the sim's, a driver's) is rated as usual past it.
    assert counter_delta(65_535, 70_000, saturates_at=65_535) == 4_465


def test_no_rate_without_two_readings_or_time() -> None:
    assert counter_rate(None, 5, 1.0) is None
    assert counter_rate(5, None, 1.0) is None
    assert counter_rate(5, 6, None) is None
    assert counter_rate(5, 6, 0.0) is None
    assert counter_rate(5, 6, -1.0) is None


def sample_at(mono: float | None, ts: float = 1e9) -> schema.Sample:
    return schema.Sample(schema="1.0", seq=1, ts=ts, mono=mono)


def test_step_seconds_uses_the_nodes_clock_and_refuses_gaps() -> None:
    assert step_seconds(None, sample_at(10.0)) is None
    assert step_seconds(sample_at(10.0), sample_at(11.5)) == 1.5
    assert step_seconds(sample_at(10.0), sample_at(10.0 + MAX_GAP_S)) == MAX_GAP_S
    assert step_seconds(sample_at(10.0), sample_at(10.0 + MAX_GAP_S + 1)) is None
    assert step_seconds(sample_at(50.0), sample_at(3.0)) is None  # rebooted: a new clock
    assert step_seconds(sample_at(None, 100.0), sample_at(None, 102.0)) == 2.0  # no mono
    assert step_seconds(sample_at(None, 100.0), sample_at(5.0, 101.0)) is None


# --- a node's rates from real sim samples -----------------------------------------------------


def feed() -> tuple[SimFeed, FakeClock]:
    clock = FakeClock()
    fleet = Fleet([spec("gpu001")], HealthThresholds(), clock=clock)
    return SimFeed(fleet, "gpu001", clock, seed=11), clock


def port_of(sample: schema.Sample, key: str) -> schema.IbPort:
    assert sample.probes.ib is not None
    return next(p for p in sample.probes.ib.ports if p.key == key)


def test_rates_from_two_real_samples() -> None:
    sim, clock = feed()
    clock.advance(700)  # into the node's first job: traffic on every port
    first = sim.sample()
    clock.advance(2.0)
    second = sim.sample()
    rates = NodeRates()
    rates.update(None, first)
    assert rates.ib_total("xmit_bytes") is None  # one reading: no rate yet
    assert all(v is None for per in rates.ib.values() for v in per.values())
    rates.update(first, second)
    assert rates.dt == 2.0
    key = sim.node.ports[0]
    now_words = port_of(second, key).counters.port_xmit_data
    was_words = port_of(first, key).counters.port_xmit_data
    assert now_words is not None and was_words is not None
    words = now_words - was_words
    assert rates.ib[key]["xmit_bytes"] == words * 4 / 2.0
    assert (rates.ib[key]["xmit_bytes"] or 0.0) > 1e9  # a training job's GB/s
    assert rates.ib[key]["symbol_error"] == 0.0
    assert set(rates.ib) == set(sim.node.ports)
    assert rates.ib_total("xmit_bytes") == pytest.approx(
        sum(r["xmit_bytes"] or 0.0 for r in rates.ib.values())
    )
    assert first.probes.net is not None and second.probes.net is not None
    rx = second.probes.net.nics["eth0"].rx_bytes or 0
    rx0 = first.probes.net.nics["eth0"].rx_bytes or 0
    assert rates.nic["eth0"]["rx_bytes"] == (rx - rx0) / 2.0
    assert rates.nic_total("rx_bytes") == rates.nic["eth0"]["rx_bytes"]
    assert set(rates.disk) == {"nvme0n1", "md0", "nvme1n1", "nvme2n1", "nvme3n1", "nvme4n1"}
    assert all(r["write_bytes"] is not None and r["write_bytes"] >= 0 for r in rates.disk.values())
    assert set(rates.gpu) == set(range(8))
    assert rates.gpu[0] == {"ecc_sbe": 0.0, "ecc_dbe": 0.0}


def edit_port(key: str, **counters: int) -> Callable[[Record], None]:
    hca, number = key.split("/")

    def mutate(record: Record) -> None:
        for port in record["probes"]["ib"]["ports"]:
            if port["hca"] == hca and port["port"] == int(number):
                port["counters"].update(counters)
                if "port_xmit_data" in counters:
                    port["xmit_bytes"] = counters["port_xmit_data"] * 4

    return mutate


def test_a_counter_reset_gives_no_rate_for_that_step_only() -> None:
    sim, clock = feed()
    key = sim.node.ports[0]
    rates = NodeRates()
    samples = []
    for step in range(4):
        clock.advance(1.0)
        # perfquery -R between the 2nd and 3rd sample: the counter restarts low.
        mutate = edit_port(key, port_xmit_data=1_000 + step) if step >= 2 else None
        samples.append(sim.sample(mutate))
    for before, after in zip([None, *samples[:-1]], samples, strict=True):
        rates.update(before, after)
        if after is samples[2]:
            assert rates.ib[key]["xmit_bytes"] is None  # the reset step
            assert rates.ib[sim.node.ports[1]]["xmit_bytes"] is not None  # others unaffected
    assert rates.ib[key]["xmit_bytes"] == 4.0  # one word a second after the reset


def test_a_32_bit_data_counter_that_wraps_is_rated_through_the_wrap() -> None:
    sim, clock = feed()
    key = sim.node.ports[1]
    clock.advance(1.0)
    first = sim.sample(edit_port(key, port_xmit_data=TOP32 - 1_000))
    clock.advance(0.5)
    second = sim.sample(edit_port(key, port_xmit_data=3_000))
    rates = NodeRates()
    rates.update(first, second)
    assert rates.ib[key]["xmit_bytes"] == 4_000 * 4 / 0.5


def test_a_saturated_symbol_error_counter_has_no_rate_and_no_spike() -> None:
    sim, clock = feed()
    key = sim.node.ports[0]
    rates = NodeRates()
    previous = None
    for value in (65_000, 65_535, 65_535, 0, 3):  # saturates, then cleared
        clock.advance(1.0)
        sample = sim.sample(edit_port(key, symbol_error=value))
        rates.update(previous, sample)
        previous = sample
        if value in (65_535, 0):
            assert rates.ib[key]["symbol_error"] is None
    assert rates.ib[key]["symbol_error"] == 3.0
    # Only the 3 errors after the clear were counted: no 65,535 spike, no negative step.
    per_min = rates.ib_errors[key]["symbol_error"] * 60
    assert per_min == pytest.approx(3 * 60 * (1 - math.exp(-1 / ERROR_TAU_S)))


def test_smoothed_error_rate_counts_one_error_as_one() -> None:
    sim, clock = feed()
    key = sim.node.ports[0]
    rates = NodeRates()
    previous = None
    for step in range(3):
        clock.advance(1.0)
        sample = sim.sample(edit_port(key, symbol_error=1 if step == 2 else 0))
        rates.update(previous, sample)
        previous = sample
    assert rates.ib[key]["symbol_error"] == 1.0  # "60 a minute" as an instant rate...
    per_min = rates.ib_errors[key]["symbol_error"] * 60
    assert per_min == pytest.approx(60 * (1 - math.exp(-1 / ERROR_TAU_S)))  # ...about 1 smoothed
    assert per_min < HealthThresholds().ib_symbol_errors_warn_per_min


def test_smoothed_rate_converges_to_a_steady_stream_and_decays_after() -> None:
    sim, clock = feed()
    key = sim.node.ports[0]
    rates = NodeRates()
    previous = None
    errors = 0
    for _ in range(60):  # 5 minutes at 20 a second, sampled every 5 s
        clock.advance(5.0)
        errors += 100
        sample = sim.sample(edit_port(key, symbol_error=errors))
        rates.update(previous, sample)
        previous = sample
    assert rates.ib_errors[key]["symbol_error"] * 60 == pytest.approx(1200, rel=0.01)
    for _ in range(200):
        clock.advance(10.0)
        sample = sim.sample(edit_port(key, symbol_error=errors))
        rates.update(previous, sample)
        previous = sample
    assert key not in rates.ib_errors  # decayed to nothing, and forgotten


def test_a_gap_forgets_the_averages_and_rates_nothing() -> None:
    sim, clock = feed()
    key = sim.node.ports[0]
    rates = NodeRates()
    clock.advance(1.0)
    first = sim.sample(edit_port(key, symbol_error=0))
    clock.advance(1.0)
    second = sim.sample(edit_port(key, symbol_error=50))
    rates.update(first, second)
    assert rates.ib_errors[key]["symbol_error"] > 0
    clock.advance(MAX_GAP_S + 60)
    third = sim.sample(edit_port(key, symbol_error=9_000))
    rates.update(second, third)
    assert rates.dt is None
    assert rates.ib_errors == {}
    assert rates.ib[key]["symbol_error"] is None
    assert rates.ib[key]["xmit_bytes"] is None


def test_a_failed_section_keeps_the_last_rates() -> None:
    sim, clock = feed()
    rates = NodeRates()
    clock.advance(1.0)
    first = sim.sample()
    clock.advance(1.0)
    second = sim.sample()
    rates.update(first, second)
    before = dict(rates.ib)

    def ib_failed(record: Record) -> None:
        record["probes"]["ib"] = {"error": "PermissionError: counters"}

    clock.advance(1.0)
    third = sim.sample(ib_failed)
    rates.update(second, third)
    assert rates.ib == before
    clock.advance(1.0)
    fourth = sim.sample()
    rates.update(third, fourth)  # no previous ports: no rates until the next pair
    assert all(r["xmit_bytes"] is None for r in rates.ib.values())


def test_nic_64_bit_wrap_and_ecc_rates() -> None:
    sim, clock = feed()

    def nic(rx_bytes: int, sbe: int) -> Callable[[Record], None]:
        def mutate(record: Record) -> None:
            record["probes"]["net"]["nics"]["eth0"]["rx_bytes"] = rx_bytes
            for gpu in record["probes"]["gpu"]["gpus"]:
                if gpu["index"] == 2:
                    gpu["ecc_sbe_volatile"] = sbe

        return mutate

    clock.advance(1.0)
    first = sim.sample(nic(TOP64 - 100, sbe=936))
    clock.advance(1.0)
    second = sim.sample(nic(900, sbe=900))
    rates = NodeRates()
    rates.update(first, second)
    assert rates.nic["eth0"]["rx_bytes"] == 1000.0
    assert rates.gpu[2]["ecc_sbe"] is None  # 936 → 900: a reset of the volatile count
    assert rates.gpu[1]["ecc_sbe"] == 0.0


# --- counters as decoded --------------------------------------------------------------------


def test_counters_decode_into_named_fields_and_unknown_names_are_dropped() -> None:
    line = (
        b'{"type":"sample","schema":"1.0","seq":1,"ts":1.0,"probes":{"ib":{"ports":[{"hca":"efa_0",'
        b'"port":1,"counters":{"symbol_error":3,"port_xmit_data":null,"rdma_read_bytes":9}}]}}}'
    )
    sample = msgspec.json.decode(line, type=schema.Sample)
    assert sample.probes.ib is not None
    counters = sample.probes.ib.ports[0].counters
    assert isinstance(counters, schema.IbCounters)
    assert counters.symbol_error == 3
    assert counters.port_xmit_data is None  # null: could not be read
    assert counters.link_downed is None  # absent
    assert not hasattr(counters, "rdma_read_bytes")  # not a counter the console reads
    with pytest.raises(msgspec.ValidationError, match=r"\$.probes.ib.ports\[0\].counters"):
        msgspec.json.decode(
            line.replace(b'"symbol_error":3', b'"symbol_error":"3"'), type=schema.Sample
        )


def test_decoded_records_are_not_tracked_by_the_cyclic_gc() -> None:
    sim, clock = feed()
    clock.advance(1.0)
    sample = sim.sample()
    assert sample.probes.gpu is not None and sample.probes.ib is not None
    for record in (sample, sample.probes, sample.probes.gpu.gpus[0], sample.probes.ib.ports[0]):
        assert not gc.is_tracked(record), type(record).__name__


# --- what is computed at once, and what when read ------------------------------------------------


def test_per_subject_rates_are_computed_when_read_from_that_steps_readings() -> None:
    sim, clock = feed()
    clock.advance(700)
    first = sim.sample()
    clock.advance(2.0)
    second = sim.sample()
    rates = NodeRates()
    rates.update(None, first)
    rates.update(first, second)
    assert first.probes.ib is not None and second.probes.ib is not None
    expected_ib = ib_rates(first.probes.ib, second.probes.ib, 2.0)
    # Not read yet: a failed IB read in between keeps that step's rates, read later.
    clock.advance(1.0)
    failed = sim.sample(lambda record: record["probes"].update(ib={"error": "EIO"}))
    rates.update(second, failed)
    assert rates.ib == expected_ib
    assert rates.ib_total("rcv_bytes") == pytest.approx(
        sum(r["rcv_bytes"] or 0.0 for r in expected_ib.values())
    )
    assert second.probes.storage is not None and failed.probes.storage is not None
    assert rates.disk == disk_rates(second.probes.storage, failed.probes.storage, 1.0)


@pytest.mark.parametrize("name", list(IB_ERROR_COUNTER_BITS))
def test_every_error_counter_is_watched_at_once(name: str) -> None:
    """Each PMA error counter that counts is seen by the short path, smoothed and noted."""
    sim, clock = feed()
    key = sim.node.ports[1]
    rates = NodeRates()
    previous = None
    for value in (5, 5, 7):
        clock.advance(1.0)
        sample = sim.sample(edit_port(key, **{name: value}))
        rates.update(previous, sample)
        previous = sample
    assert rates.ib_counted == {key: {name: 2.0}}
    assert rates.ib_errors[key][name] == pytest.approx(2.0 * (1 - math.exp(-1 / ERROR_TAU_S)))
    clock.advance(1.0)
    rates.update(previous, sim.sample(edit_port(key, **{name: 7})))
    assert rates.ib_counted == {}
    assert rates.ib_errors[key][name] < 2.0 * (1 - math.exp(-1 / ERROR_TAU_S))  # decaying


# The short paths must give what the per-subject rates give: random counter histories
# (counting, idle, reset, wrapped, saturated, unreadable), ports that come, go and move,
# failed sections and gaps; the reference recomputes everything from the per-subject rates,
# as the console did before it had short paths.

PORT_KEYS = ("mlx5_0/1", "mlx5_1/1", "mlx5_2/1")
WATCHED = ("symbol_error", "link_downed", "port_rcv_errors", "port_rcv_data", "port_xmit_data")
MOVES = ("same", "same", "up", "up", "reset", "wrap", "saturate", "unread")


def _moved(value: int | None, move: str, name: str, step: int) -> int | None:
    top = (1 << IB_ERROR_COUNTER_BITS[name]) - 1 if name in IB_ERROR_COUNTER_BITS else TOP32 - 1
    if move == "unread":
        return None
    if value is None or move == "reset":
        return step
    if move == "up":
        return value + 1 + step * 37
    if move == "wrap":
        return TOP32 - 3 if name.endswith("_data") and value < TOP32 - 3 else 2
    if move == "saturate":
        return top
    return value


def _sample(
    mono: float, ports: list[tuple[str, dict[str, int | None]]] | None, nic: dict[str, int]
) -> schema.Sample:
    ib = (
        schema.IbSample(error="EIO")
        if ports is None
        else schema.IbSample(
            ports=[
                schema.IbPort(
                    hca=key.split("/")[0],
                    port=int(key.split("/")[1]),
                    counters=schema.IbCounters(**values),
                    rcv_bytes=None if values["port_rcv_data"] is None else 7,
                )
                for key, values in ports
            ]
        )
    )
    gpus = [
        schema.Gpu(index=i, ecc_sbe_volatile=nic["sbe"] + i, ecc_dbe_aggregate=nic["dbe"])
        for i in range(2)
    ]
    return schema.Sample(
        schema="1.0",
        seq=1,
        ts=mono,
        mono=mono,
        probes=schema.Probes(
            ib=ib,
            net=schema.NetSample(
                nics={"eth0": schema.Nic(rx_bytes=nic["rx"], rx_errors=nic["err"])}
            ),
            gpu=schema.GpuSample(gpus=gpus),
        ),
    )


def _reference_step(ref: dict[str, dict[str, float]], rates: NodeRates) -> None:
    """The smoothed IB error rates as the console computed them before the short paths."""
    dt = rates.dt
    if dt is not None:
        keep = math.exp(-dt / ERROR_TAU_S)
        for key, per_port in rates.ib.items():
            ema = ref.get(key)
            for name in IB_ERROR_COUNTER_BITS:
                rate = per_port.get(name)
                if rate is None or (not rate and not ema):
                    continue
                if ema is None:
                    ema = ref[key] = {}
                _smooth(ema, name, rate, keep)
    for gone in [k for k, ema in ref.items() if k not in rates.ib or not ema]:
        del ref[gone]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_short_paths_agree_with_the_per_subject_rates(data: st.DataObject) -> None:
    fast, slow = NodeRates(), NodeRates()  # fast is never read per subject
    reference: dict[str, dict[str, float]] = {}
    reference_nic: dict[str, dict[str, float]] = {}
    reference_sbe: dict[int, float] = {}
    values: dict[str, dict[str, int | None]] = {key: dict.fromkeys(WATCHED, 0) for key in PORT_KEYS}
    nic = {"rx": 1_000, "err": 0, "sbe": 0, "dbe": 0}
    mono, previous = 100.0, None
    for step in range(8):
        gap = data.draw(st.sampled_from([False] * 6 + [True]), label="gap")
        mono += MAX_GAP_S + 1 if gap else data.draw(st.sampled_from([0.5, 1.0, 2.0]))
        size = len(PORT_KEYS) * len(WATCHED)
        moves = iter(data.draw(st.lists(st.sampled_from(MOVES), min_size=size, max_size=size)))
        for key in PORT_KEYS:
            for name in WATCHED:
                values[key][name] = _moved(values[key][name], next(moves), name, step)
        order = data.draw(st.permutations(PORT_KEYS), label="ports")
        count = data.draw(st.integers(1, len(PORT_KEYS)), label="count")
        failed = data.draw(st.sampled_from([False] * 7 + [True]), label="failed")
        counted = data.draw(st.lists(st.sampled_from([0, 0, 3]), min_size=4, max_size=4))
        for name, more in zip(nic, counted, strict=True):
            nic[name] += more
        ports = None if failed else [(key, dict(values[key])) for key in order[:count]]
        sample = _sample(mono, ports, nic)
        was_gap = previous is not None and step_seconds(previous, sample) is None
        fast.update(previous, sample)
        slow.update(previous, sample)
        if was_gap:
            # Across a gap or a restart, even when the section failed.
            for averages in (reference, reference_nic, reference_sbe):
                averages.clear()
        if not failed:
            _reference_step(reference, slow)
        _reference_others(reference_nic, reference_sbe, slow)
        assert fast.ib_errors == reference
        assert fast.ib_total("rcv_bytes") == _sum(slow.ib, "rcv_bytes")
        assert fast.ib_total("xmit_bytes") == _sum(slow.ib, "xmit_bytes")
        if not failed:
            moved = {
                key: {n: r for n, r in per.items() if n in IB_ERROR_COUNTER_BITS and r}
                for key, per in slow.ib.items()
            }
            assert fast.ib_counted == {k: v for k, v in moved.items() if v}
        assert fast.nic_total("rx_bytes") == _sum(slow.nic, "rx_bytes")
        assert fast.nic_errors == reference_nic
        assert fast.gpu_ecc_sbe == reference_sbe
        assert fast.gpu_ecc_dbe == {i: r["ecc_dbe"] for i, r in slow.gpu.items() if r["ecc_dbe"]}
        previous = sample


def _reference_others(
    nic_ref: dict[str, dict[str, float]], sbe_ref: dict[int, float], rates: NodeRates
) -> None:
    """Smoothed NIC errors and corrected ECC errors, from the per-subject rates."""
    keep = math.exp(-rates.dt / ERROR_TAU_S) if rates.dt is not None else 1.0
    for name, per_nic in rates.nic.items():
        ema = nic_ref.setdefault(name, {})
        for counter in NIC_ERROR_COUNTERS:
            rate = per_nic[counter]
            if rate is not None:
                _smooth(ema, counter, rate, keep)
    for gone in [k for k, ema in nic_ref.items() if k not in rates.nic or not ema]:
        del nic_ref[gone]
    keep = math.exp(-rates.dt / ECC_TAU_S) if rates.dt is not None else 1.0
    for index, per_gpu in rates.gpu.items():
        sbe = per_gpu["ecc_sbe"]
        if sbe is not None:
            _smooth(sbe_ref, index, sbe, keep)


def _sum(rates: dict[str, Rates], name: str) -> float | None:
    values = [r[name] for r in rates.values() if r.get(name) is not None]
    total: float | None = None
    for value in values:
        assert value is not None
        total = value if total is None else total + value
    return total
