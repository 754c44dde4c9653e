"""A ControlPlane assembled from cluster.toml: what it refuses to build, and the whole path of a
sim burst — launch, real SSH with the handed-over host key, the agent streaming, the admission
gate, the sim scheduler — to active, and back out by drain and terminate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.console.roles import TEST_ROLES
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.control.assemble import AssemblyError, assemble, store_path
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.lifecycle.states import State
from tidectl.console.scheduler.slurm import SlurmScheduler

HEAD = '[cluster]\nname = "lab"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
NODES = '[[nodes]]\nnames = "gpu[1-2]"\n'
SIM_POOL = '[[pools]]\nname = "burst"\nprovider = "sim"\nmax_nodes = 4\nboot_delay_s = 0\n'
ANA = Caller("ana", Frontend.CONSOLE)


def _config(folder: Path, text: str) -> ClusterConfig:
    (folder / "known_hosts").write_text("")
    return parse_config(HEAD + NODES + text + TEST_ROLES, folder / "cluster.toml")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[scheduler]\nkind = "sim"\n', "lives inside the process that runs it"),
        (SIM_POOL, "pool burst is a sim pool"),
    ],
)
async def test_what_a_one_shot_command_cannot_run_is_refused(
    tmp_path: Path, text: str, words: str
) -> None:
    config = _config(tmp_path, text)
    with pytest.raises(AssemblyError, match=words):
        await assemble(config, store=tmp_path / "s.sqlite3", collect=False)
    assert not (tmp_path / "s.sqlite3").exists()  # refused before anything was opened


def test_the_store_path_comes_from_the_option_then_the_config_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    config = _config(tmp_path, "")
    assert store_path(config) == tmp_path / "xdg" / "tidectl" / "lab.sqlite3"
    configured = _config(tmp_path, '[store]\npath = "here.sqlite3"\n')
    assert store_path(configured) == tmp_path / "here.sqlite3"
    assert store_path(configured, tmp_path / "x") == tmp_path / "x"


async def test_a_sim_burst_goes_active_over_real_ssh_and_drains_out(tmp_path: Path) -> None:
    config = _config(tmp_path, SIM_POOL + '[scheduler]\nkind = "sim"\n')
    plane = await assemble(
        config, store=tmp_path / "s.sqlite3", in_process_sim=True, interval_s=0.2
    )
    async with plane:
        result = await plane.burst(ANA, "burst", count=2)
        progress = await plane.wait(result.nodes, {State.ACTIVE}, timeout_s=60)
        assert set(progress.states.values()) == {State.ACTIVE}, (progress, plane.reports)
        assert plane.fleet is not None
        for name in result.nodes:
            node = plane.fleet.nodes[name]
            assert node.sample is not None and node.spec.labels["pool"] == "burst"
        await plane.drain(ANA, list(result.nodes), reason="done")
        await plane.wait(result.nodes, {State.DRAINED}, timeout_s=30)
        await plane.terminate(ANA, list(result.nodes), reason="done")
        done = await plane.wait(result.nodes, {State.TERMINATED}, timeout_s=30)
        assert set(done.states.values()) == {State.TERMINATED}
        await plane.reconcile_now()  # the pass after the close unlinks them
        assert not set(result.nodes) & set(plane.fleet.nodes)
        assert plane.burn_rate() == 0.0


async def test_a_second_control_plane_on_one_store_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    first = await assemble(config, store=tmp_path / "s.sqlite3", collect=False, who="tidectl x")
    try:
        with pytest.raises(AssemblyError, match=r"in use by tidectl x \(pid \d+\)"):
            await assemble(config, store=tmp_path / "s.sqlite3", collect=False)
    finally:
        await first.aclose()
    second = await assemble(config, store=tmp_path / "s.sqlite3", collect=False)
    await second.aclose()


async def test_a_slurm_scheduler_is_reached_through_slurms_own_tools(tmp_path: Path) -> None:
    config = _config(tmp_path, '[scheduler]\nkind = "slurm"\n')
    plane = await assemble(config, store=tmp_path / "s.sqlite3", collect=False)
    try:
        assert isinstance(plane.engine.operations._scheduler, SlurmScheduler)
    finally:
        await plane.aclose()
