"""Typed errors of the store; every one but :class:`StoreRefused` is a :class:`StoreError`.

:class:`StoreRefused` (a write that would break a rule the store guards: the sink fence or the
chain) is the port's error, defined once in :mod:`igor_p2p.core.ports` and re-exported here so
that the SQLite store and the simulator's store raise the same class.
"""

from __future__ import annotations

from igor_p2p.core.ports import StoreRefused
from igor_p2p.errors import IgorError

__all__ = [
    "ChainBreak",
    "InvalidOp",
    "SchemaTooNew",
    "SchemaTooOld",
    "SchemaUnknown",
    "StoreCorrupt",
    "StoreError",
    "StoreIOError",
    "StoreRefused",
    "UnknownAgent",
]


class StoreError(IgorError):
    """Base class of every error the store and the group committer raise."""


class InvalidOp(StoreError):
    """An op carries a value of the wrong type or shape (e.g. a digest that is not 32 bytes)."""


class ChainBreak(StoreError):
    """An appended entry is not what it claims (digest is not sha256 of its bytes) or is already
    in the chain where the op says it must be new."""


class UnknownAgent(StoreError):
    """Lineage rows for an agent that has no authority record (the record must come first, or in
    the same transaction)."""


class SchemaTooNew(StoreError):
    """The database was written by a newer Igor-P2P with a schema this code does not know."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the store in this data directory was written by a newer Igor-P2P (store format "
            f"{found}, this version reads format {supported}); upgrade Igor-P2P to open it"
        )
        self.found = found
        self.supported = supported


class SchemaTooOld(StoreError):
    """The database was written by an older Igor-P2P; there is no migration."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the store in this data directory was written by an older Igor-P2P (store format "
            f"{found}; this version needs format {supported}) and cannot be upgraded in place: "
            f"move igor.db out of the data directory (or start with a new data directory), then "
            f"launch or import the agents again"
        )
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
