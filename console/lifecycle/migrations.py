"""The store's schema, as an ordered list of additive migration steps.

Step ``n`` (1-based) takes the database from version ``n - 1`` to ``n``, in one transaction
with the version bump, so a crash mid-migration leaves the old version intact. Steps only add
(``CREATE TABLE``, ``CREATE INDEX``, ``ALTER TABLE … ADD COLUMN``): an older row must stay
readable by newer code, and a column is never renamed or dropped (a test checks the form).

Times are wall-clock seconds (REAL). Enumerations are TEXT without CHECK lists: SQLite cannot
change a CHECK without rebuilding the table, and adding a state must stay a one-line change.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from tidectl.console.lifecycle.errors import NotAStore, SchemaTooNew

__all__ = ["MIGRATIONS", "migrate", "schema_version"]

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: nodes, their transitions, intents, instances and the cost ledger.
    (
        """CREATE TABLE intents (
            id TEXT PRIMARY KEY,
            token TEXT NOT NULL UNIQUE,
            action TEXT NOT NULL,
            pool TEXT,
            count INTEGER,
            target INTEGER,
            actor TEXT NOT NULL,
            frontend TEXT NOT NULL,
            request_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            status TEXT NOT NULL,
            status_at REAL NOT NULL,
            error TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX intents_pending ON intents (created_at) WHERE status = 'pending'",
        """CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            pool TEXT,
            state TEXT NOT NULL,
            state_since REAL NOT NULL,
            instance_id TEXT,
            intent_id TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX nodes_by_state ON nodes (state)",
        "CREATE INDEX nodes_by_pool ON nodes (pool, state)",
        "CREATE INDEX nodes_by_intent ON nodes (intent_id)",
        # before_state/after_state: BEFORE and AFTER are SQL keywords.
        """CREATE TABLE transitions (
            id INTEGER PRIMARY KEY,
            node TEXT NOT NULL REFERENCES nodes (name),
            before_state TEXT,
            after_state TEXT NOT NULL,
            at REAL NOT NULL,
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            request_id TEXT NOT NULL
        )""",
        "CREATE INDEX transitions_by_node ON transitions (node, id)",
        # No foreign keys to intents or nodes: an adopted instance may carry the tag of an
        # intent this store never saw, and it must still be recorded.
        """CREATE TABLE instances (
            instance_id TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            pool TEXT NOT NULL,
            region TEXT NOT NULL,
            zone TEXT,
            instance_type TEXT NOT NULL,
            intent_id TEXT,
            node TEXT,
            launched_at REAL NOT NULL,
            terminated_at REAL,
            confirmed_terminated INTEGER NOT NULL DEFAULT 0,
            tags TEXT NOT NULL DEFAULT '{}',
            last_seen_state TEXT,
            last_seen_at REAL
        )""",
        "CREATE INDEX instances_by_intent ON instances (intent_id)",
        "CREATE INDEX instances_open ON instances (pool) WHERE confirmed_terminated = 0",
        """CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            node TEXT NOT NULL REFERENCES nodes (name),
            pool TEXT NOT NULL,
            intent_id TEXT,
            started_at REAL NOT NULL,
            stopped_at REAL,
            price_per_hour REAL NOT NULL
        )""",
        # At most one open stretch per node: a second would bill the same hour twice.
        "CREATE UNIQUE INDEX ledger_open ON ledger (node) WHERE stopped_at IS NULL",
        "CREATE INDEX ledger_by_pool ON ledger (pool, started_at)",
        "CREATE INDEX ledger_by_intent ON ledger (intent_id)",
    ),
    # 2: a cloud node's price, so the store can open its ledger stretch in the same
    # transaction as the move that starts the billing (NULL: not known, billed at 0).
    ("ALTER TABLE nodes ADD COLUMN price_per_hour REAL",),
    # 3: the usage meter (``console/cost/usage.py``): per billing cloud node, burst and UTC
    # hour, the seconds metered, GPU-seconds used, and the seconds and dollars it sat idle.
    # ``first_at``/``last_at`` bound the metered span inside the hour, so a window that starts
    # within it counts its share. ``intent_id`` is '' for none: NULLs would never conflict.
    (
        """CREATE TABLE usage (
            node TEXT NOT NULL REFERENCES nodes (name),
            intent_id TEXT NOT NULL DEFAULT '',
            pool TEXT NOT NULL,
            hour REAL NOT NULL,
            first_at REAL NOT NULL,
            last_at REAL NOT NULL,
            up_s REAL NOT NULL DEFAULT 0,
            gpu_s REAL NOT NULL DEFAULT 0,
            idle_s REAL NOT NULL DEFAULT 0,
            idle_usd REAL NOT NULL DEFAULT 0,
            last_idle INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (node, intent_id, hour)
        )""",
        "CREATE INDEX usage_by_hour ON usage (hour)",
        "CREATE INDEX usage_by_intent ON usage (intent_id, hour)",
    ),
    # 4: notices: what the automation saw and said without moving a node (a budget past its
    # warning line), for ``tidectl events``. ``key`` makes a notice once-only (a budget's
    # warning once a period, a restart included); NULL for notices that may repeat.
    (
        """CREATE TABLE notices (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            pool TEXT,
            actor TEXT NOT NULL,
            sentence TEXT NOT NULL,
            key TEXT UNIQUE
        )""",
        "CREATE INDEX notices_by_at ON notices (at)",
    ),
)


def schema_version(db: sqlite3.Connection, path: Path) -> int:
    """The version written in the file: 0 for a new, empty database.

    Only reads. Refuses (NotAStore) a file that is not SQLite, or a SQLite database with
    tables of its own and no ``schema_version``: our migrations must never run over it.
    """
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as error:
        raise NotAStore(
            f"{path}: not a SQLite database ({error}); point the store at another file"
        ) from None
    if "schema_version" not in tables:
        if tables:
            raise NotAStore(
                f"{path}: a SQLite database, but not a tidectl store (it has tables and no "
                "schema_version); point the store at another file"
            )
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Apply the steps this database lacks, one transaction each; return the version.

    ``db`` must be in autocommit mode (``isolation_level=None``): the transactions are ours.
    """
    found = schema_version(db, path)
    if found > len(MIGRATIONS):
        raise SchemaTooNew(path, found, len(MIGRATIONS))
    if found == len(MIGRATIONS):
        return found
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        db.execute(
            "INSERT INTO schema_version (version) "
            "SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version)"
        )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: the version is what this transaction extends.
            version = int(db.execute("SELECT version FROM schema_version").fetchone()[0])
            if version >= len(MIGRATIONS):
                db.execute("COMMIT")
                if version > len(MIGRATIONS):
                    raise SchemaTooNew(path, version, len(MIGRATIONS))
                return version
            for statement in MIGRATIONS[version]:
                db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (version + 1,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
