"""Live fleet updates from the service: the first message holds every node, later ones only
what changed (coalesced: a burst of changes is one message), a node that left is null, and a
client that stops reading is dropped while another keeps receiving."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from tests.console.test_health import FakeClock, SimFeed
from tidectl.console import schema
from tidectl.console.config.model import NodeSpec
from tidectl.console.control.roles import Roles
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState
from tidectl.console.server.mirror import FleetMessage, decode_stream
from tidectl.console.server.service import Service
from tidectl.console.server.stream import NodeInputs
from tidectl.console.server.wire import Request, encode
from tidectl.console.thresholds import HealthThresholds

NODES = [f"gpu{i:04d}" for i in range(1, 1501)]


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    folder = Path(tempfile.mkdtemp(prefix="tst-", dir="/tmp"))
    specs = [NodeSpec(name, "127.0.0.1", 22, "dc1", "t") for name in NODES]
    fleet = Fleet(specs, HealthThresholds(), coalesce_s=0.01)
    roles = Roles(None, folder / "cluster.toml")  # no [roles]: root, running the tests, is admin
    plane = SimpleNamespace(config=SimpleNamespace(name="lab"), fleet=fleet, roles=roles)
    running = Service(plane, folder / "s.sock", send_timeout_s=0.5)  # type: ignore[arg-type]
    await running.start()
    yield running
    await running.aclose()
    shutil.rmtree(folder, ignore_errors=True)


async def subscribe(
    path: Path, every_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=2**24)
    writer.write(encode(Request(1, "subscribe", {"every_s": every_s})))
    await writer.drain()
    return reader, writer


async def message(reader: asyncio.StreamReader) -> dict[str, Any]:
    async with asyncio.timeout(10):
        return json.loads(await reader.readline())  # type: ignore[no-any-return]


def churn(fleet: Fleet, state: LinkState) -> None:
    for name in NODES:
        fleet.on_link(name, state, "a link error long enough to make each update count")


async def test_updates_are_coalesced_and_a_client_that_stops_reading_is_dropped(
    service: Service,
) -> None:
    fleet = service.plane.fleet
    assert fleet is not None
    fast, fast_writer = await subscribe(service.path, 0.05)
    assert (await message(fast))["result"] == {"subscribed": True}
    first = await message(fast)
    assert first["seq"] == 1 and set(first["nodes"]) == set(NODES)
    assert first["nodes"]["gpu0001"] == {
        "health": "unknown",
        "link": "connecting",
        "finding": "agent.link",
    }
    # A client that subscribes and then never reads a byte: a plain socket, not asyncio's
    # (whose transport would keep reading into its buffer).
    slow = socket.socket(socket.AF_UNIX)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(str(service.path))
    slow.sendall(encode(Request(1, "subscribe", {"every_s": 0.05})))
    # Three rounds of changes to every node, faster than the messages go out.
    for state in (LinkState.UNREACHABLE, LinkState.CONNECTING, LinkState.UNREACHABLE):
        churn(fleet, state)
        await asyncio.sleep(0.02)
    latest = await message(fast)
    while latest["nodes"].get("gpu0001", {}).get("link") != "unreachable" or len(
        latest["nodes"]
    ) < len(NODES):
        latest = await message(fast)
    assert latest["seq"] <= 4, "a message per change instead of coalescing"
    # The slow client never reads: it is dropped; the fast one goes on receiving.
    received = 0
    for _ in range(60):
        churn(fleet, LinkState.CONNECTING)
        await asyncio.sleep(0.05)
        churn(fleet, LinkState.UNREACHABLE)
        await message(fast)
        received += 1
        if service.dropped_clients:
            break
    assert service.dropped_clients == 1, "a client that does not read was kept"
    assert received >= 2
    churn(fleet, LinkState.CONNECTING)
    assert (await message(fast))["event"] == "fleet"  # and the fast one still hears
    slow.settimeout(10)
    while slow.recv(2**20):  # what it had been sent, then the end: the service let it go
        pass
    slow.close()
    fleet.remove("gpu0002")
    while (update := await message(fast))["nodes"].get("gpu0002", "absent") == "absent":
        pass
    assert update["nodes"]["gpu0002"] is None  # gone from the fleet
    fast_writer.close()


def test_a_full_stream_forwards_the_agents_line_and_the_mirror_reads_the_same_sample() -> None:
    fleet = Fleet([NodeSpec("gpu1", "127.0.0.1", 22, "dc1", "t")], HealthThresholds())
    feed = SimFeed(fleet, "gpu1", FakeClock())
    feed.start()
    node = feed.send()
    assert node.sample_line is not None
    update = NodeInputs()("gpu1", node)
    assert update is not None
    raw = update["sample"]
    # The line itself, not the record encoded again (that cost ~30 µs a sample per client).
    assert isinstance(raw, msgspec.Raw) and bytes(raw) == node.sample_line
    wire = msgspec.json.encode({"event": "fleet", "seq": 1, "nodes": {"gpu1": update}})
    assert b"\n" not in wire  # one message, one line
    message = decode_stream(wire)
    assert isinstance(message, FleetMessage)
    mirrored = message.nodes["gpu1"]
    assert mirrored is not None and mirrored.sample == node.sample
    # A sample the fleet got without its line (a mirror's own fleet) is encoded as before.
    fleet.on_sample("gpu1", feed.sample())
    again = NodeInputs()("gpu1", fleet.nodes["gpu1"])
    assert again is not None and isinstance(again["sample"], schema.Sample)
