"""The sim cloud: instances boot into real simulated nodes over real SSH on 127.0.0.1.

Every test runs its own provider on a temporary folder; connections verify the host key the
provider hands over (never ``known_hosts=None``). No moto here: the package's AWS fixture is
overridden below.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tidectl.agents import protocol
from tidectl.agents.zipapp import archive_bytes
from tidectl.console.providers.base import (
    CLUSTER_TAG,
    INTENT_TAG,
    POOL_TAG,
    CapacityError,
    Instance,
    InstanceState,
    InvalidRequestError,
    LaunchRequest,
    QuotaError,
    UnavailableError,
    ownership_tags,
)
from tidectl.console.providers.sim import SimEndpoint, SimProvider

PENDING, RUNNING = InstanceState.PENDING, InstanceState.RUNNING
SHUTTING_DOWN, TERMINATED = InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED


@pytest.fixture(autouse=True)
def _aws_stays_on_loopback() -> None:
    """Replaces the package's fixture of that name, which starts moto: nothing here is AWS."""


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[SimProvider]:
    async with SimProvider(tmp_path / "cloud") as provider:
        yield provider


def request(
    *, intent: str = "intent-1", pool: str = "gpu", count: int = 1, **overrides: Any
) -> LaunchRequest:
    fields: dict[str, Any] = {
        "pool": pool,
        "count": count,
        "instance_type": "sim.gpu8",
        "region": "sim-local",
        "image_id": "sim",
        "token": f"token-{intent}",
        "tags": ownership_tags("lab", pool, intent),
    }
    return LaunchRequest(**(fields | overrides))


async def states(cloud: SimProvider, ids: list[str]) -> list[InstanceState]:
    by_id = {i.instance_id: i for i in await cloud.describe({CLUSTER_TAG: "lab"})}
    return [by_id[i].state for i in ids]


async def wait_for(
    cloud: SimProvider, ids: list[str], state: InstanceState, timeout: float = 5.0
) -> list[Instance]:
    deadline = time.monotonic() + timeout
    while True:
        found = [i for i in await cloud.describe({CLUSTER_TAG: "lab"}) if i.instance_id in ids]
        if len(found) == len(ids) and all(i.state is state for i in found):
            return found
        assert time.monotonic() < deadline, f"not all {state} in time: {found}"
        await asyncio.sleep(0.02)


async def launch_running(cloud: SimProvider, **options: Any) -> list[SimEndpoint]:
    instances = await cloud.launch(request(**options))
    ids = [i.instance_id for i in instances]
    await wait_for(cloud, ids, RUNNING)
    endpoints = [cloud.endpoint(i) for i in ids]
    assert all(endpoints)
    return [e for e in endpoints if e is not None]


async def connect(endpoint: SimEndpoint, known_hosts: str | None = None) -> Any:
    return await asyncssh.connect(
        endpoint.address,
        endpoint.port,
        username=endpoint.user,
        client_keys=[str(endpoint.client_key)],
        known_hosts=asyncssh.import_known_hosts(known_hosts or endpoint.known_hosts_line),
        connect_timeout=5,
    )


async def refuses_connections(endpoint: SimEndpoint) -> bool:
    try:
        _, writer = await asyncio.open_connection(endpoint.address, endpoint.port)
    except OSError:
        return True
    writer.close()
    return False


@functools.cache
def agent_bytes() -> bytes:
    return archive_bytes()


# -- launch, boot, SSH -------------------------------------------------------------------------


async def test_instances_are_pending_until_the_boot_delay_then_running(tmp_path: Path) -> None:
    async with SimProvider(tmp_path / "cloud", boot_delay_s=0.4) as cloud:
        started = time.monotonic()
        launched = await cloud.launch(request(count=2))
        assert [i.state for i in launched] == [PENDING, PENDING]
        assert all(i.tags == ownership_tags("lab", "gpu", "intent-1") for i in launched)
        assert {(i.instance_type, i.zone, i.spot) for i in launched} == {
            ("sim.gpu8", "sim-local-a", False)
        }
        assert len({i.instance_id for i in launched}) == 2
        ids = [i.instance_id for i in launched]
        await asyncio.sleep(0.1)
        assert await states(cloud, ids) == [PENDING, PENDING]
        assert cloud.endpoint(ids[0]) is None  # not reachable while it boots
        running = await wait_for(cloud, ids, RUNNING)
        assert time.monotonic() - started >= 0.4
        assert all(i.private_ip == "127.0.0.1" for i in running)
        nodes = [e.node for i in ids if (e := cloud.endpoint(i)) is not None]
        assert nodes == ["gpu-0001", "gpu-0002"]


async def test_a_running_instance_is_a_node_over_verified_ssh(cloud: SimProvider) -> None:
    (endpoint,) = await launch_running(cloud)
    path = f".cache/tidectl/agent-{hashlib.sha256(agent_bytes()).hexdigest()[:12]}.pyz"
    async with await connect(endpoint) as conn:
        assert conn.get_server_host_key().export_public_key().decode().startswith(endpoint.host_key)
        assert (await conn.run("hostname", check=True)).stdout == "gpu-0001\n"
        async with conn.start_sftp_client() as sftp:  # the engine's deploy
            await sftp.makedirs(".cache/tidectl", exist_ok=True)
            async with sftp.open(path, "wb") as handle:
                await handle.write(agent_bytes())
        result = await conn.run(
            f"exec python3 {path} stream --interval 0.2 --count 2 --probes all", encoding=None
        )
    assert result.exit_status == 0, result.stderr
    assert isinstance(result.stdout, bytes)
    hello, *samples = [protocol.decode(line) for line in result.stdout.splitlines()]
    assert hello["facts"]["host"]["hostname"] == "gpu-0001"
    assert [s["seq"] for s in samples] == [1, 2]
    assert len(samples[0]["probes"]["gpu"]["gpus"]) == 8


async def test_each_node_has_its_own_host_key_and_another_is_refused(cloud: SimProvider) -> None:
    first, second = await launch_running(cloud, count=2)
    assert first.host_key != second.host_key
    assert first.port != second.port
    assert first.known_hosts_line == (f"gpu-0001,[127.0.0.1]:{first.port} {first.host_key}\n")
    impostor = f"[{second.address}]:{second.port} {first.host_key}\n"
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await connect(second, known_hosts=impostor)


async def test_a_node_that_powers_itself_off_is_terminated(cloud: SimProvider) -> None:
    """As EC2 ends an instance launched with InstanceInitiatedShutdownBehavior=terminate."""
    (endpoint,) = await launch_running(cloud)
    ids = [endpoint.instance_id]
    async with await connect(endpoint) as conn:
        refused = await conn.run("shutdown -r now")
        assert (refused.exit_status, await states(cloud, ids)) == (2, [RUNNING])
        result = await conn.run("sudo systemctl poweroff")
        assert result.exit_status == 0, result.stderr
        assert await states(cloud, ids) == [SHUTTING_DOWN]
    await wait_for(cloud, ids, TERMINATED)
    assert cloud.endpoint(endpoint.instance_id) is None


# -- idempotency and describe ------------------------------------------------------------------


async def test_the_same_token_returns_the_same_instances(cloud: SimProvider) -> None:
    first = await cloud.launch(request(count=2))
    again, concurrent = await asyncio.gather(
        cloud.launch(request(count=2)), cloud.launch(request(count=2))
    )
    ids = sorted(i.instance_id for i in first)
    assert sorted(i.instance_id for i in again) == ids
    assert sorted(i.instance_id for i in concurrent) == ids
    with pytest.raises(InvalidRequestError) as mismatch:
        await cloud.launch(request(count=3))  # same token, another request
    assert mismatch.value.code == "IdempotentParameterMismatch"
    assert "new intent" in str(mismatch.value)
    assert sorted(i.instance_id for i in await cloud.describe({CLUSTER_TAG: "lab"})) == ids


async def test_describe_lists_instances_carrying_every_tag(cloud: SimProvider) -> None:
    a = await cloud.launch(request(intent="a", count=2))
    b = await cloud.launch(request(intent="b", pool="infer"))
    tagged = request(intent="c", tags=ownership_tags("lab", "gpu", "c") | {"team": "ml"})
    c = await cloud.launch(tagged)
    ids = functools.partial(map, lambda i: i.instance_id)

    async def described(tags: dict[str, str]) -> set[str]:
        return set(ids(await cloud.describe(tags)))

    assert await described({CLUSTER_TAG: "lab"}) == set(ids(a + b + c))
    assert await described({INTENT_TAG: "a"}) == set(ids(a))
    assert await described({CLUSTER_TAG: "lab", POOL_TAG: "infer"}) == set(ids(b))
    assert await described({"team": "ml"}) == set(ids(c))
    assert await described({CLUSTER_TAG: "lab", INTENT_TAG: "b", POOL_TAG: "gpu"}) == set()
    assert await described({CLUSTER_TAG: "elsewhere"}) == set()
    with pytest.raises(InvalidRequestError, match="at least one tag"):
        await cloud.describe({})


# -- terminate ---------------------------------------------------------------------------------


async def test_terminate_closes_the_nodes_ssh_and_is_idempotent(tmp_path: Path) -> None:
    async with SimProvider(tmp_path / "cloud", shutdown_delay_s=0.3) as cloud:
        kept, ended = await launch_running(cloud, count=2)
        conn = await connect(ended)
        await cloud.terminate([ended.instance_id])
        await asyncio.wait_for(conn.wait_closed(), 5)  # its sessions end with it
        assert await refuses_connections(ended)
        assert cloud.endpoint(ended.instance_id) is None
        assert await states(cloud, [ended.instance_id, kept.instance_id]) == [
            SHUTTING_DOWN,
            RUNNING,
        ]
        (gone,) = await wait_for(cloud, [ended.instance_id], TERMINATED)
        assert gone.private_ip is None
        assert not ended.folder.exists()  # its disk went with it
        await cloud.terminate([ended.instance_id, ended.instance_id, "i-0000000000000000"])
        assert await states(cloud, [ended.instance_id]) == [TERMINATED]
        async with await connect(kept) as other:  # the rest of the batch is untouched
            assert (await other.run("hostname", check=True)).stdout == "gpu-0001\n"


async def test_a_pending_instance_terminated_never_boots(tmp_path: Path) -> None:
    async with SimProvider(tmp_path / "cloud", boot_delay_s=0.2) as cloud:
        (instance,) = await cloud.launch(request())
        await cloud.terminate([instance.instance_id])
        await wait_for(cloud, [instance.instance_id], TERMINATED)
        await asyncio.sleep(0.4)  # past the boot delay
        assert await states(cloud, [instance.instance_id]) == [TERMINATED]
        assert cloud.endpoint(instance.instance_id) is None


# -- injected faults ---------------------------------------------------------------------------


async def test_no_capacity_for_a_type_in_a_zone_raises_capacity_error(cloud: SimProvider) -> None:
    cloud.faults.no_capacity("sim.gpu8", "zone-a")
    with pytest.raises(CapacityError) as error:
        await cloud.launch(request(intent="a", zone="zone-a"))
    assert (error.value.instance_type, error.value.zone) == ("sim.gpu8", "zone-a")
    assert error.value.code == "InsufficientInstanceCapacity"
    assert "try another zone or instance type" in str(error.value)
    assert await cloud.describe({CLUSTER_TAG: "lab"}) == []  # nothing started
    (elsewhere,) = await cloud.launch(request(intent="b", zone="zone-b"))
    cloud.faults.no_capacity("sim.gpu8")  # every zone
    with pytest.raises(CapacityError):
        await cloud.launch(request(intent="c", zone="zone-b"))
    cloud.faults.restore_capacity("sim.gpu8")
    cloud.faults.restore_capacity("sim.gpu8", "zone-a")
    # The failed launch recorded nothing: its token now starts its instance.
    (retried,) = await cloud.launch(request(intent="a", zone="zone-a"))
    assert retried.zone == "zone-a"
    assert retried.instance_id != elsewhere.instance_id


async def test_planned_launch_errors_start_nothing(cloud: SimProvider) -> None:
    cloud.faults.fail_launches(QuotaError("quota reached", code="VcpuLimitExceeded"), times=2)
    for _ in range(2):
        with pytest.raises(QuotaError):
            await cloud.launch(request())
    assert await cloud.describe({CLUSTER_TAG: "lab"}) == []
    assert len(await cloud.launch(request())) == 1


async def test_a_lost_answer_started_instances_a_retry_finds(cloud: SimProvider) -> None:
    cloud.faults.lose_launch_answers()
    with pytest.raises(UnavailableError, match="same token"):
        await cloud.launch(request(count=2))
    started = await cloud.describe({INTENT_TAG: "intent-1"})
    assert len(started) == 2
    retried = await cloud.launch(request(count=2))
    assert {i.instance_id for i in retried} == {i.instance_id for i in started}
    assert len(await cloud.describe({CLUSTER_TAG: "lab"})) == 2


async def test_a_stalled_boot_stays_pending_until_terminated(cloud: SimProvider) -> None:
    cloud.faults.stall_boots(1)
    stalled, booted = (i.instance_id for i in await cloud.launch(request(count=2)))
    await wait_for(cloud, [booted], RUNNING)
    await asyncio.sleep(0.3)
    assert await states(cloud, [stalled]) == [PENDING]
    assert cloud.endpoint(stalled) is None
    await cloud.terminate([stalled])
    await wait_for(cloud, [stalled], TERMINATED)


async def test_a_vanished_instance_is_terminated_unasked(cloud: SimProvider) -> None:
    lost, forgotten = await launch_running(cloud, count=2)
    conn = await connect(lost)
    await cloud.vanish(lost.instance_id)
    await asyncio.wait_for(conn.wait_closed(), 5)
    assert await refuses_connections(lost)
    (gone,) = await wait_for(cloud, [lost.instance_id], TERMINATED)
    assert not gone.interruption
    await cloud.vanish(forgotten.instance_id, forget=True)
    await asyncio.sleep(0.1)
    assert [i.instance_id for i in await cloud.describe({CLUSTER_TAG: "lab"})] == [lost.instance_id]


async def test_a_spot_interruption_marks_then_terminates(cloud: SimProvider) -> None:
    (endpoint,) = await launch_running(cloud, spot=True)
    await cloud.interrupt(endpoint.instance_id, notice_s=0.3)
    (warned,) = await cloud.describe({CLUSTER_TAG: "lab"})
    assert (warned.state, warned.interruption, warned.spot) == (RUNNING, True, True)
    async with await connect(endpoint) as conn:  # still up during the notice
        await conn.run("true", check=True)
    (ended,) = await wait_for(cloud, [endpoint.instance_id], TERMINATED)
    assert ended.interruption
    assert await refuses_connections(endpoint)


async def test_only_spot_instances_are_interrupted(cloud: SimProvider) -> None:
    (endpoint,) = await launch_running(cloud)
    with pytest.raises(ValueError, match="on-demand"):
        await cloud.interrupt(endpoint.instance_id)
    assert await states(cloud, [endpoint.instance_id]) == [RUNNING]


# -- prices, refusals, closing -----------------------------------------------------------------


async def test_prices_per_hour(tmp_path: Path) -> None:
    default = SimProvider(tmp_path / "a")
    assert await default.price_per_hour("sim.gpu8", spot=False) == 24.0
    assert await default.price_per_hour("sim.gpu8", spot=True) == pytest.approx(9.6)
    assert await default.price_per_hour("p5.48xlarge", spot=False) is None
    given = SimProvider(tmp_path / "b", prices={"sim.gpu8": 10.0}, spot_prices={"sim.gpu8": 2.5})
    assert await given.price_per_hour("sim.gpu8", spot=False) == 10.0
    assert await given.price_per_hour("sim.gpu8", spot=True) == 2.5


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: SimProvider(root, boot_delay_s=-1), "boot_delay_s must be 0 s or more"),
        (lambda root: SimProvider(root, address="0.0.0.0"), "loopback only"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    tmp_path: Path, make: Callable[[Path], SimProvider], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make(tmp_path)


async def test_a_pool_that_cannot_name_a_node_is_refused(cloud: SimProvider) -> None:
    with pytest.raises(InvalidRequestError, match="names nodes after their pool"):
        await cloud.launch(request(pool="GPU_pool"))
    assert await cloud.describe({CLUSTER_TAG: "lab"}) == []


async def test_aclose_stops_every_server(tmp_path: Path) -> None:
    cloud = SimProvider(tmp_path / "cloud")
    endpoints = await launch_running(cloud, count=2)
    assert not await refuses_connections(endpoints[0])
    await cloud.aclose()
    for endpoint in endpoints:
        assert await refuses_connections(endpoint)
    with pytest.raises(UnavailableError, match="closed"):
        await cloud.launch(request(intent="later"))
    await cloud.aclose()  # twice is fine


async def test_booting_does_its_blocking_work_off_the_event_loop(
    cloud: SimProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Key generation, fsynced writes and the port bind of each instance: at 5 ms a node, a
    # 64-node burst would hold the control plane's loop (and the console) for ~0.3 s.
    import threading

    from tidectl.console.providers import sim as sim_module

    threads: list[threading.Thread] = []
    real_prepare = sim_module.prepare

    def recording_prepare(options: Any) -> Any:
        threads.append(threading.current_thread())
        return real_prepare(options)

    monkeypatch.setattr(sim_module, "prepare", recording_prepare)
    launched = await cloud.launch(request(count=2))
    await wait_for(cloud, [i.instance_id for i in launched], RUNNING)
    assert len(threads) == 2
    assert all(thread is not threading.main_thread() for thread in threads)
