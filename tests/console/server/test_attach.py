"""A front end attached to the service: its fleet becomes the service's node for node (the
same findings, from the service's thresholds, not its own), its lifecycle reads follow the
service's store, its actions run there, a wait streams its progress, a message that does not
fit is skipped and said, and a service that goes away and comes back is reattached."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from tests.console.lifecycle.world import POOL, S, World
from tests.console.test_health import FakeClock, SimFeed
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import NodeSpec
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.plane import ControlPlane, Progress
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState, Severity
from tidectl.console.server.attach import AttachedPlane
from tidectl.console.server.client import RemotePlane, ServiceUnavailable
from tidectl.console.server.mirror import decode_stream
from tidectl.console.server.service import Service
from tidectl.console.thresholds import HealthThresholds

ME = pwd.getpwuid(os.getuid()).pw_name
ANY = Caller("ignored", Frontend.CONSOLE)
#: The service warns at 60 °C; a front end left to its own defaults would not until 85.
SERVICE_THRESHOLDS = replace(HealthThresholds(), gpu_temp_warn_c=60.0)


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tat-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def plane(world: World, folder: Path) -> AsyncIterator[ControlPlane]:
    (folder / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n'
    )
    config = replace(parse_config(text, folder / "cluster.toml"), pools=(POOL,))
    fleet = Fleet(config.nodes, SERVICE_THRESHOLDS, coalesce_s=0.01)
    running = ControlPlane(
        config,
        world.store,
        world.engine(),
        fleet=fleet,
        scheduler=world.scheduler,
        interval_s=0.05,
    )
    await running.start()
    yield running
    await running.aclose()


@pytest.fixture
async def service(plane: ControlPlane, folder: Path) -> AsyncIterator[Service]:
    running = Service(plane, folder / "s.sock")
    await running.start()
    yield running
    await running.aclose()


def feeds(fleet: Fleet) -> list[SimFeed]:
    clock = FakeClock()
    started = [SimFeed(fleet, name, clock, seed=i) for i, name in enumerate(sorted(fleet.nodes))]
    for feed in started:
        feed.start()
        feed.send()
    return started


def hot(record: dict[str, object]) -> None:
    """Every GPU at 70 °C: over the service's warning, under the default one."""
    for gpu in record["probes"]["gpu"]["gpus"]:  # type: ignore[index]
        gpu["temp_c"] = 70.0


async def until(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


def same_view(ours: Fleet, theirs: Fleet) -> bool:
    if set(ours.nodes) != set(theirs.nodes):
        return False
    for name, node in theirs.nodes.items():
        mine = ours.nodes[name]
        if (mine.link, mine.health, mine.sample) != (node.link, node.health, node.sample):
            return False
        if [(f.code, f.subject) for f in mine.findings] != [
            (f.code, f.subject) for f in node.findings
        ]:
            return False
    return True


async def test_the_attached_fleet_is_the_services_node_for_node(
    service: Service, plane: ControlPlane
) -> None:
    theirs = plane.fleet
    assert theirs is not None
    sent = feeds(theirs)
    # The front end's own config had another node, and default thresholds.
    ours = Fleet([NodeSpec("gpu7", "127.0.0.1", 22, "dc1", "t")], HealthThresholds())
    said: list[str] = []
    async with AttachedPlane(service.path, ours, on_status=said.append) as attached:
        assert attached.remote.user == ME
        await until(lambda: same_view(ours, theirs), "the mirror never matched the service")
        assert "gpu7" not in ours.nodes
        for feed in sent:
            feed.send(hot)
        await until(lambda: same_view(ours, theirs), "a hot GPU's finding did not arrive")
        assert ours.nodes["gpu1"].health is Severity.WARN  # at the service's 60 °C
        assert ours.thresholds == SERVICE_THRESHOLDS
        # A node added and one removed in the service (a cloud node joins, another leaves).
        theirs.add(NodeSpec("cloud-1", "127.0.0.2", 2222, "cloud", "t", {"pool": "gpu"}))
        theirs.remove("gpu2")
        await until(lambda: same_view(ours, theirs), "membership did not follow")
        assert ours.nodes["cloud-1"].spec.labels == {"pool": "gpu"}
    assert said == []  # nothing went wrong to say


async def test_lifecycle_reads_follow_the_services_store_and_actions_run_there(
    service: Service, plane: ControlPlane, world: World
) -> None:
    ours = Fleet([], HealthThresholds())
    async with AttachedPlane(service.path, ours) as attached:
        assert attached.pools() == (POOL,)
        result = await attached.burst(ANY, "gpu", count=2)
        assert result.launched == 2
        intent = world.store.intent(result.intent_id or "")
        assert intent is not None and (intent.actor, intent.frontend) == (ME, "console")

        def mirrored() -> bool:
            want = {r.name: r for r in plane.nodes(live_only=True)}
            return want == {r.name: r for r in attached.nodes()} and bool(want)

        await until(mirrored, "the node records did not follow the store")
        await until(
            lambda: attached.burn_rate() == plane.burn_rate() > 0, "the burn rate did not follow"
        )
        assert attached.burn_rate("gpu") == plane.burn_rate("gpu")
        moves = plane.transitions()
        await until(
            lambda: attached.transitions()[: len(moves)] == moves, "the moves did not follow"
        )
        assert attached.transitions(moves[0][0], limit=1) == moves[1:2]
        assert {j.id for j in await attached.jobs_on(list(result.nodes))} == {
            j.id for j in await plane.jobs_on(list(result.nodes))
        }
        # The scheduler's view, as the service's last reconcile pass read it.
        await until(
            lambda: (
                (seen := plane.scheduler_snapshot()) is not None
                and {n.name for n in seen.nodes} >= set(result.nodes)
                and attached.scheduler_snapshot() == seen
            ),
            "the scheduler's view did not follow",
        )


async def test_a_remote_wait_streams_each_step(service: Service, plane: ControlPlane) -> None:
    async with RemotePlane(service.path, Frontend.CLI) as remote:
        result = await remote.burst(ANY, "gpu", count=2)
        steps: list[Progress] = []
        final = await remote.wait(result.nodes, {S.ACTIVE}, timeout_s=20, on_progress=steps.append)
    assert final.done == 2 and set(final.states.values()) == {S.ACTIVE}
    assert len(steps) >= 2, "only the end was heard"
    assert steps[0].done < 2 and steps[-1].states == final.states
    assert all(isinstance(step, Progress) for step in steps)


async def test_a_service_that_goes_away_is_reattached_and_the_mirror_heals(
    service: Service, plane: ControlPlane, folder: Path
) -> None:
    theirs = plane.fleet
    assert theirs is not None
    feeds(theirs)
    ours = Fleet([], HealthThresholds())
    said: list[str] = []
    async with AttachedPlane(service.path, ours, on_status=said.append) as attached:
        await until(lambda: same_view(ours, theirs), "never matched")
        await service.aclose()
        await until(lambda: not attached.connected, "the loss went unnoticed")
        with pytest.raises(ServiceUnavailable, match="closed the connection"):
            await attached.burst(ANY, "gpu", count=1)
        theirs.remove("gpu1")  # while away: the next first message must take it out
        again = Service(plane, folder / "s.sock")
        await again.start()
        try:
            await until(lambda: attached.connected, "never reattached", timeout_s=20)
            await until(lambda: same_view(ours, theirs), "the mirror did not heal")
            assert (await attached.burst(ANY, "gpu", count=1)).launched == 1
        finally:
            await again.aclose()
    assert said[0].startswith("Lost the tidectl service") and "again" in said[-1]


async def test_a_message_that_does_not_fit_is_skipped_and_said(folder: Path) -> None:
    """A service of another version (or a bug) sends what this front end cannot read: that
    message is skipped whole, the next ones apply."""
    path = folder / "odd.sock"

    served: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.add(writer)
        if len(served) == 1:  # the request connection
            hello = b'{"id":1,"result":{"protocol":1,"user":"x","cluster":"c"}}\n'
            for answer in (hello, b'{"id":2,"result":[]}\n'):
                await reader.readline()
                writer.write(answer)
            await asyncio.sleep(30)
            return
        await odd_stream(reader, writer)

    async def odd_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = b'{"id":1,"result":{"protocol":1,"user":"x","cluster":"c"}}\n'
        for answer in (hello, b'{"id":2,"result":{"subscribed":true,"thresholds":{}}}\n'):
            await reader.readline()
            writer.write(answer)
        writer.write(b'{"event":"fleet","seq":1,"nodes":{"a":{"link":"teleporting"}}}\n')
        spec = b'{"name":"b","address":"127.0.0.1","port":22,"site":"s","user":"t"}'
        writer.write(
            b'{"event":"fleet","seq":2,"nodes":{"b":{"link":"streaming","spec":' + spec + b"}}}\n"
        )
        await writer.drain()
        await asyncio.sleep(30)

    server = await asyncio.start_unix_server(serve, path=str(path))
    ours = Fleet([], HealthThresholds())
    said: list[str] = []
    try:
        async with AttachedPlane(path, ours, on_status=said.append):
            await until(lambda: "b" in ours.nodes, "the good message was not applied")
            assert "a" not in ours.nodes
            assert ours.nodes["b"].link is LinkState.STREAMING
    finally:
        server.close()
        for writer in served:
            writer.close()
    assert len(said) == 1 and "could not be read" in said[0] and "teleporting" in said[0]


def test_stream_messages_decode_into_their_types_or_say_what_is_wrong() -> None:
    life = decode_stream(
        b'{"event":"life","records":[],"gone":["x"],"moves":[],"reports":["r"],'
        b'"reported":3,"burn":{"":1.5}}'
    )
    assert type(life).__name__ == "LifeMessage" and life.reported == 3  # type: ignore[union-attr]
    with pytest.raises(msgspec.ValidationError, match="reported"):
        decode_stream(b'{"event":"life","records":[],"gone":[],"moves":[],"reports":[],"burn":{}}')
    with pytest.raises(msgspec.ValidationError):
        decode_stream(b'{"event":"weather","seq":1}')
    with pytest.raises(msgspec.DecodeError):
        decode_stream(b'{"event":"fleet","seq":1,"nodes":{')


async def test_a_call_cancelled_while_waiting_does_not_hand_its_answer_to_the_next(
    service: Service,
) -> None:
    """The console cancels a price question when the count is typed again; the answer still
    arrives, and must not be read as the burst's (it was: 'Expected object, got float')."""
    async with RemotePlane(service.path, Frontend.CONSOLE) as remote:
        asked = asyncio.create_task(remote.wait(["gpu-x"], {S.ACTIVE}, timeout_s=0.3))
        await asyncio.sleep(0.05)  # written, not yet answered
        asked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asked
        priced = asyncio.create_task(remote.price_per_hour("gpu"))
        await asyncio.sleep(0)
        priced.cancel()
        await asyncio.sleep(0.4)  # both answers are in the connection's buffer by now
        result = await remote.burst(ANY, "gpu", count=1)
        assert result.launched == 1 and result.pool == "gpu"
        assert await remote.price_per_hour("gpu") == 24.0
