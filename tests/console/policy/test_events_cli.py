"""``tidectl events``: the store's lifecycle moves, newest last, filtered by time, node and
actor — the policy's rules visible with their reasons — as text and JSON."""

from __future__ import annotations

import json
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
user = "t"
known_hosts = "known_hosts"
[[nodes]]
names = "gpu1"
[store]
path = "lab.sqlite3"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "cluster.toml"
    path.write_text(CONFIG)
    now = time.time()
    with Store.open(tmp_path / "lab.sqlite3") as store:
        old = {"actor": "ana", "request_id": "r0"}
        store.add_node(
            "c-0", NodeKind.CLOUD, "p", State.REQUESTED, now - 3 * 86400, reason="b", **old
        )
        who = {"reason": "seen", "actor": "ana", "request_id": "r1"}
        store.add_node("c-1", NodeKind.ONPREM, None, State.ACTIVE, now - 600, **who)
        store.transition(
            "c-1",
            State.DRAINING,
            reason="drain asked by policy: policy: idle: no jobs for 30 min",
            actor="policy",
            request_id="r2",
            at=now - 60,
        )
        store.add_notice(
            "budget-warning",
            "budget warning: pool p's daily budget of $100.00: $85.00 spent, $15.00 left",
            actor="policy",
            pool="p",
            key="budget-warning:p:day:0",
            at=now - 30,
        )
    return path


def test_events_list_moves_with_who_and_why_filtered(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["events", "-c", str(config), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [(e["kind"], e.get("node"), e.get("after"), e["actor"]) for e in events] == [
        ("move", "c-1", "active", "ana"),
        ("move", "c-1", "draining", "policy"),
        ("notice", None, None, "policy"),
    ]  # c-0 is three days old: outside the default day
    assert events[-1]["notice"] == "budget-warning" and events[-1]["pool"] == "p"
    assert events[-1]["reason"].startswith("budget warning: pool p's daily budget")
    assert main(["events", "-c", str(config), "--actor", "policy", "--since", "7d"]) == 0
    text = capsys.readouterr().out
    assert "active → draining" in text and "policy: idle: no jobs for 30 min" in text
    assert "budget warning" in text and "$15.00 left" in text
    assert "c-0" not in text
    assert main(["events", "-c", str(config), "--actor", "ana", "--json"]) == 0
    assert {e["kind"] for e in json.loads(capsys.readouterr().out)["events"]} == {"move"}
    assert main(["events", "-c", str(config), "--limit", "1", "--json"]) == 0
    assert [e["kind"] for e in json.loads(capsys.readouterr().out)["events"]] == ["notice"]
    assert main(["events", "-c", str(config), "--since", "7d", "--node", "c-0", "--json"]) == 0
    assert [e["node"] for e in json.loads(capsys.readouterr().out)["events"]] == ["c-0"]


def test_a_bad_since_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "-c", str(config), "--since", "yesterday"]) == 2
    assert "--since 'yesterday'" in capsys.readouterr().err
