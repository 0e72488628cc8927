"""The one authority record a node keeps per agent, and its encoding (pure).

:class:`AuthorityRecord` is the durable truth: the store persists exactly this object (encoded
by :func:`encode_record`) and derives its queryable columns from it with :func:`columns`. The
authority table is the only code that produces new records.

:class:`Run` is what a node knows only while it runs (lost at a restart): whether it is ticking,
the epoch it holds a certificate for *in this incarnation*, the handoff in flight, the claim it
is making. A restart therefore never continues an epoch: it claims a new one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import msgpack

from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import InvalidInput
from igor_p2p.lineage._codec import MAX_WITNESSES


class Absent(enum.StrEnum):
    """The implicit state of an agent this node never held (no record)."""

    ABSENT = "ABSENT"


ABSENT = Absent.ABSENT
Holding = AuthorityState | Absent
"""What a node's record says about one agent: an authority state, or no record at all."""


class RecoveryReason(enum.StrEnum):
    """Why a node halted an agent in RECOVERY_REQUIRED."""

    INTEGRITY_FAILURE = "INTEGRITY_FAILURE"
    """This node's copy of the agent is damaged."""
    CONFLICTING_CUSTODY = "CONFLICTING_CUSTODY"
    """Two different records were certified for one epoch (a bug or a Byzantine witness)."""
    RESTORED_COPY = "RESTORED_COPY"
    """The witnesses say this node owns a later epoch than its copy holds: it was restored from a
    backup and lost ticks it had committed."""
    UNEXPECTED_ERROR = "UNEXPECTED_ERROR"
    """An unexpected error in this agent's handling (a bug); the traceback is in the log."""


class Phase(enum.StrEnum):
    """What a running node is doing with an agent (volatile)."""

    IDLE = "IDLE"
    TICKING = "TICKING"
    HANDING_OFF = "HANDING_OFF"
    CLAIMING = "CLAIMING"


class ClaimPurpose(enum.StrEnum):
    RESUME = "RESUME"
    """The owner restarts (or an operator resumes it): a self-transfer to a new epoch."""
    SETTLE = "SETTLE"
    """A pending target completes whatever record the source proposed, if any."""
    FORCE = "FORCE"
    """An operator forces this node owner (a forced-recovery record)."""


@dataclass(frozen=True)
class PendingCopy:
    """A handoff target's validated, durable copy, waiting for the source's decision."""

    migration_id: bytes
    source: bytes
    """Node key of the source (the owner of ``epoch``)."""
    head: bytes
    """Digest of the offered HANDOFF checkpoint."""


@dataclass(frozen=True)
class Successor:
    """Where the agent went: ``owner`` owns ``epoch`` (proven by a certificate)."""

    epoch: int
    owner: bytes


@dataclass(frozen=True)
class AuthorityRecord:
    """What one node durably believes about its authority over one agent."""

    state: Holding
    epoch: int = 0
    """The epoch this node owns (owner states), hands over (pending: the offered epoch), or last
    held (retired, recovery)."""
    witnesses: tuple[bytes, ...] = ()
    """The witness set of ``epoch``."""
    pending: PendingCopy | None = None
    successor: Successor | None = None
    last_migration: bytes | None = None
    """The handoff that made this node owner (a repeated COMMIT for it is confirmed again)."""
    reason: RecoveryReason | None = None
    detail: str = ""
    version: int = 0
    """Write counter: each persisted record has a higher one."""

    @property
    def fence(self) -> int:
        """The highest epoch this record proves: a sink refuses work for any lower one."""
        return max(self.epoch, self.successor.epoch if self.successor else 0)


NO_RECORD = AuthorityRecord(state=ABSENT)


@dataclass
class Run:
    """What a running node knows about one agent beyond its durable record."""

    phase: Phase = Phase.IDLE
    certified: int = 0
    """The epoch this incarnation holds a certificate for (0: none); ticking needs it."""
    handoff: tuple[bytes, bytes] | None = None
    """(migration id, target node) of the handoff this node runs as source."""
    pending_fresh: bool = False
    """The pending copy was prepared by this incarnation (it may take the epoch directly)."""
    claim: ClaimPurpose | None = None
    waiting: str = ""
    """Words for status: what the agent waits for (a witness quorum, the source's decision)."""
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- encoding

RECORD_TAG = "igor/authority/2"


class CorruptRecord(InvalidInput):
    """A stored authority record that does not decode."""


def encode_record(record: AuthorityRecord) -> bytes:
    body = [
        RECORD_TAG,
        record.state.value,
        record.epoch,
        list(record.witnesses),
        None
        if record.pending is None
        else [record.pending.migration_id, record.pending.source, record.pending.head],
        None if record.successor is None else [record.successor.epoch, record.successor.owner],
        record.last_migration,
        record.reason.value if record.reason else None,
        record.detail,
        record.version,
    ]
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def _bytes(value: Any, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise CorruptRecord(f"{what}: want {length} bytes")
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise CorruptRecord(f"{what}: want a non-negative integer")
    return value


def decode_record(blob: bytes) -> AuthorityRecord:
    try:
        body = msgpack.unpackb(blob, raw=False, max_bin_len=1 << 16, max_str_len=1 << 16)
    except Exception as exc:
        raise CorruptRecord(f"not an authority record: {type(exc).__name__}") from None
    if not isinstance(body, list) or len(body) != 10 or body[0] != RECORD_TAG:
        raise CorruptRecord("not an authority record")
    _, state, epoch, witnesses, pending, successor, last, reason, detail, version = body
    try:
        holding: Holding = ABSENT if state == ABSENT.value else AuthorityState(state)
        why = RecoveryReason(reason) if reason is not None else None
    except ValueError:
        raise CorruptRecord("unknown state or reason") from None
    if not isinstance(witnesses, list) or len(witnesses) > MAX_WITNESSES:
        raise CorruptRecord("witnesses: want a list")
    members = tuple(_bytes(w, 32, "witness") for w in witnesses)
    copy = None
    if pending is not None:
        if not isinstance(pending, list) or len(pending) != 3:
            raise CorruptRecord("pending: want [migration, source, head]")
        copy = PendingCopy(
            _bytes(pending[0], 16, "migration"),
            _bytes(pending[1], 32, "source"),
            _bytes(pending[2], 32, "head"),
        )
    went = None
    if successor is not None:
        if not isinstance(successor, list) or len(successor) != 2:
            raise CorruptRecord("successor: want [epoch, owner]")
        went = Successor(_int(successor[0], "successor epoch"), _bytes(successor[1], 32, "owner"))
    if last is not None:
        last = _bytes(last, 16, "last migration")
    if not isinstance(detail, str):
        raise CorruptRecord("detail: want a string")
    return AuthorityRecord(
        state=holding,
        epoch=_int(epoch, "epoch"),
        witnesses=members,
        pending=copy,
        successor=went,
        last_migration=last,
        reason=why,
        detail=detail,
        version=_int(version, "version"),
    )


@dataclass(frozen=True)
class Columns:
    """The store's queryable columns, derived from a record by :func:`columns` only."""

    state: str
    epoch: int
    fence: int
    reason: str
    peer: bytes | None


def columns(record: AuthorityRecord) -> Columns:
    peer = None
    if record.pending is not None:
        peer = record.pending.source
    elif record.successor is not None:
        peer = record.successor.owner
    reason = record.detail or (record.reason.value if record.reason else "")
    return Columns(record.state.value, record.epoch, record.fence, reason, peer)
