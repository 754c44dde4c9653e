"""The admission gate on a fleet fed real agent records (the sim node's probes through the
real ``Stream``, decoded as the collector decodes them), on a clock the test moves."""

from __future__ import annotations

import io

import msgspec
import pytest

from tidectl.agents import protocol
from tidectl.agents.probes.sim import make_sim_probes
from tidectl.agents.runner import Stream
from tidectl.console import schema
from tidectl.console.config.model import NodeSpec
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.admission import admit
from tidectl.console.model import LinkState
from tidectl.console.thresholds import HealthThresholds

NAME = "gpu-1"
DECODE = msgspec.json.Decoder(schema.Record).decode


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def records(ticks: int = 1) -> tuple[schema.Hello, list[schema.Sample]]:
    stream = Stream(make_sim_probes(7, hostname=NAME), io.BytesIO(), interval_s=1.0, threaded=False)
    try:
        hello = DECODE(protocol.encode(stream.hello()))
        samples = [DECODE(protocol.encode(stream.tick())) for _ in range(ticks)]
    finally:
        stream.close()
    assert isinstance(hello, schema.Hello)
    assert all(isinstance(s, schema.Sample) for s in samples)
    return hello, samples


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fleet(clock: Clock) -> Fleet:
    spec = NodeSpec(name=NAME, address="127.0.0.1", port=1, site="cloud", user="u")
    fleet = Fleet([spec], HealthThresholds(), clock=clock)
    fleet.on_link(NAME, LinkState.STREAMING)
    return fleet


def test_a_healthy_node_with_the_promised_gpus_is_admitted(fleet: Fleet) -> None:
    hello, [sample] = records()
    fleet.on_hello(NAME, hello)
    fleet.on_sample(NAME, sample)
    assert admit(fleet, NAME, 8).verdict is True
    assert admit(fleet, "gpu-2", 8).verdict is None


def test_nothing_heard_yet_or_silent_since_is_none(fleet: Fleet, clock: Clock) -> None:
    hello, [sample] = records()
    fleet.on_hello(NAME, hello)
    waiting = admit(fleet, NAME, 8)
    assert waiting.verdict is None and "has sent no sample yet" in waiting.why
    fleet.on_sample(NAME, sample)
    clock.now += 60  # many intervals of silence
    silent = admit(fleet, NAME, 8)
    assert silent.verdict is None and "has fallen silent" in silent.why
    fleet.on_link(NAME, LinkState.UNREACHABLE, "connection refused")
    down = admit(fleet, NAME, 8)
    assert down.verdict is None
    assert down.why.startswith(f"node {NAME}'s link is unreachable, not streaming")
    assert down.why.endswith("The link says: connection refused")


def test_a_missing_gpu_is_refused_by_count_before_its_finding(fleet: Fleet) -> None:
    hello, [sample] = records()
    assert sample.probes.gpu is not None
    sample.probes.gpu.gpus.pop()
    fleet.on_hello(NAME, hello)
    fleet.on_sample(NAME, sample)
    refused = admit(fleet, NAME, 8)
    assert refused.verdict is False
    assert refused.why.startswith(
        f"node {NAME} has the wrong GPU count: the driver sees 7, the pool promises 8"
    )


def test_an_unreadable_agent_or_a_failing_gpu_probe_is_refused(fleet: Fleet) -> None:
    hello, [first, second] = records(2)
    fleet.on_hello(NAME, hello)
    fleet.on_sample(NAME, first)
    fleet.on_agent_error(NAME, "unreadable line from the agent (not JSON): 'x'")
    garbled = admit(fleet, NAME, 8)
    assert garbled.verdict is False
    assert garbled.why.endswith(
        "The collector says: unreadable line from the agent (not JSON): 'x'"
    )
    assert second.probes.gpu is not None
    second.probes.gpu.error = "NVML_ERROR_UNKNOWN"
    fleet.on_sample(NAME, second)  # a good line clears the agent error
    probe = admit(fleet, NAME, 8)
    assert probe.verdict is False
    assert probe.why.startswith(f"node {NAME}'s GPU probe fails (NVML_ERROR_UNKNOWN)")


def test_a_node_without_gpu_information(fleet: Fleet) -> None:
    hello, [sample] = records()
    hello.facts.pop("gpu")
    sample.probes.gpu = None
    fleet.on_hello(NAME, hello)
    fleet.on_sample(NAME, sample)
    refused = admit(fleet, NAME, 8)
    assert refused.verdict is False and "reports no GPUs at all" in refused.why
    assert admit(fleet, NAME, 0).verdict is True  # a pool that promises none
