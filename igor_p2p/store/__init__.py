"""Durable local state: the SQLite store (one transaction per batch), trio group commit, and
the :class:`SqliteAuthorityStore` adapter the node core drives."""

from igor_p2p.store.adapter import SqliteAuthorityStore
from igor_p2p.store.committer import (
    CommitterClosed,
    CommitterConfig,
    CommitterStats,
    GroupCommitter,
)
from igor_p2p.store.errors import (
    ChainBreak,
    InvalidOp,
    SchemaTooNew,
    SchemaTooOld,
    SchemaUnknown,
    StoreCorrupt,
    StoreError,
    StoreIOError,
    StoreRefused,
    UnknownAgent,
)
from igor_p2p.store.ops import (
    AppendEntries,
    AppendTicks,
    Compaction,
    CompactLineage,
    DiscardCopy,
    NewEntry,
    Op,
    PutManifest,
    PutModule,
    PutRecord,
    PutWitness,
    PutWitnessChain,
)
from igor_p2p.store.records import DamageKind, IntegrityProblem, LineageRow
from igor_p2p.store.retention import RETAIN_ALL, InvalidRetention, Retention
from igor_p2p.store.sqlite import DB_FILENAME, Store

__all__ = [
    "DB_FILENAME",
    "RETAIN_ALL",
    "AppendEntries",
    "AppendTicks",
    "ChainBreak",
    "CommitterClosed",
    "CommitterConfig",
    "CommitterStats",
    "CompactLineage",
    "Compaction",
    "DamageKind",
    "DiscardCopy",
    "GroupCommitter",
    "IntegrityProblem",
    "InvalidOp",
    "InvalidRetention",
    "LineageRow",
    "NewEntry",
    "Op",
    "PutManifest",
    "PutModule",
    "PutRecord",
    "PutWitness",
    "PutWitnessChain",
    "Retention",
    "SchemaTooNew",
    "SchemaTooOld",
    "SchemaUnknown",
    "SqliteAuthorityStore",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreIOError",
    "StoreRefused",
    "UnknownAgent",
]
