"""The lifecycle store: one SQLite file per cluster, in WAL mode.

**One writer.** The control plane is the only process that writes; other processes (a CLI
listing nodes) may read at the same time, which WAL allows without blocking the writer. Every
write is one ``BEGIN IMMEDIATE`` transaction, so a crash between any two statements leaves the
file as it was before that transaction or after it, never in between: a node's state and the
transition row that explains it are written together, or not at all.

**Durability.** ``synchronous=NORMAL``: a committed transaction survives the control plane
being killed (``kill -9``, an exception, an OOM kill) because SQLite has handed it to the OS;
only an OS crash or power loss can take back the last few commits, and never corrupts the
file. Intents are the exception: they are committed with ``synchronous=FULL`` (an fsync of the
WAL, which also makes every earlier commit durable), because an intent must be on disk before
the provider is called. ``FULL`` for every write costs an fsync each (about 3 ms here), which a
64-node burst — hundreds of transitions — cannot afford; what a power loss can take back
(a transition, an instance row) the reconcile loop finds again from the provider's tags.

Never pickle: every field is an explicit column; free-form detail is JSON text.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from tidectl.console.lifecycle.errors import (
    SchemaTooNew,
    StoreError,
    TokenReused,
    UnknownRecord,
)
from tidectl.console.lifecycle.migrations import MIGRATIONS, migrate, schema_version
from tidectl.console.lifecycle.records import (
    InstanceRecord,
    IntentAction,
    IntentRecord,
    IntentStatus,
    JsonObject,
    LedgerEntry,
    NodeRecord,
    Notice,
    UsageRow,
)
from tidectl.console.lifecycle.states import (
    NodeKind,
    State,
    Transition,
    bills,
    check,
    check_entry,
)

__all__ = ["Store", "default_path"]

#: How long a write waits for a reader's lock before giving up (readers never block WAL
#: writers; this covers a checkpoint or a second writer that should not exist).
BUSY_TIMEOUT_S = 5.0


def default_path(cluster: str, env: Mapping[str, str] | None = None) -> Path:
    """Where a cluster's store lives unless config says otherwise.

    ``$XDG_DATA_HOME/tidectl/<cluster>.sqlite3``, or ``~/.local/share/tidectl/...`` when
    XDG_DATA_HOME is unset or not absolute (the XDG spec says to ignore a relative one).
    """
    if not cluster or cluster in {".", ".."} or "/" in cluster or "\0" in cluster:
        raise ValueError(
            f"cannot name a store file after the cluster {cluster!r}: a cluster name used as a "
            "file name must be non-empty and contain no '/'; give the store's path explicitly "
            "(tidectl nodes --store PATH)"
        )
    environ = os.environ if env is None else env
    xdg = environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "tidectl" / f"{cluster}.sqlite3"


class Store:
    """The nodes, their transitions, intents, instances and the cost ledger of one cluster.

    Open with :meth:`open`; use as a context manager or call :meth:`close`. Methods take the
    time (``at``, wall-clock seconds) from the caller, so the engine and the tests decide it.
    """

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._atomic_depth = 0

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """Open (creating it, and its folders with mode 0700, if needed) and migrate.

        A file written by a newer tidectl raises SchemaTooNew and is left untouched; a file
        that is not a tidectl store raises NotAStore.
        """
        file = Path(path)
        _make_private_dirs(file.parent)
        if not file.exists():
            # The -wal and -shm files SQLite creates take this file's mode.
            os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            db = sqlite3.connect(file, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        except sqlite3.OperationalError as error:
            raise StoreError(
                f"{file}: cannot open the store ({error}); check the path and its permissions"
            ) from None
        db.row_factory = sqlite3.Row
        try:
            # The version check runs first: a newer or foreign file must not even have its
            # journal mode changed.
            found = schema_version(db, file)
            if found > len(MIGRATIONS):
                raise SchemaTooNew(file, found, len(MIGRATIONS))
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"{file}: SQLite could not use WAL mode here (journal mode stays {mode}); "
                    "put the store on a local file system"
                )
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db, file)
        except BaseException:
            db.close()
            raise
        return cls(db, file)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Several writes as one transaction: all of them are committed, or none.

        For writes that must never be seen apart: an instance and the node it belongs to (a
        crash between them would leave an instance recorded, so never adopted, and bound to
        no node, so never terminated).
        """
        with self._writing():
            self._atomic_depth += 1
            try:
                yield
            finally:
                self._atomic_depth -= 1

    @contextmanager
    def _writing(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or none of it (inside
        :meth:`atomic`, part of that one)."""
        db = self._db
        if self._atomic_depth:
            if durable:
                raise StoreError("an intent must be written on its own, not inside atomic()")
            yield db
            return
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")

    # -- nodes and transitions ------------------------------------------------------------

    def add_node(
        self,
        name: str,
        kind: NodeKind,
        pool: str | None,
        state: State,
        at: float,
        *,
        reason: str,
        actor: str,
        request_id: str,
        instance_id: str | None = None,
        intent_id: str | None = None,
        price_per_hour: float | None = None,
    ) -> NodeRecord:
        """Write a new node and the history row that records its entry (before = None).

        A cloud node that enters billing (an adopted instance) opens its ledger stretch in
        the same transaction, at ``price_per_hour``.
        """
        kind, state = NodeKind(kind), State(state)
        if not name:
            raise ValueError("a node needs a name")
        check_entry(kind, name, state)
        _check_price(price_per_hour)
        with self._writing() as db:
            existing = db.execute("SELECT state FROM nodes WHERE name = ?", (name,)).fetchone()
            if existing is not None:
                raise StoreError(
                    f"a node named {name} is already in the store (state {existing[0]}); "
                    "move it with a transition instead of adding it again"
                )
            db.execute(
                "INSERT INTO nodes (name, kind, pool, state, state_since, instance_id, "
                "intent_id, created_at, updated_at, price_per_hour) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, kind, pool, state, at, instance_id, intent_id, at, at, price_per_hour),
            )
            _insert_transition(db, Transition(name, None, state, at, reason, actor, request_id))
            if kind is NodeKind.CLOUD and bills(state):
                _start_billing(db, name, at)
        return NodeRecord(
            name, kind, pool, state, at, instance_id, intent_id, at, at, price_per_hour
        )

    def relaunch(
        self,
        name: str,
        pool: str,
        intent_id: str,
        at: float,
        *,
        reason: str,
        actor: str,
        request_id: str,
    ) -> NodeRecord:
        """A terminated cloud node asked for again under its name (a Slurm CLOUD node resumed
        once more): back to requested for the new burst ``intent_id``, its old instance and
        price let go (they stay in the instances and ledger tables, and in its history).
        Raises IllegalTransition unless it is terminated, UnknownRecord if unknown."""
        with self._writing() as db:
            row = db.execute("SELECT kind, state FROM nodes WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownRecord(f"no node named {name} in the store; add it first")
            kind, before = NodeKind(row[0]), State(row[1])
            check(kind, name, before, State.REQUESTED)
            _insert_transition(
                db, Transition(name, before, State.REQUESTED, at, reason, actor, request_id)
            )
            db.execute(
                "UPDATE nodes SET state = ?, state_since = ?, updated_at = ?, pool = ?, "
                "intent_id = ?, instance_id = NULL, price_per_hour = NULL WHERE name = ?",
                (State.REQUESTED, at, at, pool, intent_id, name),
            )
        record = self.node(name)
        assert record is not None
        return record

    def node(self, name: str) -> NodeRecord | None:
        row = self._db.execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE name = ?", (name,))
        found = row.fetchone()
        return None if found is None else _node(found)

    def nodes(
        self,
        pool: str | None = None,
        states: Iterable[State] | None = None,
        *,
        live_only: bool = False,
    ) -> list[NodeRecord]:
        """Nodes by name, optionally only those of ``pool``, in one of ``states``, or (with
        ``live_only``) not yet terminated — what every reconcile pass reads."""
        where: list[str] = []
        args: list[object] = []
        if pool is not None:
            where.append("pool = ?")
            args.append(pool)
        if states is not None:
            wanted = [str(State(s)) for s in states]
            where.append(f"state IN ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        if live_only:
            where.append("state != 'terminated'")
        sql = f"SELECT {_NODE_COLUMNS} FROM nodes"
        if where:
            sql += " WHERE " + " AND ".join(where)
        cursor = self._db.cursor()
        # Plain tuples, not sqlite3.Row: a pass over a thousand nodes reads them all, and the
        # Row-to-dict-to-record path was the larger part of the pass (bench/reconcile.py).
        cursor.row_factory = None
        return [_node_from_tuple(row) for row in cursor.execute(sql + " ORDER BY name", args)]

    def transition(
        self,
        name: str,
        after: State,
        *,
        reason: str,
        actor: str,
        request_id: str,
        at: float,
        instance_id: str | None = None,
        price_per_hour: float | None = None,
    ) -> Transition:
        """Move a node, if the table allows it: its new state and the history row, together.

        ``instance_id`` and ``price_per_hour``, when given, are recorded on the node in the
        same transaction (the launch that moved it to provisioning returned them). The cost
        ledger follows the move in that transaction too: a cloud node that starts billing
        opens a stretch at its price, one that stops billing closes it — so no crash can
        leave an instance billing without a stretch, or a stretch open on a closed node.
        Raises IllegalTransition (nothing written) for a move the table refuses,
        UnknownRecord for a node the store lacks.
        """
        after = State(after)
        _check_price(price_per_hour)
        with self._writing() as db:
            row = db.execute("SELECT kind, state FROM nodes WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownRecord(f"no node named {name} in the store; add it first")
            kind, before = NodeKind(row[0]), State(row[1])
            check(kind, name, before, after)
            move = Transition(name, before, after, at, reason, actor, request_id)
            _insert_transition(db, move)
            db.execute(
                "UPDATE nodes SET state = ?, state_since = ?, updated_at = ?, "
                "instance_id = COALESCE(?, instance_id), "
                "price_per_hour = COALESCE(?, price_per_hour) WHERE name = ?",
                (after, at, at, instance_id, price_per_hour, name),
            )
            if kind is NodeKind.CLOUD and bills(after) and not bills(before):
                _start_billing(db, name, at)
            elif kind is NodeKind.CLOUD and bills(before) and not bills(after):
                _stop_billing(db, name, at)
        return move

    def history(self, name: str) -> list[Transition]:
        """Every recorded move of a node, oldest first (the first one is its entry)."""
        rows = self._db.execute(
            "SELECT node, before_state, after_state, at, reason, actor, request_id "
            "FROM transitions WHERE node = ? ORDER BY id",
            (name,),
        )
        return [_transition(row) for row in rows]

    def transitions_since(
        self, after_id: int = 0, limit: int = 500
    ) -> list[tuple[int, Transition]]:
        """Moves of every node recorded after row ``after_id``, oldest first, with their row
        ids (a front end's events view asks for what is new since the last id it saw)."""
        rows = self._db.execute(
            "SELECT id, node, before_state, after_state, at, reason, actor, request_id "
            "FROM transitions WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [(row["id"], _transition(row)) for row in rows]

    def moves(
        self,
        since: float,
        *,
        node: str | None = None,
        actor: str | None = None,
        limit: int = 200,
    ) -> list[Transition]:
        """The newest ``limit`` moves at or after ``since`` (of ``node``, by ``actor``),
        oldest first: ``tidectl events``."""
        where, args = ["at >= :since"], {"since": since, "node": node, "actor": actor}
        if node is not None:
            where.append("node = :node")
        if actor is not None:
            where.append("actor = :actor")
        rows = self._db.execute(
            "SELECT id, node, before_state, after_state, at, reason, actor, request_id "
            f"FROM transitions WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit",
            {**args, "limit": limit},
        ).fetchall()
        return [_transition(row) for row in reversed(rows)]

    def last_transition_id(self) -> int:
        """The row id of the newest move (0 when none): where a reader starts that wants
        only the latest moves, not the whole history."""
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM transitions").fetchone()[0])

    # -- intents --------------------------------------------------------------------------

    def add_intent(
        self,
        *,
        token: str,
        action: IntentAction,
        pool: str | None,
        actor: str,
        frontend: str,
        request_id: str,
        at: float,
        count: int | None = None,
        target: int | None = None,
        detail: JsonObject | None = None,
    ) -> IntentRecord:
        """Write an intent before any side effect, idempotently on ``token``.

        The same token with the same parameters (action, pool, count, target, detail) returns
        the intent already written, never a second row; with other parameters it raises
        TokenReused. Committed with an fsync: it must survive a power loss that follows the
        provider call it announces.
        """
        action = IntentAction(action)
        if not token:
            raise ValueError("an intent needs an idempotency token")
        for label, number in (("count", count), ("target", target)):
            if number is not None and (isinstance(number, bool) or number < 0):
                raise ValueError(f"an intent's {label} must be a whole number >= 0, not {number}")
        detail_json = _to_json(detail or {}, "the intent's detail")
        with self._writing(durable=True) as db:
            found = db.execute(
                f"SELECT {_INTENT_COLUMNS} FROM intents WHERE token = ?", (token,)
            ).fetchone()
            if found is not None:
                existing = _intent(found)
                asked = (action, pool, count, target, json.loads(detail_json))
                had = (existing.action, existing.pool, existing.count, existing.target)
                if asked != (*had, existing.detail):
                    raise TokenReused(
                        f'the idempotency token "{token}" was already used for '
                        f"{_describe(*had, existing.detail)} (intent {existing.id}); this "
                        f"request asks for {_describe(*asked)}: use a new token for a new "
                        "request"
                    )
                return existing
            record = IntentRecord(
                id=uuid.uuid4().hex,
                token=token,
                action=action,
                pool=pool,
                count=count,
                target=target,
                actor=actor,
                frontend=frontend,
                request_id=request_id,
                created_at=at,
                status=IntentStatus.PENDING,
                status_at=at,
                error=None,
                detail=json.loads(detail_json),
            )
            # The row is the record, field for field; detail goes in as the JSON text.
            values = [getattr(record, name) for name in _INTENT_FIELDS[:-1]] + [detail_json]
            db.execute(
                f"INSERT INTO intents ({_INTENT_COLUMNS}) "
                f"VALUES ({', '.join('?' * len(_INTENT_FIELDS))})",
                values,
            )
        return record

    def intent(self, intent_id: str) -> IntentRecord | None:
        found = self._db.execute(
            f"SELECT {_INTENT_COLUMNS} FROM intents WHERE id = ?", (intent_id,)
        ).fetchone()
        return None if found is None else _intent(found)

    def intent_by_token(self, token: str) -> IntentRecord | None:
        found = self._db.execute(
            f"SELECT {_INTENT_COLUMNS} FROM intents WHERE token = ?", (token,)
        ).fetchone()
        return None if found is None else _intent(found)

    def intents(self, status: IntentStatus | None = None) -> list[IntentRecord]:
        """Intents, oldest first; ``status=PENDING`` is what a restart must finish."""
        sql = f"SELECT {_INTENT_COLUMNS} FROM intents"
        args: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (IntentStatus(status),)
        return [_intent(row) for row in self._db.execute(sql + " ORDER BY created_at, id", args)]

    def set_intent_status(
        self, intent_id: str, status: IntentStatus, *, at: float, error: str | None = None
    ) -> IntentRecord:
        """Close a pending intent as done, failed or cancelled.

        Setting the status it already has is a no-op (a restart may finish the same intent
        twice); changing a closed intent's status raises StoreError.
        """
        status = IntentStatus(status)
        with self._writing() as db:
            found = db.execute(
                f"SELECT {_INTENT_COLUMNS} FROM intents WHERE id = ?", (intent_id,)
            ).fetchone()
            if found is None:
                raise UnknownRecord(f"no intent {intent_id} in the store")
            current = _intent(found)
            if current.status == status:
                return current
            if current.status != IntentStatus.PENDING:
                raise StoreError(
                    f"intent {intent_id} is already {current.status}; only a pending intent "
                    f"can become {status}"
                )
            db.execute(
                "UPDATE intents SET status = ?, status_at = ?, error = ? WHERE id = ?",
                (status, at, error, intent_id),
            )
        return replace(current, status=status, status_at=at, error=error)

    # -- instances ------------------------------------------------------------------------

    def record_instance(
        self,
        instance_id: str,
        *,
        provider: str,
        pool: str,
        region: str,
        zone: str | None,
        instance_type: str,
        intent_id: str | None,
        node: str | None,
        launched_at: float,
        tags: Mapping[str, str],
        state: str | None,
        seen_at: float,
    ) -> InstanceRecord:
        """Write an instance, or update what was seen of one already written.

        The launch facts (provider, pool, region, zone, type, launch time) are kept from the
        first record; a node, the tags and the provider's state are updated. A different
        provider or intent for the same instance id raises StoreError: one instance cannot
        belong to two launches.
        """
        tags_json = _to_json(dict(tags), "the instance's tags")
        with self._writing() as db:
            found = db.execute(
                "SELECT provider, intent_id FROM instances WHERE instance_id = ?",
                (instance_id,),
            ).fetchone()
            if found is None:
                db.execute(
                    "INSERT INTO instances (instance_id, provider, pool, region, zone, "
                    "instance_type, intent_id, node, launched_at, tags, last_seen_state, "
                    "last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        instance_id,
                        provider,
                        pool,
                        region,
                        zone,
                        instance_type,
                        intent_id,
                        node,
                        launched_at,
                        tags_json,
                        state,
                        seen_at,
                    ),
                )
            else:
                if (found[0], found[1]) != (provider, intent_id):
                    raise StoreError(
                        f"instance {instance_id} is recorded for provider {found[0]}, intent "
                        f"{found[1]}; it cannot also belong to provider {provider}, intent "
                        f"{intent_id}: check the instance's ownership tags"
                    )
                db.execute(
                    "UPDATE instances SET node = COALESCE(?, node), tags = ?, "
                    "last_seen_state = ?, last_seen_at = ? WHERE instance_id = ?",
                    (node, tags_json, state, seen_at, instance_id),
                )
            row = db.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?",
                (instance_id,),
            ).fetchone()
        return _instance(row)

    def instance(self, instance_id: str) -> InstanceRecord | None:
        found = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        return None if found is None else _instance(found)

    def instances(
        self, intent_id: str | None = None, open_only: bool = False
    ) -> list[InstanceRecord]:
        """Instances by launch time; ``open_only``: those not yet confirmed terminated."""
        where: list[str] = []
        args: list[object] = []
        if intent_id is not None:
            where.append("intent_id = ?")
            args.append(intent_id)
        if open_only:
            where.append("confirmed_terminated = 0")
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql + " ORDER BY launched_at, instance_id", args)
        return [_instance(row) for row in rows]

    def open_instance_ids(self) -> set[str]:
        """The ids of instances not yet confirmed terminated (what the planner must never
        adopt a second time)."""
        rows = self._db.execute("SELECT instance_id FROM instances WHERE confirmed_terminated = 0")
        return {row[0] for row in rows}

    def confirm_terminated(self, instance_id: str, at: float) -> InstanceRecord:
        """Close an instance: the provider said it is gone. Again: no change."""
        with self._writing() as db:
            updated = db.execute(
                "UPDATE instances SET confirmed_terminated = 1, "
                "terminated_at = COALESCE(terminated_at, ?) WHERE instance_id = ?",
                (at, instance_id),
            )
            if updated.rowcount == 0:
                raise UnknownRecord(f"no instance {instance_id} in the store")
            row = db.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?",
                (instance_id,),
            ).fetchone()
        return _instance(row)

    # -- cost ledger ----------------------------------------------------------------------

    def open_ledger(
        self, node: str, pool: str, intent_id: str | None, price: float, at: float
    ) -> LedgerEntry:
        """Start billing a node at ``price`` dollars an hour. One open stretch per node."""
        if isinstance(price, bool) or not (math.isfinite(price) and price >= 0):
            raise ValueError(f"a price per hour must be a finite number >= 0, not {price}")
        with self._writing() as db:
            if db.execute("SELECT 1 FROM nodes WHERE name = ?", (node,)).fetchone() is None:
                raise UnknownRecord(f"no node named {node} in the store; add it first")
            started = db.execute(
                "SELECT started_at FROM ledger WHERE node = ? AND stopped_at IS NULL", (node,)
            ).fetchone()
            if started is not None:
                raise StoreError(
                    f"{node} is already billing since {started[0]}; close its ledger first"
                )
            cursor = db.execute(
                "INSERT INTO ledger (node, pool, intent_id, started_at, price_per_hour) "
                "VALUES (?, ?, ?, ?, ?)",
                (node, pool, intent_id, at, float(price)),
            )
            entry_id = cursor.lastrowid
        assert entry_id is not None
        return LedgerEntry(entry_id, node, pool, intent_id, at, None, float(price))

    def close_ledger(self, node: str, at: float) -> LedgerEntry | None:
        """Stop billing a node; None when it had no open stretch (closing twice is harmless).

        A stop before the start (the wall clock stepped back) is recorded as the start: zero
        cost, rather than a negative one or an error that would stall the reconcile loop.
        """
        with self._writing() as db:
            row = db.execute(
                f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE node = ? AND stopped_at IS NULL",
                (node,),
            ).fetchone()
            if row is None:
                return None
            entry = _ledger(row)
            stopped = max(at, entry.started_at)
            db.execute("UPDATE ledger SET stopped_at = ? WHERE id = ?", (stopped, entry.id))
        return replace(entry, stopped_at=stopped)

    def ledger(
        self,
        node: str | None = None,
        *,
        intent_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[LedgerEntry]:
        """Billing stretches, oldest first: a node's, a burst's (``intent_id``), or those
        that overlap ``since``..``until`` (an open stretch reaches to any ``until``)."""
        where: list[str] = []
        args: list[object] = []
        for column, value in (("node", node), ("intent_id", intent_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("(stopped_at IS NULL OR stopped_at > ?)")
            args.append(since)
        if until is not None:
            where.append("started_at < ?")
            args.append(until)
        sql = f"SELECT {_LEDGER_COLUMNS} FROM ledger"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_ledger(row) for row in self._db.execute(sql + " ORDER BY id", args)]

    def spend(
        self,
        pool: str | None = None,
        until: float | None = None,
        *,
        since: float | None = None,
        node: str | None = None,
        intent_id: str | None = None,
    ) -> float:
        """Dollars spent from ``since`` (default: ever) up to ``until`` (default: now), from
        start/stop times and prices.

        An open stretch counts up to ``until``; a closed one up to its stop or ``until``,
        whichever is earlier; none counts before ``since``. Filter by pool, node, or intent
        (a burst).
        """
        end = time.time() if until is None else until
        start = -math.inf if since is None else since
        if start >= end:
            return 0.0
        where = ["started_at < :end", "COALESCE(stopped_at, :end) > :start"]
        if pool is not None:
            where.append("pool = :pool")
        if node is not None:
            where.append("node = :node")
        if intent_id is not None:
            where.append("intent_id = :intent")
        row = self._db.execute(
            "SELECT TOTAL(price_per_hour * ("
            "MIN(COALESCE(stopped_at, :end), :end) - MAX(started_at, :start)))"
            f" FROM ledger WHERE {' AND '.join(where)}",
            {"end": end, "start": start, "pool": pool, "node": node, "intent": intent_id},
        ).fetchone()
        return float(row[0]) / 3600.0

    def burn_rate(self, pool: str | None = None) -> float:
        """Dollars an hour being spent now: the prices of the open stretches."""
        sql = "SELECT TOTAL(price_per_hour) FROM ledger WHERE stopped_at IS NULL"
        args: tuple[str, ...] = ()
        if pool is not None:
            sql += " AND pool = ?"
            args = (pool,)
        return float(self._db.execute(sql, args).fetchone()[0])

    # -- usage meter ----------------------------------------------------------------------

    def add_usage(self, rows: Iterable[UsageRow]) -> int:
        """Add one metering pass, in one transaction: each row's seconds and dollars to the
        bucket of its node, burst and hour (created when new). Returns the rows written."""
        values = [
            (
                row.node,
                row.intent_id or "",
                row.pool,
                row.hour,
                row.first_at,
                row.last_at,
                row.up_s,
                row.gpu_s,
                row.idle_s,
                row.idle_usd,
                int(row.last_idle),
            )
            for row in rows
        ]
        if not values:
            return 0
        with self._writing() as db:
            # Every right-hand side reads the row as it was before this update.
            db.executemany(
                f"INSERT INTO usage ({_USAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (node, intent_id, hour) DO UPDATE SET "
                "first_at = MIN(first_at, excluded.first_at), "
                "last_at = MAX(last_at, excluded.last_at), "
                "up_s = up_s + excluded.up_s, gpu_s = gpu_s + excluded.gpu_s, "
                "idle_s = idle_s + excluded.idle_s, idle_usd = idle_usd + excluded.idle_usd, "
                "last_idle = CASE WHEN excluded.last_at >= last_at "
                "THEN excluded.last_idle ELSE last_idle END",
                values,
            )
        return len(values)

    def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        intent_id: str | None = None,
    ) -> list[UsageRow]:
        """The meter's hourly rows whose metered span overlaps ``since``..``until``, or a
        burst's (``intent_id``), by hour then node."""
        where: list[str] = []
        args: list[object] = []
        if since is not None:
            where.append("last_at > ?")
            args.append(since)
        if until is not None:
            where.append("first_at < ?")
            args.append(until)
        if intent_id is not None:
            where.append("intent_id = ?")
            args.append(intent_id)
        sql = f"SELECT {_USAGE_COLUMNS} FROM usage"
        if where:
            sql += " WHERE " + " AND ".join(where)
        cursor = self._db.cursor()
        cursor.row_factory = None
        return [_usage(row) for row in cursor.execute(sql + " ORDER BY hour, node", args)]

    # -- notices ----------------------------------------------------------------------------

    def add_notice(
        self,
        kind: str,
        sentence: str,
        *,
        actor: str,
        pool: str | None = None,
        key: str | None = None,
        at: float | None = None,
    ) -> bool:
        """Record a notice; with ``key``, only the first notice of that key is kept (a
        budget's warning once a period, across restarts). True when it was recorded."""
        with self._writing() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO notices (at, kind, pool, actor, sentence, key) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time.time() if at is None else at, kind, pool, actor, sentence, key),
            )
        return cursor.rowcount == 1

    def has_notice(self, key: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM notices WHERE key = ?", (key,)).fetchone() is not None
        )

    def notices(self, since: float, *, actor: str | None = None, limit: int = 200) -> list[Notice]:
        """The newest ``limit`` notices at or after ``since`` (by ``actor``), oldest first."""
        sql = "SELECT at, kind, pool, actor, sentence FROM notices WHERE at >= ?"
        args: list[object] = [since]
        if actor is not None:
            sql += " AND actor = ?"
            args.append(actor)
        rows = self._db.execute(sql + " ORDER BY at DESC, id DESC LIMIT ?", [*args, limit])
        return [
            Notice(
                at=r["at"], kind=r["kind"], pool=r["pool"], actor=r["actor"], sentence=r["sentence"]
            )
            for r in reversed(rows.fetchall())
        ]


# -- rows <-> records ---------------------------------------------------------------------

_NODE_COLUMNS = (
    "name, kind, pool, state, state_since, instance_id, intent_id, created_at, updated_at, "
    "price_per_hour"
)
_INTENT_FIELDS = (
    "id",
    "token",
    "action",
    "pool",
    "count",
    "target",
    "actor",
    "frontend",
    "request_id",
    "created_at",
    "status",
    "status_at",
    "error",
    "detail",
)
_INTENT_COLUMNS = ", ".join(_INTENT_FIELDS)
_INSTANCE_COLUMNS = (
    "instance_id, provider, pool, region, zone, instance_type, intent_id, node, launched_at, "
    "terminated_at, confirmed_terminated, tags, last_seen_state, last_seen_at"
)
_LEDGER_COLUMNS = "id, node, pool, intent_id, started_at, stopped_at, price_per_hour"
_USAGE_COLUMNS = (
    "node, intent_id, pool, hour, first_at, last_at, up_s, gpu_s, idle_s, idle_usd, last_idle"
)


_KINDS: Final = {kind.value: kind for kind in NodeKind}
_STATES: Final = {state.value: state for state in State}


def _node_from_tuple(row: tuple[Any, ...]) -> NodeRecord:
    """A node from a plain row in ``_NODE_COLUMNS`` order."""
    name, kind, pool, state, since, instance_id, intent_id, created, updated, price = row
    return NodeRecord(
        name,
        _KINDS[kind],
        pool,
        _STATES[state],
        since,
        instance_id,
        intent_id,
        created,
        updated,
        price,
    )


def _node(row: sqlite3.Row) -> NodeRecord:
    fields = dict(row)
    fields.update(kind=NodeKind(row["kind"]), state=State(row["state"]))
    return NodeRecord(**fields)


def _intent(row: sqlite3.Row) -> IntentRecord:
    fields = dict(row)
    fields.update(
        action=IntentAction(row["action"]),
        status=IntentStatus(row["status"]),
        detail=json.loads(row["detail"]),
    )
    return IntentRecord(**fields)


def _instance(row: sqlite3.Row) -> InstanceRecord:
    fields = dict(row)
    fields.update(
        confirmed_terminated=bool(row["confirmed_terminated"]), tags=json.loads(row["tags"])
    )
    return InstanceRecord(**fields)


def _ledger(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(**dict(row))


def _usage(row: tuple[Any, ...]) -> UsageRow:
    """A usage row from a plain tuple in ``_USAGE_COLUMNS`` order."""
    node, intent, pool, hour, first, last, up, gpu, idle, idle_usd, last_idle = row
    return UsageRow(
        node, pool, intent or None, hour, first, last, up, gpu, idle, idle_usd, bool(last_idle)
    )


def _transition(row: sqlite3.Row) -> Transition:
    before = row["before_state"]
    return Transition(
        node=row["node"],
        before=None if before is None else State(before),
        after=State(row["after_state"]),
        at=row["at"],
        reason=row["reason"],
        actor=row["actor"],
        request_id=row["request_id"],
    )


def _insert_transition(db: sqlite3.Connection, move: Transition) -> None:
    db.execute(
        "INSERT INTO transitions (node, before_state, after_state, at, reason, actor, "
        "request_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (move.node, move.before, move.after, move.at, move.reason, move.actor, move.request_id),
    )


def _check_price(price: float | None) -> None:
    if price is not None and (isinstance(price, bool) or not (math.isfinite(price) and price >= 0)):
        raise ValueError(f"a price per hour must be a finite number >= 0, not {price}")


def _start_billing(db: sqlite3.Connection, node: str, at: float) -> None:
    """Open the node's ledger stretch at its recorded price (0 when none is known: the
    stretch still records when it billed). Opening one that is open is a no-op."""
    db.execute(
        "INSERT INTO ledger (node, pool, intent_id, started_at, price_per_hour) "
        "SELECT name, COALESCE(pool, ''), intent_id, ?, COALESCE(price_per_hour, 0) "
        "FROM nodes WHERE name = ? AND NOT EXISTS "
        "(SELECT 1 FROM ledger WHERE node = ? AND stopped_at IS NULL)",
        (at, node, node),
    )


def _stop_billing(db: sqlite3.Connection, node: str, at: float) -> None:
    # A stop before the start (the wall clock stepped back) is recorded as the start.
    db.execute(
        "UPDATE ledger SET stopped_at = MAX(?, started_at) WHERE node = ? AND stopped_at IS NULL",
        (at, node),
    )


def _to_json(value: JsonObject, what: str) -> str:
    """Canonical JSON text (sorted keys), so equal objects compare equal as text too."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} must be plain JSON (objects, lists, strings, numbers): {error}"
        ) from None


def _describe(
    action: str, pool: str | None, count: int | None, target: int | None, detail: JsonObject
) -> str:
    parts = [str(action)]
    if pool is not None:
        parts.append(f"pool {pool}")
    if count is not None:
        parts.append(f"count {count}")
    if target is not None:
        parts.append(f"target {target}")
    if detail:
        parts.append(f"detail {_to_json(detail, 'detail')}")
    return " ".join(parts)


def _make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and any missing parents with mode 0700 (``mkdir -p`` would not)."""
    missing: list[Path] = []
    here = folder
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for path in reversed(missing):
        # Made by someone else meanwhile: not ours to chmod.
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
