"""A pool's policy changed at run time (``ControlPlane.set_pool_policy``, the notebook's
Adaptive mode): checked against cluster.toml, audited, seen by ``pools()``, the policy loop
and every burst, kept in memory only, and carried over the service's socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.lifecycle.world import POOL, World
from tests.console.roles import TEST_ROLES
from tidectl.console.audit import AuditLog, read
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import PoolPolicy
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.control.pool_policy import PoolPolicyRefused, changed_pool

ANA = Caller("ana", Frontend.NOTEBOOK)


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n' + TEST_ROLES
    )
    config = replace(parse_config(text, tmp_path / "cluster.toml"), pools=(POOL,))
    running = ControlPlane(config, world.store, world.engine(), scheduler=world.scheduler)
    running.audit = AuditLog(tmp_path / "audit.jsonl")
    yield running


def test_a_change_keeps_what_it_does_not_name_and_never_passes_the_files_max() -> None:
    changed = changed_pool(POOL, POOL, min_nodes=2, burst_on_pressure=True)
    assert (changed.policy.min_nodes, changed.max_nodes, changed.policy.burst_on_pressure) == (
        2,
        POOL.max_nodes,
        True,
    )
    assert changed.policy.idle_drain_after_s == POOL.policy.idle_drain_after_s
    lowered = changed_pool(changed, POOL, max_nodes=3)
    assert (lowered.policy.min_nodes, lowered.max_nodes) == (2, 3)
    with pytest.raises(PoolPolicyRefused, match=r"at most 8 nodes .* not 9"):
        changed_pool(POOL, POOL, max_nodes=9)
    with pytest.raises(PoolPolicyRefused, match=r"min_nodes \(3\) of pool gpu is above"):
        changed_pool(lowered, POOL, min_nodes=3, max_nodes=2)
    with pytest.raises(PoolPolicyRefused, match="whole number of 0 or more"):
        changed_pool(POOL, POOL, min_nodes=-1)
    with pytest.raises(PoolPolicyRefused, match="true or false"):
        changed_pool(POOL, POOL, burst_on_pressure=1)  # type: ignore[arg-type]


async def test_the_plane_changes_the_pool_for_its_life_and_audits_it(
    plane: ControlPlane, tmp_path: Path
) -> None:
    changed = await plane.set_pool_policy(
        ANA, "gpu", min_nodes=1, max_nodes=2, burst_on_pressure=True
    )
    assert plane.pool("gpu") == changed == plane.pools()[0]
    assert changed.policy == replace(PoolPolicy(), min_nodes=1, burst_on_pressure=True)
    assert plane.config.pools[0].max_nodes == 2  # what the policy loop reads each pass
    assert "pool gpu's policy set by ana" in plane.reports[-1]
    records = list(read(tmp_path / "audit.jsonl"))
    assert [(r.action, r.decision, r.outcome) for r in records] == [
        ("set-pool-policy", "allowed", "started"),
        (
            "set-pool-policy",
            "allowed",
            "done: min_nodes 1, max_nodes 2, bursts on queue pressure",
        ),
    ]
    assert records[0].params["max_nodes"] == 2 and records[0].frontend == "notebook"
    # A lowered max holds for people's bursts too; raising it back is allowed.
    with pytest.raises(Refused, match="allows at most 2 node"):
        await plane.burst(ANA, "gpu", count=3)
    assert plane.store.nodes("gpu") == []
    assert (await plane.burst(ANA, "gpu", count=2)).launched == 2
    with pytest.raises(Refused, match="allows at most 2 node"):
        await plane.burst(ANA, "gpu", count=1)
    assert (await plane.set_pool_policy(ANA, "gpu", max_nodes=8)).max_nodes == 8
    assert (await plane.burst(ANA, "gpu", count=1)).launched == 1


async def test_a_change_the_file_does_not_allow_is_refused_and_changes_nothing(
    plane: ControlPlane, tmp_path: Path
) -> None:
    with pytest.raises(Refused, match="at most 8 nodes"):
        await plane.set_pool_policy(ANA, "gpu", max_nodes=20)
    with pytest.raises(Refused, match="no pool named 'gpux'"):
        await plane.set_pool_policy(ANA, "gpux", min_nodes=1)
    assert plane.pool("gpu") == POOL
    outcomes = [r.outcome for r in read(tmp_path / "audit.jsonl")]
    assert outcomes[1].startswith("refused: pool gpu may have at most 8 nodes"), outcomes
