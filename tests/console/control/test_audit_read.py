"""``ControlPlane.audit_records``: a read of the audit log, checked like the other reads (a viewer
may, an identity with no role may not), choosing records as ``tidectl audit show`` does, and
saying how far the hash chain verifies — a record changed on disk shows at the next read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.console.lifecycle.world import POOL, World
from tidectl.console.audit import AuditLog
from tidectl.console.config.loader import parse_config
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane

ROLES = '[roles]\noperator = ["opal"]\nviewer = ["vic"]\n'
OPAL = Caller("opal", Frontend.CLI)
VIC = Caller("vic", Frontend.CONSOLE)
NOBODY = Caller("nobody", Frontend.NOTEBOOK)


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n' + ROLES
    )
    config = replace(parse_config(text, tmp_path / "cluster.toml"), pools=(POOL,))
    with AuditLog(tmp_path / "audit.jsonl") as log:
        yield ControlPlane(
            config, world.store, world.engine(), scheduler=world.scheduler, audit=log
        )


async def _drain_and_a_denied_burst(plane: ControlPlane, world: World) -> None:
    await world.scheduler.add_node("gpu1", 8)
    await plane.drain(OPAL, ["gpu1"], reason="firmware", request_id="req-drain")
    with pytest.raises(Refused, match="nobody may not burst"):
        await plane.burst(NOBODY, "gpu", count=1, request_id="req-burst")


async def test_a_viewer_reads_the_records_and_the_chain(plane: ControlPlane, world: World) -> None:
    await _drain_and_a_denied_burst(plane, world)
    page = await plane.audit_records(VIC)
    assert page.path == str(plane.audit.path if plane.audit else None)
    assert [
        (r.seq, r.actor, r.action, r.decision, r.outcome.split(":")[0]) for r in page.records
    ] == [
        (1, "opal", "drain", "allowed", "started"),
        (2, "opal", "drain", "allowed", "done"),
        (3, "nobody", "burst", "denied", "denied"),
    ]
    assert page.records[0].targets == ("gpu1",) and page.records[0].frontend == "cli"
    assert page.records[2].rule == "nobody is in no [roles] entry"
    assert page.matched == 3
    assert page.chain is not None and page.chain.ok and page.chain.records == 3
    assert page.chain.last_hash == page.records[-1].hash


async def test_records_are_chosen_as_audit_show_chooses_them(
    plane: ControlPlane, world: World
) -> None:
    await _drain_and_a_denied_burst(plane, world)
    by_nobody = await plane.audit_records(VIC, actor="nobody")
    assert [r.request_id for r in by_nobody.records] == ["req-burst"]
    drains = await plane.audit_records(VIC, action="drain")
    assert [r.seq for r in drains.records] == [1, 2]
    later = await plane.audit_records(VIC, since=datetime.now(UTC) + timedelta(minutes=1))
    assert (later.records, later.matched) == ((), 0)
    earlier = await plane.audit_records(VIC, since=datetime.now(UTC) - timedelta(minutes=1))
    assert earlier.matched == 3
    newest = await plane.audit_records(VIC, limit=1)
    assert [r.seq for r in newest.records] == [3] and newest.matched == 3


async def test_an_identity_with_no_role_may_not_read_the_log(
    plane: ControlPlane, world: World
) -> None:
    await _drain_and_a_denied_burst(plane, world)
    with pytest.raises(Refused, match="nobody may not read the cluster: that needs the viewer"):
        await plane.audit_records(NOBODY)
    # The refused read is not an action: nothing more was written.
    assert (await plane.audit_records(VIC)).matched == 3


async def test_a_record_changed_on_disk_shows_in_the_chain_at_the_next_read(
    plane: ControlPlane, world: World
) -> None:
    await _drain_and_a_denied_burst(plane, world)
    assert plane.audit is not None
    path = plane.audit.path
    assert (await plane.audit_records(VIC)).chain.ok  # type: ignore[union-attr]
    lines = path.read_bytes().splitlines(keepends=True)
    changed = lines[1].replace(b"opal", b"eve")
    assert changed != lines[1]
    path.write_bytes(lines[0] + changed + lines[2])
    chain = (await plane.audit_records(VIC)).chain
    assert chain is not None and not chain.ok
    assert (chain.first_bad, chain.records) == (2, 1)
    assert chain.why and "hash does not match its content" in chain.why


async def test_a_plane_without_a_log_says_so(plane: ControlPlane) -> None:
    plane.audit = None
    page = await plane.audit_records(VIC)
    assert (page.path, page.records, page.chain) == (None, (), None)
