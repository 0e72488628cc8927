"""The store's SQL schema, its version, and connection set-up."""

from __future__ import annotations

import sqlite3

from igor_p2p.authority.record import ABSENT
from igor_p2p.authority.states import AuthorityState
from igor_p2p.store.errors import SchemaTooNew, SchemaTooOld, SchemaUnknown, StoreError

SCHEMA_VERSION = 4
"""Version written to ``meta.schema_version``.

4: lineage rows may also be effect records (``EFFECT``) and tick-input records (``INPUTS``).

3: ``authority`` holds the encoded :class:`~igor_p2p.authority.record.AuthorityRecord` (columns
derived from it by ``columns()``); lineage rows may follow a compacted gap (``gap``); witness
records and chains; no fence or tombstone tables. Older versions are refused (no migration)."""

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

CHECKPOINT_KINDS = ("GENESIS", "TICK", "HANDOFF", "FINAL", "IMPORT")
"""``kind`` of a checkpoint row (``CheckpointKind`` names)."""
GENESIS_KINDS = ("GENESIS", "IMPORT")
RECORD_KINDS = ("TRANSFER", "FORCED")
"""``kind`` of a custody record row (it starts an epoch once its certificate follows)."""
CERT_KIND = "CERT"
CUSTODY_KINDS = (*GENESIS_KINDS, *RECORD_KINDS, CERT_KIND)
"""Rows the chain of custody is read from (and that compaction never drops)."""
EFFECT_KIND = "EFFECT"
"""An effect record (INTENT or OUTCOME of an http request or payment)."""
INPUTS_KIND = "INPUTS"
"""A tick-input record (what the ticks of the checkpoint after it observed)."""
OWNER_KINDS = (EFFECT_KIND, INPUTS_KIND)
"""Rows the owner of an epoch appends inside it besides its checkpoints."""
KINDS = (*CHECKPOINT_KINDS, *RECORD_KINDS, CERT_KIND, *OWNER_KINDS)


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


CUSTODY_KINDS_SQL = _sql_list(CUSTODY_KINDS)
"""The partial index's condition; a query must name the kinds in exactly this text to use it."""
CHECKPOINT_KINDS_SQL = _sql_list(CHECKPOINT_KINDS)
_STATES = _sql_list((*(s.value for s in AuthorityState), ABSENT.value))

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE lineage (
        id INTEGER PRIMARY KEY,
        agent TEXT NOT NULL,
        seq INTEGER NOT NULL CHECK (seq >= 0),
        digest BLOB NOT NULL CHECK (length(digest) = 32),
        prev BLOB NOT NULL CHECK (length(prev) = 32),
        kind TEXT NOT NULL CHECK (kind IN ({_sql_list(KINDS)})),
        epoch INTEGER NOT NULL,
        tick INTEGER NOT NULL,
        gap INTEGER NOT NULL CHECK (gap IN (0, 1)),
        blob BLOB NOT NULL,
        UNIQUE (agent, seq)
    )""",
    f"CREATE INDEX lineage_custody ON lineage (agent, seq) WHERE kind IN ({CUSTODY_KINDS_SQL})",
    f"""CREATE TABLE authority (
        agent TEXT PRIMARY KEY,
        record BLOB NOT NULL,
        state TEXT NOT NULL CHECK (state IN ({_STATES})),
        epoch INTEGER NOT NULL,
        fence INTEGER NOT NULL,
        reason TEXT NOT NULL,
        peer BLOB,
        head BLOB,
        head_seq INTEGER NOT NULL,
        wasm_hash BLOB,
        manifest_hash BLOB,
        copy_start INTEGER,
        compacted_to INTEGER NOT NULL
    )""",
    """CREATE TABLE witness (
        agent TEXT PRIMARY KEY,
        chosen INTEGER NOT NULL,
        record BLOB NOT NULL
    )""",
    """CREATE TABLE witness_chain (
        agent TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        owner BLOB NOT NULL,
        witnesses BLOB NOT NULL,
        digest BLOB NOT NULL,
        forced INTEGER NOT NULL,
        record BLOB NOT NULL,
        cert BLOB NOT NULL,
        genesis BLOB NOT NULL,
        PRIMARY KEY (agent, epoch)
    )""",
    "CREATE TABLE module (hash BLOB PRIMARY KEY, wasm BLOB NOT NULL)",
    "CREATE TABLE manifest (hash BLOB PRIMARY KEY, data BLOB NOT NULL)",
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
            raise SchemaUnknown(
                f"the file is an SQLite database with tables {sorted(tables)}, not an Igor-P2P "
                f"store"
            )
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
        raise SchemaUnknown("the store's meta table has no valid schema version")
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(found, SCHEMA_VERSION)
    if found < SCHEMA_VERSION:
        raise SchemaTooOld(found, SCHEMA_VERSION)
