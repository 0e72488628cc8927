"""Plain records the store reads: lineage rows and integrity problems."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LineageRow:
    """One stored lineage entry (columns derived from the entry when it was appended)."""

    agent: str
    seq: int
    digest: bytes
    prev: bytes
    kind: str
    epoch: int
    tick: int
    gap: bool
    """The row follows a compacted gap: its ``prev`` is not the digest of the row before it."""
    blob: bytes


class DamageKind(enum.StrEnum):
    """The kinds of damage :meth:`Store.check_integrity` can name."""

    FILE = "FILE"
    """PRAGMA quick_check reported damage; ``agent`` is ''."""
    RECORD = "RECORD"
    """The authority record does not decode, or its columns are not the ones derived from it."""
    HEAD_MISSING = "HEAD_MISSING"
    """The head names no row of the agent."""
    HEAD_SEQ_MISMATCH = "HEAD_SEQ_MISMATCH"
    """head_seq is not the head row's seq, or -1 is paired with a head."""
    ROWS_AFTER_HEAD = "ROWS_AFTER_HEAD"
    """The head is not the agent's last row (or there is no head but there are rows)."""
    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    """A checked row's digest is not sha256 of its blob."""
    BROKEN_LINK = "BROKEN_LINK"
    """A row not marked as a gap whose prev is not the digest of the row before it (a row is
    missing)."""
    BAD_GAP = "BAD_GAP"
    """A compacted gap where none may be: around a custody record, or across epochs."""
    NO_GENESIS = "NO_GENESIS"
    """The agent's first row is not a GENESIS or IMPORT checkpoint."""
    NO_RECORD = "NO_RECORD"
    """Lineage rows of an agent that has no authority record."""
    WITNESS = "WITNESS"
    """A witness record or custody link that does not decode."""


@dataclass(frozen=True, slots=True)
class IntegrityProblem:
    """One piece of damage found by the integrity check."""

    agent: str
    reason: str
    kind: DamageKind
