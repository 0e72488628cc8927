"""Typed errors of the store; every one is a :class:`StoreError`."""

from __future__ import annotations

from igor_p2p.errors import IgorError


class StoreError(IgorError):
    """Base class of every error the store and the group committer raise."""


class InvalidOp(StoreError):
    """An op carries a value of the wrong type or shape (e.g. a digest that is not 32 bytes)."""


class ChainBreak(StoreError):
    """Appended entries do not extend the local chain (prev, digest or uniqueness is wrong)."""


class FencedOff(StoreError):
    """An authority record names an epoch below the highest epoch this node has seen."""


class HeadMismatch(StoreError):
    """An authority record's head/head_seq does not name the agent's last lineage row."""


class NotDiscardable(StoreError):
    """DeleteLineage on an agent whose local copy is not an aborted HANDOFF_PENDING copy."""


class UnknownAgent(StoreError):
    """The operation needs an authority record and the agent has none."""


class SchemaTooNew(StoreError):
    """The database was written by a newer Igor-P2P with a schema this code does not know."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(f"database schema version {found} is newer than supported {supported}")
        self.found = found
        self.supported = supported


class SchemaUnknown(StoreError):
    """The file is an SQLite database but not one with an Igor-P2P schema this code knows."""


class StoreCorrupt(StoreError):
    """The file is not a readable SQLite database, or PRAGMA quick_check reports damage."""


class StoreIOError(StoreError):
    """SQLite failed for an operating-system or engine reason (disk full, I/O error, locked)."""


class StoreFull(StoreIOError):
    """The disk (or the database's size limit) is full: the transaction was rolled back and the
    store is intact; nothing can be written until space is freed."""
