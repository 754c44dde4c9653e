"""``tidectl nodes``: the lifecycle store as a table or JSON; no store is said, not created."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tidectl.console.cli import main
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.lifecycle.store import Store

CONFIG = """\
[cluster]
name = "lab"
[ssh]
user = "tidectl"
known_hosts = "known_hosts"
[[nodes]]
names = "gpu[1-2]"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "cluster.toml"
    path.write_text(CONFIG)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_no_store_is_said_and_not_created(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "lab.sqlite3"
    status, out, _ = run(capsys, "nodes", "-c", str(config), "--store", str(store))
    assert status == 0
    assert "No lifecycle store at" in out and "nothing has been burst or drained" in out
    status, out, _ = run(capsys, "nodes", "-c", str(config), "--store", str(store), "--json")
    assert json.loads(out) == {"cluster": "lab", "store": str(store), "nodes": []}
    assert not store.exists()


def test_nodes_with_state_instance_and_cost(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lab.sqlite3"
    hour_ago = time.time() - 3600
    with Store.open(path) as store:
        who = {"reason": "test", "actor": "test", "request_id": "r1"}
        store.add_node(
            "burst-0001",
            NodeKind.CLOUD,
            "burst",
            State.PROVISIONING,
            hour_ago,
            instance_id="i-0001",
            price_per_hour=24.0,  # an adopted instance bills from its entry
            **who,
        )
        store.add_node("gpu1", NodeKind.ONPREM, None, State.DRAINING, hour_ago, **who)
    status, out, _ = run(capsys, "nodes", "-c", str(config), "--store", str(path), "--json")
    assert status == 0
    nodes = {n["name"]: n for n in json.loads(out)["nodes"]}
    assert nodes["burst-0001"]["state"] == "provisioning"
    assert nodes["burst-0001"]["instance_id"] == "i-0001"
    assert nodes["burst-0001"]["cost_usd"] == pytest.approx(24.0, abs=0.1)
    assert nodes["gpu1"]["kind"] == "onprem" and nodes["gpu1"]["cost_usd"] == 0.0
    assert nodes["gpu1"]["in_state_s"] == pytest.approx(3600, abs=60)

    status, out, _ = run(capsys, "nodes", "-c", str(config), "--store", str(path))
    assert status == 0
    assert "burst-0001" in out and "provisioning" in out and "$24.0" in out
    assert "gpu1" in out and "draining" in out


def test_a_store_from_a_newer_tidectl_is_refused_with_a_sentence(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lab.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        raw.execute("INSERT INTO schema_version VALUES (999)")
    status, _, err = run(capsys, "nodes", "-c", str(config), "--store", str(path))
    assert status == 2
    assert err.startswith("tidectl nodes: ") and "999" in err


def test_a_cluster_name_that_cannot_name_a_file_asks_for_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "cluster.toml"
    path.write_text(CONFIG.replace('name = "lab"', 'name = "lab/east"'))
    status, _, err = run(capsys, "nodes", "-c", str(path))
    assert status == 2
    assert "--store PATH" in err
