"""The collector's reading of agent lines: anything a node sends is either applied or refused."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tidectl.agents import protocol
from tidectl.agents.probes.sim import make_sim_probes
from tidectl.agents.runner import Stream
from tidectl.console.collector import BAD_LINES_BEFORE_RECYCLE, Collector
from tidectl.console.config.model import AgentSettings, ClusterConfig, NodeSpec, Site, SshSettings
from tidectl.console.fleet import Fleet
from tidectl.console.thresholds import HealthThresholds

SPEC = NodeSpec(name="n1", address="127.0.0.1", port=1, site="lab", user="u")
CONFIG = ClusterConfig(
    name="t",
    path=Path("cluster.toml"),
    ssh=SshSettings(user="u", identity_file=None, known_hosts=Path("/dev/null")),
    agent=AgentSettings(),
    sites=(Site("lab"),),
    nodes=(SPEC,),
    health=HealthThresholds(),
)


def _collector() -> tuple[Collector, Fleet, list[str]]:
    fleet = Fleet(CONFIG.nodes, CONFIG.health)
    collector = Collector(CONFIG, fleet)
    recycled: list[str] = []
    collector.links["n1"].recycle = recycled.append  # type: ignore[method-assign]
    return collector, fleet, recycled


def _real_lines(count: int) -> list[bytes]:
    probes = make_sim_probes(3, hostname="n1")
    stream = Stream(probes, io.BytesIO(), interval_s=1.0, threaded=False)
    hello = protocol.encode(stream.hello())
    return [hello, *(protocol.encode(stream.tick()) for _ in range(count))]


def test_real_lines_reach_the_fleet() -> None:
    collector, fleet, recycled = _collector()
    for line in _real_lines(2):
        collector._on_line("n1", line.rstrip(b"\n"))
    node = fleet.nodes["n1"]
    assert node.hello is not None and node.hello.agent == "0.1.0"
    assert node.sample is not None and node.sample.seq == 2
    assert collector.lines_decoded == 3 and collector.lines_refused == 0 and not recycled


def test_wrong_types_and_other_majors_are_refused_with_the_reason() -> None:
    collector, fleet, recycled = _collector()
    good = _real_lines(1)[1].decode()
    collector._on_line("n1", good.replace('"seq":1', '"seq":"one"').encode())
    assert "Expected `int`, got `str` - at `$.seq`" in (fleet.nodes["n1"].agent_error or "")
    collector._on_line("n1", good.replace('"schema":"1.0"', '"schema":"2.0"').encode())
    assert "deploy a matching agent" in (fleet.nodes["n1"].agent_error or "")
    assert not recycled
    collector._on_line("n1", b"not json")
    assert len(recycled) == 1 and f"{BAD_LINES_BEFORE_RECYCLE} unreadable lines" in recycled[0]
    assert fleet.nodes["n1"].sample is None


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    collector, _fleet, _ = _collector()
    collector._on_line("n1", data)
    assert collector.lines_decoded + collector.lines_refused == 1
