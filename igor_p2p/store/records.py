"""Plain records the store reads and writes."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from igor_p2p.authority.states import AuthorityState


@dataclass(frozen=True, slots=True)
class AuthorityRecord:
    """What this node durably believes about its authority over one agent."""

    agent: str
    """The agent's did:key."""
    state: AuthorityState
    epoch: int
    owner: bytes
    """Public key of the node this node believes owns ``epoch``."""
    head: bytes | None
    """Digest (sha256 of the blob) of the agent's last lineage row; None when there are no rows."""
    head_seq: int
    """Seq of ``head``; -1 when there is none."""
    wasm_hash: bytes
    manifest_hash: bytes
    reason: str
    """Why the agent is RECOVERY_REQUIRED / HALTED etc.; '' otherwise."""
    peer: str | None
    """The counterpart peer id during a handoff."""
    migration_id: bytes | None
    confirmed: bool
    """For a RETIRED source: whether the target confirmed."""
    updated_ns: int
    context: bytes | None = None
    """Opaque handoff context the authority driver persists with the record (msgpack)."""

    @classmethod
    def first(cls, agent: str, origin: FirstRecord) -> AuthorityRecord:
        """The record of an agent this store has no rows for yet (head set by the first append)."""
        return cls(
            agent=agent,
            state=origin.state,
            epoch=origin.epoch,
            owner=origin.owner,
            head=None,
            head_seq=-1,
            wasm_hash=origin.wasm_hash,
            manifest_hash=origin.manifest_hash,
            reason=origin.reason,
            peer=None,
            migration_id=None,
            confirmed=False,
            updated_ns=time.time_ns(),
        )


@dataclass(frozen=True, slots=True)
class FirstRecord:
    """What the first authority record of an agent on this node says."""

    state: AuthorityState
    epoch: int
    owner: bytes
    wasm_hash: bytes
    manifest_hash: bytes
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LineageRow:
    """One stored lineage entry (the blob is opaque to the store)."""

    agent: str
    seq: int
    digest: bytes
    prev: bytes
    kind: str
    epoch: int
    tick: int
    blob: bytes


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A forwarding pointer: the agent left this node at ``epoch`` for ``peer``."""

    agent: str
    epoch: int
    peer: str


class DamageKind(enum.StrEnum):
    """The kinds of damage :meth:`Store.check_integrity` can name."""

    FILE = "FILE"
    """PRAGMA quick_check reported damage; ``agent`` is ''."""
    HEAD_MISSING = "HEAD_MISSING"
    """The authority record's head names no row of the agent."""
    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    """A checked row's digest is not sha256 of its blob."""
    BROKEN_LINK = "BROKEN_LINK"
    """A checked row's prev is not the digest of the row before it."""
    SEQ_GAP = "SEQ_GAP"
    """Seq numbers are not contiguous from 0 (a row is missing)."""
    HEAD_SEQ_MISMATCH = "HEAD_SEQ_MISMATCH"
    """head_seq differs from the head row's seq, or -1 is paired with a head."""
    ROWS_AFTER_HEAD = "ROWS_AFTER_HEAD"
    """The head is not the agent's last row (or there is no head but there are rows)."""


@dataclass(frozen=True, slots=True)
class IntegrityProblem:
    """One piece of damage found by the integrity check."""

    agent: str
    reason: str
    kind: DamageKind
