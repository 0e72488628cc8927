"""The store's SQL schema, its version, and connection set-up."""

from __future__ import annotations

import sqlite3

from igor_p2p.authority.states import AuthorityState
from igor_p2p.store.errors import SchemaTooNew, SchemaUnknown, StoreError

SCHEMA_VERSION = 2
"""Version written to ``meta.schema_version``; a database with a higher one is refused.

2: ``lineage`` has no UNIQUE(agent, digest) index (digest uniqueness per agent is checked by the
store before the transaction, see ``sqlite._DigestFilter``), so ``authority`` has no foreign key
onto it (the head rule is checked before the transaction and by the integrity check)."""

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    # Performance only (durability is WAL + synchronous=FULL above): checkpoint the WAL every
    # 4000 pages (~16 MiB) instead of 1000, so index pages rewritten by consecutive group
    # commits are copied back once per checkpoint, and keep 16 MiB of pages cached.
    "PRAGMA wal_autocheckpoint=4000",
    "PRAGMA cache_size=-16384",
)
"""Connection set-up shared by the store and the raw-insert baseline benchmark."""

_STATES = ", ".join(f"'{s.value}'" for s in AuthorityState)

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE lineage (
        id INTEGER PRIMARY KEY,
        agent TEXT NOT NULL,
        seq INTEGER NOT NULL CHECK (seq >= 0),
        digest BLOB NOT NULL CHECK (length(digest) = 32),
        prev BLOB NOT NULL CHECK (length(prev) = 32),
        kind TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        tick INTEGER NOT NULL,
        blob BLOB NOT NULL,
        UNIQUE (agent, seq)
    )""",
    f"""CREATE TABLE authority (
        agent TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ({_STATES})),
        epoch INTEGER NOT NULL,
        owner BLOB NOT NULL,
        head BLOB,
        head_seq INTEGER NOT NULL,
        wasm_hash BLOB NOT NULL,
        manifest_hash BLOB NOT NULL,
        reason TEXT NOT NULL,
        peer TEXT,
        migration_id BLOB,
        confirmed INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        context BLOB
    )""",
    "CREATE TABLE fence (agent TEXT PRIMARY KEY, epoch INTEGER NOT NULL, evidence TEXT NOT NULL)",
    "CREATE TABLE module (hash BLOB PRIMARY KEY, wasm BLOB NOT NULL)",
    "CREATE TABLE manifest (hash BLOB PRIMARY KEY, data BLOB NOT NULL)",
    "CREATE TABLE tombstone (agent TEXT PRIMARY KEY, epoch INTEGER NOT NULL, peer TEXT NOT NULL)",
)


def configure(conn: sqlite3.Connection) -> None:
    """Apply the PRAGMAs; refuse a file that cannot be put in WAL mode."""
    for pragma in PRAGMAS:
        row = conn.execute(pragma).fetchone()
        if pragma.startswith("PRAGMA journal_mode") and (row is None or row[0].lower() != "wal"):
            raise StoreError(f"could not enable WAL journal mode (got {row!r})")


def ensure(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty database, or check the version of an existing one."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables:
            raise SchemaUnknown(f"database has tables {sorted(tables)} but no meta table")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ddl in SCHEMA:
                conn.execute(ddl)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        found = int(row[0]) if row is not None else None
    except (TypeError, ValueError):
        found = None
    if found is None:
        raise SchemaUnknown("meta table has no valid schema_version")
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(found, SCHEMA_VERSION)
    if found != SCHEMA_VERSION:
        raise SchemaUnknown(f"schema version {found} has no migration to {SCHEMA_VERSION}")
