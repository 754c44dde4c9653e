"""The lifecycle store against real SQLite files: WAL, migrations, atomic writes, intents,
instances and the cost ledger."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tidectl.console.lifecycle.errors import (
    NotAStore,
    SchemaTooNew,
    StoreError,
    TokenReused,
    UnknownRecord,
)
from tidectl.console.lifecycle.migrations import MIGRATIONS
from tidectl.console.lifecycle.records import (
    InstanceRecord,
    IntentAction,
    IntentRecord,
    IntentStatus,
)
from tidectl.console.lifecycle.states import IllegalTransition, NodeKind, State
from tidectl.console.lifecycle.store import Store, default_path

WHO = {"actor": "ada", "request_id": "req-1"}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tidectl" / "lab.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    with Store.open(path) as opened:
        yield opened


def _raw(path: Path) -> sqlite3.Connection:
    """A second, independent connection to the same file: what another process would see."""
    return sqlite3.connect(path, isolation_level=None)


def _add_cloud(store: Store, name: str, at: float = 0.0, pool: str = "a100") -> None:
    store.add_node(name, NodeKind.CLOUD, pool, State.REQUESTED, at, reason="burst", **WHO)


def _walk(store: Store, name: str, *states: State, at: float = 1.0) -> None:
    for i, state in enumerate(states):
        store.transition(name, state, reason=f"to {state}", at=at + i, **WHO)


# -- file, pragmas, migrations ------------------------------------------------------------


def test_the_file_is_in_wal_mode_with_foreign_keys_and_private_folders(
    store: Store, path: Path
) -> None:
    with _raw(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_intents_are_written_durably_and_the_connection_goes_back_to_normal(
    store: Store,
) -> None:
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    _burst(store, "t")
    store._db.set_trace_callback(None)
    assert seen[0] == "PRAGMA synchronous=FULL"
    assert seen[-1] == "PRAGMA synchronous=NORMAL"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_default_path_follows_xdg(tmp_path: Path) -> None:
    home = Path.home()
    assert default_path("lab", {"XDG_DATA_HOME": str(tmp_path)}) == (
        tmp_path / "tidectl" / "lab.sqlite3"
    )
    # A relative XDG_DATA_HOME is invalid by the spec and ignored.
    expected = home / ".local" / "share" / "tidectl" / "lab.sqlite3"
    assert default_path("lab", {"XDG_DATA_HOME": "rel/dir"}) == expected
    assert default_path("lab", {}) == expected
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError, match=re.escape("give the store's path explicitly")):
            default_path(bad, {})


def test_migrations_run_once_and_reopening_changes_nothing(store: Store, path: Path) -> None:
    _add_cloud(store, "aws-1")
    store.close()
    with _raw(path) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
        cookie = raw.execute("PRAGMA schema_version").fetchone()[0]  # bumped by any DDL
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"nodes", "transitions", "intents", "instances", "ledger"} <= tables
    with Store.open(path) as again:
        node = again.node("aws-1")
        assert node is not None and node.state is State.REQUESTED
    with _raw(path) as raw:
        assert raw.execute("PRAGMA schema_version").fetchone()[0] == cookie
        assert raw.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_every_migration_step_only_adds() -> None:
    additive = re.compile(
        r"\s*(CREATE (UNIQUE )?INDEX|CREATE TABLE|ALTER TABLE \w+ ADD COLUMN)\b", re.I
    )
    for step in MIGRATIONS:
        for statement in step:
            assert additive.match(statement), statement


def test_notices_are_kept_once_per_key_and_listed_by_time_and_actor(store: Store) -> None:
    warn = {"actor": "policy", "pool": "a100", "key": "budget-warning:a100:day:0"}
    assert store.add_notice("budget-warning", "85 % spent", at=100.0, **warn) is True
    # The same key again (a restarted service, the same day): not kept, and said so.
    assert store.add_notice("budget-warning", "86 % spent", at=200.0, **warn) is False
    assert store.has_notice("budget-warning:a100:day:0")
    assert store.add_notice("note", "no key: may repeat", actor="ana", at=150.0) is True
    assert store.add_notice("note", "no key: may repeat", actor="ana", at=160.0) is True
    listed = store.notices(0.0)
    assert [(n.at, n.sentence, n.pool) for n in listed] == [
        (100.0, "85 % spent", "a100"),
        (150.0, "no key: may repeat", None),
        (160.0, "no key: may repeat", None),
    ]
    assert [n.at for n in store.notices(120.0)] == [150.0, 160.0]
    assert [n.at for n in store.notices(0.0, actor="policy")] == [100.0]
    assert [n.at for n in store.notices(0.0, limit=2)] == [150.0, 160.0]  # the newest two


def test_a_store_of_an_older_version_gains_notices_and_keeps_its_rows(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with _raw(path) as raw:  # a version-3 store, as the tidectl before notices wrote it
        raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        raw.execute("INSERT INTO schema_version VALUES (3)")
        for step in MIGRATIONS[:3]:
            for statement in step:
                raw.execute(statement)
    with Store.open(path) as older:
        _add_cloud(older, "aws-1")
        assert older.notices(0.0) == []
        assert older.add_notice("budget-warning", "said", actor="policy", key="k") is True
    with _raw(path) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == len(MIGRATIONS)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_store_from_a_newer_tidectl_is_refused_and_left_untouched(path: Path) -> None:
    path.parent.mkdir(parents=True)
    newer = len(MIGRATIONS) + 1
    with _raw(path) as raw:
        raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        raw.execute("INSERT INTO schema_version VALUES (?)", (newer,))
        raw.execute("CREATE TABLE future (x)")
    before = _digest(path)
    with pytest.raises(SchemaTooNew) as refused:
        Store.open(path)
    assert str(refused.value) == (
        f"{path}: the store has schema version {newer}, and this tidectl knows versions up to "
        f"{len(MIGRATIONS)}; it was written by a newer tidectl, so upgrade tidectl (the file "
        "was not changed)"
    )
    assert _digest(path) == before
    with _raw(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_files_that_are_not_a_store_are_refused_and_left_untouched(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.sqlite3"
    garbage.write_bytes(b"these are my notes, not a database" * 100)
    with pytest.raises(NotAStore, match="not a SQLite database"):
        Store.open(garbage)
    foreign = tmp_path / "other.sqlite3"
    with _raw(foreign) as raw:
        raw.execute("CREATE TABLE customers (name)")
    before = _digest(foreign)
    with pytest.raises(NotAStore, match="not a tidectl store"):
        Store.open(foreign)
    assert _digest(foreign) == before


# -- nodes and transitions ----------------------------------------------------------------


def test_nodes_are_added_moved_and_listed(store: Store) -> None:
    _add_cloud(store, "aws-1", at=10.0)
    _add_cloud(store, "aws-2", at=10.0, pool="h100")
    store.add_node("gpu001", NodeKind.ONPREM, None, State.ACTIVE, 5.0, reason="config", **WHO)
    move = store.transition(
        "aws-1", State.PROVISIONING, reason="launched", at=11.0, instance_id="i-1", **WHO
    )
    assert (move.before, move.after, move.at, move.reason) == (
        State.REQUESTED,
        State.PROVISIONING,
        11.0,
        "launched",
    )
    node = store.node("aws-1")
    assert node is not None
    assert (node.state, node.state_since, node.instance_id, node.created_at, node.updated_at) == (
        State.PROVISIONING,
        11.0,
        "i-1",
        10.0,
        11.0,
    )
    assert store.node("nope") is None
    assert [n.name for n in store.nodes()] == ["aws-1", "aws-2", "gpu001"]
    assert [n.name for n in store.nodes(pool="h100")] == ["aws-2"]
    assert [n.name for n in store.nodes(states=[State.ACTIVE, State.PROVISIONING])] == [
        "aws-1",
        "gpu001",
    ]
    assert store.nodes(pool="a100", states=[State.REQUESTED]) == []
    history = store.history("aws-1")
    assert [(t.before, t.after) for t in history] == [
        (None, State.REQUESTED),
        (State.REQUESTED, State.PROVISIONING),
    ]
    assert history[1] == move


def test_an_illegal_move_is_refused_and_nothing_is_written(store: Store) -> None:
    _add_cloud(store, "aws-1")
    _walk(store, "aws-1", State.PROVISIONING, State.BOOTSTRAPPING, State.JOINING, State.ACTIVE)
    before = store.node("aws-1")
    with pytest.raises(IllegalTransition, match="the way to terminating is active → draining"):
        store.transition("aws-1", State.TERMINATING, reason="kill", at=99.0, **WHO)
    assert store.node("aws-1") == before
    assert len(store.history("aws-1")) == 5
    with pytest.raises(UnknownRecord, match="no node named ghost"):
        store.transition("ghost", State.ACTIVE, reason="x", at=1.0, **WHO)


def test_a_node_cannot_be_added_twice_or_in_a_state_it_cannot_start_in(store: Store) -> None:
    _add_cloud(store, "aws-1")
    with pytest.raises(StoreError, match="already in the store"):
        _add_cloud(store, "aws-1")
    with pytest.raises(IllegalTransition, match="starts as requested or provisioning"):
        store.add_node("aws-2", NodeKind.CLOUD, "a100", State.ACTIVE, 0.0, reason="x", **WHO)
    assert [n.name for n in store.nodes()] == ["aws-1"]
    assert store.history("aws-2") == []


@pytest.mark.parametrize(
    "failing",
    [
        "BEFORE INSERT ON transitions",
        "BEFORE UPDATE ON nodes",
    ],
)
def test_a_failure_midway_through_a_transition_writes_nothing(
    store: Store, path: Path, failing: str
) -> None:
    _add_cloud(store, "aws-1")
    with _raw(path) as raw:  # a real SQLite failure, injected into one of the two statements
        raw.execute(f"CREATE TRIGGER injected {failing} BEGIN SELECT RAISE(ABORT, 'disk'); END")
    with pytest.raises(sqlite3.IntegrityError, match="disk"):
        store.transition("aws-1", State.PROVISIONING, reason="launched", at=5.0, **WHO)
    with _raw(path) as raw:
        assert raw.execute("SELECT state, state_since FROM nodes").fetchall() == [
            ("requested", 0.0)
        ]
        assert raw.execute("SELECT count(*) FROM transitions").fetchone()[0] == 1
        raw.execute("DROP TRIGGER injected")
    # No transaction was left open: the next write goes through.
    store.transition("aws-1", State.PROVISIONING, reason="launched", at=6.0, **WHO)
    assert [t.after for t in store.history("aws-1")] == [State.REQUESTED, State.PROVISIONING]


# -- intents ------------------------------------------------------------------------------


def _burst(
    store: Store, token: str, count: int = 4, detail: dict[str, object] | None = None
) -> IntentRecord:
    return store.add_intent(
        token=token,
        action=IntentAction.BURST,
        pool="a100",
        count=count,
        frontend="cli",
        at=1.0,
        actor="ada",
        request_id="req-1",
        detail=detail,
    )


def test_intents_are_idempotent_on_their_token(store: Store) -> None:
    first = _burst(store, "tok-1", detail={"zones": ["a", "b"]})
    again = store.add_intent(
        token="tok-1",
        action=IntentAction.BURST,
        pool="a100",
        count=4,
        frontend="tui",  # another front end retrying the same request
        actor="bob",
        request_id="req-2",
        at=50.0,
        detail={"zones": ["a", "b"]},
    )
    assert again == first
    assert len(store.intents()) == 1
    assert store.intent_by_token("tok-1") == first
    assert store.intent(first.id) == first
    assert store.intent("nope") is None and store.intent_by_token("nope") is None


@pytest.mark.parametrize(
    ("extra", "asked"),
    [
        ({"count": 8}, "burst pool a100 count 8"),
        ({"detail": {"zones": ["c"]}}, 'burst pool a100 count 4 detail {"zones":["c"]}'),
    ],
)
def test_a_token_reused_for_another_request_is_refused(
    store: Store, extra: dict[str, Any], asked: str
) -> None:
    first = _burst(store, "tok-1")
    with pytest.raises(TokenReused) as refused:
        _burst(store, "tok-1", **extra)
    assert str(refused.value) == (
        f'the idempotency token "tok-1" was already used for burst pool a100 count 4 (intent '
        f"{first.id}); this request asks for {asked}: use a new token for a new request"
    )
    assert len(store.intents()) == 1


def test_intent_status_closes_once(store: Store) -> None:
    intent = store.add_intent(
        token="t",
        action=IntentAction.TERMINATE,
        pool=None,
        frontend="cli",
        actor="ada",
        request_id="req-1",
        at=1.0,
    )
    assert store.intents(IntentStatus.PENDING) == [intent]
    done = store.set_intent_status(intent.id, IntentStatus.FAILED, at=2.0, error="quota")
    assert (done.status, done.status_at, done.error) == (IntentStatus.FAILED, 2.0, "quota")
    assert store.intent(intent.id) == done
    assert store.set_intent_status(intent.id, IntentStatus.FAILED, at=3.0) == done
    with pytest.raises(StoreError, match="already failed; only a pending intent can become"):
        store.set_intent_status(intent.id, IntentStatus.DONE, at=4.0)
    assert store.intents(IntentStatus.PENDING) == []
    with pytest.raises(UnknownRecord):
        store.set_intent_status("nope", IntentStatus.DONE, at=4.0)


# -- instances ----------------------------------------------------------------------------


def _instance(store: Store, instance_id: str, intent: str, state: str, at: float) -> InstanceRecord:
    return store.record_instance(
        instance_id,
        provider="aws",
        pool="a100",
        region="us-east-1",
        zone="us-east-1a",
        instance_type="p4d.24xlarge",
        intent_id=intent,
        node="aws-1" if state == "running" else None,
        launched_at=10.0,
        tags={"tidectl:intent": intent},
        state=state,
        seen_at=at,
    )


def test_instances_are_recorded_observed_and_closed(store: Store) -> None:
    _instance(store, "i-1", "in-1", "pending", 10.0)
    _instance(store, "i-2", "in-2", "pending", 10.0)
    seen = _instance(store, "i-1", "in-1", "running", 20.0)
    later = _instance(store, "i-1", "in-1", "running", 30.0)  # no node given: the node stays
    assert later.node == "aws-1" == seen.node
    assert (later.last_seen_state, later.last_seen_at) == ("running", 30.0)
    assert later.tags == {"tidectl:intent": "in-1"}
    assert [i.instance_id for i in store.instances(intent_id="in-1")] == ["i-1"]
    closed = store.confirm_terminated("i-1", 40.0)
    assert (closed.confirmed_terminated, closed.terminated_at) == (True, 40.0)
    assert store.confirm_terminated("i-1", 50.0).terminated_at == 40.0  # the first word stands
    assert [i.instance_id for i in store.instances(open_only=True)] == ["i-2"]
    assert [i.instance_id for i in store.instances()] == ["i-1", "i-2"]
    with pytest.raises(StoreError, match="cannot also belong to provider aws, intent in-9"):
        _instance(store, "i-1", "in-9", "running", 60.0)
    with pytest.raises(UnknownRecord, match="no instance i-404"):
        store.confirm_terminated("i-404", 1.0)


# -- cost ledger --------------------------------------------------------------------------


def test_spend_comes_from_start_and_stop_times_and_prices(store: Store) -> None:
    for name in ("aws-1", "aws-2"):
        _add_cloud(store, name)
    store.add_node("aws-3", NodeKind.CLOUD, "h100", State.REQUESTED, 0.0, reason="b", **WHO)
    store.open_ledger("aws-1", "a100", "in-1", 3.6, at=0.0)
    store.open_ledger("aws-2", "a100", "in-2", 7.2, at=1800.0)
    store.open_ledger("aws-3", "h100", "in-2", 10.0, at=0.0)
    closed = store.close_ledger("aws-1", at=3600.0)
    assert closed is not None and (closed.started_at, closed.stopped_at) == (0.0, 3600.0)
    store.close_ledger("aws-3", at=360.0)

    assert store.spend(until=5400.0) == pytest.approx(3.6 + 7.2 + 1.0)
    assert store.spend("a100", until=5400.0) == pytest.approx(3.6 + 7.2)
    # A closed stretch counts only up to `until` when that comes first; the open one from its
    # start; a stretch not started yet not at all.
    assert store.spend("a100", until=1800.0) == pytest.approx(1.8)
    assert store.spend("a100", until=900.0) == pytest.approx(0.9)
    assert store.spend(node="aws-2", until=9000.0) == pytest.approx(14.4)
    assert store.spend(intent_id="in-2", until=5400.0) == pytest.approx(7.2 + 1.0)
    # From `since` (a budget's day): only what each stretch ran after it.
    assert store.spend(since=1800.0, until=5400.0) == pytest.approx(1.8 + 7.2)
    assert store.spend("h100", since=360.0, until=5400.0) == 0.0  # it stopped at 360
    assert store.spend(since=3600.0, until=3600.0) == 0.0
    assert store.burn_rate() == pytest.approx(7.2)
    assert store.burn_rate("h100") == 0.0
    assert closed.cost(until=9999.0) == pytest.approx(3.6)


def test_the_ledger_refuses_double_billing_and_tolerates_closing_twice(store: Store) -> None:
    _add_cloud(store, "aws-1")
    store.open_ledger("aws-1", "a100", None, 1.0, at=100.0)
    with pytest.raises(StoreError, match=re.escape("billing since 100.0; close its ledger first")):
        store.open_ledger("aws-1", "a100", None, 1.0, at=200.0)
    # The wall clock stepped back: zero cost, not a negative one.
    closed = store.close_ledger("aws-1", at=50.0)
    assert closed is not None and closed.stopped_at == 100.0
    assert store.close_ledger("aws-1", at=300.0) is None
    assert store.spend(until=1000.0) == 0.0
    assert len(store.ledger("aws-1")) == 1
    with pytest.raises(UnknownRecord):
        store.open_ledger("ghost", "a100", None, 1.0, at=0.0)
    with pytest.raises(ValueError, match="finite number >= 0"):
        store.open_ledger("aws-1", "a100", None, -1.0, at=0.0)


def test_a_cloud_nodes_moves_open_and_close_its_ledger_stretch(store: Store) -> None:
    """Billing follows the state in the same transaction: provisioning opens a stretch at the
    price the launch recorded, terminated closes it; a failed node still bills until then."""
    store.add_node("aws-1", NodeKind.CLOUD, "a100", State.REQUESTED, 0.0, reason="b", **WHO)
    assert store.ledger("aws-1") == []  # requested: nothing launched, nothing bills
    store.transition(
        "aws-1", State.PROVISIONING, reason="launched", at=100.0, price_per_hour=3.6, **WHO
    )
    assert store.node("aws-1").price_per_hour == 3.6  # type: ignore[union-attr]
    assert store.burn_rate("a100") == pytest.approx(3.6)
    _walk(store, "aws-1", State.BOOTSTRAPPING, State.FAILED, at=200.0)
    assert len(store.ledger("aws-1")) == 1  # failed still bills: its instance may run
    _walk(store, "aws-1", State.TERMINATING, State.TERMINATED, at=3700.0)
    (stretch,) = store.ledger("aws-1")
    assert (stretch.started_at, stretch.stopped_at, stretch.price_per_hour) == (100.0, 3701.0, 3.6)
    assert store.spend(node="aws-1", until=9999.0) == pytest.approx(3.6 * 3601 / 3600)
    assert store.burn_rate() == 0.0


def test_an_adopted_instance_bills_from_its_entry_and_on_prem_nodes_never_bill(
    store: Store,
) -> None:
    store.add_node(
        "orphan-1",
        NodeKind.CLOUD,
        "a100",
        State.PROVISIONING,
        50.0,
        reason="adopted",
        instance_id="i-1",
        price_per_hour=2.0,
        **WHO,
    )
    store.add_node("gpu001", NodeKind.ONPREM, None, State.ACTIVE, 0.0, reason="seen", **WHO)
    _walk(store, "gpu001", State.DRAINING, State.DRAINED, State.ACTIVE)
    assert [e.node for e in store.ledger()] == ["orphan-1"]
    assert store.burn_rate() == pytest.approx(2.0)
    # A cancelled request never launched: requested → terminated opens nothing.
    _add_cloud(store, "aws-9")
    _walk(store, "aws-9", State.TERMINATED)
    assert store.ledger("aws-9") == []
    with pytest.raises(ValueError, match="finite number >= 0"):
        store.transition(
            "orphan-1", State.BOOTSTRAPPING, reason="x", at=60.0, price_per_hour=-1, **WHO
        )
