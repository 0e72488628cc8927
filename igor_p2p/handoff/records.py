"""Between the authority machine's record and the store's authority row.

The store keeps one row per agent (state, epoch, head, peer, migration id, confirmed...) plus
an opaque ``context`` blob. The blob holds what only the machine needs to be rebuilt exactly
after a crash: the migration context (role, phase, offer epoch, transfer record, head digest),
the recovery reason, and whether the machine's holding is ABSENT (a discarded pending copy is
kept on disk as a read-only RETIRED row, but the machine must come back ABSENT).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import msgpack

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    ABSENT,
    NO_RECORD,
    MigrationContext,
    MigrationPhase,
    RecoveryReason,
    Role,
)
from igor_p2p.authority.table import AuthorityRecord as MachineRecord
from igor_p2p.errors import InvalidInput
from igor_p2p.store.records import AuthorityRecord as StoreRecord

CONTEXT_TAG = "igor/authority-context/1"


class CorruptContext(InvalidInput):
    """A stored authority context blob that does not decode."""


def encode_context(record: MachineRecord) -> bytes:
    ctx = record.migration
    body: dict[str, Any] = {
        "tag": CONTEXT_TAG,
        "absent": record.state is ABSENT,
        "reason": record.reason.value if record.reason else None,
        "detail": record.detail,
        "epoch": record.epoch,
        "migration": None,
    }
    if ctx is not None:
        body["migration"] = {
            "id": ctx.migration_id,
            "role": ctx.role.value,
            "peer": ctx.peer,
            "offer_epoch": ctx.offer_epoch,
            "phase": ctx.phase.value,
            "transfer": ctx.transfer_record,
            "head": ctx.head_digest,
        }
    return msgpack.packb(body, use_bin_type=True)


def decode_context(blob: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(blob, raw=False, max_bin_len=1 << 16, max_str_len=1 << 16)
        if not isinstance(body, dict) or body.get("tag") != CONTEXT_TAG:
            raise CorruptContext("not an authority context")
        m = body.get("migration")
        if m is not None:
            body["migration"] = MigrationContext(
                migration_id=m["id"],
                role=Role(m["role"]),
                peer=m["peer"],
                offer_epoch=m["offer_epoch"],
                phase=MigrationPhase(m["phase"]),
                transfer_record=m["transfer"],
                head_digest=m["head"],
            )
        if body.get("reason") is not None:
            body["reason"] = RecoveryReason(body["reason"])
        return body
    except CorruptContext:
        raise
    except Exception as exc:
        raise CorruptContext(f"authority context does not decode: {type(exc).__name__}") from None


def to_machine(row: StoreRecord | None, fence: int) -> MachineRecord:
    """The machine record a node restarts from, given its durable row and fence."""
    if row is None:
        return replace(NO_RECORD, fence=fence)
    context: dict[str, Any] = {"absent": False, "reason": None, "detail": "", "migration": None}
    if row.context is not None:
        context = decode_context(row.context)
    state = ABSENT if context["absent"] else row.state
    reason = context["reason"]
    if row.state is AuthorityState.RECOVERY_REQUIRED and reason is None:
        reason = RecoveryReason.INTEGRITY_FAILURE
    epoch = context.get("epoch", row.epoch)
    if not isinstance(epoch, int) or epoch > row.epoch:
        raise CorruptContext("context epoch is not an integer at most the row's epoch")
    return MachineRecord(
        state=state,
        epoch=epoch,
        fence=max(fence, row.epoch),
        migration=context["migration"],
        reason=reason,
        detail=row.reason if row.reason else context["detail"],
        version=0,
    )


def to_store(record: MachineRecord, base: StoreRecord, owner: bytes) -> StoreRecord:
    """The store row for a machine record (``base`` supplies head, hashes and the agent)."""
    ctx = record.migration
    state = AuthorityState.RETIRED if record.state is ABSENT else record.state
    assert isinstance(state, AuthorityState)
    reason = record.detail
    if record.reason is not None and not reason.startswith(record.reason.value):
        reason = f"{record.reason.value}: {reason}" if reason else record.reason.value
    if record.state is ABSENT and not reason:
        reason = "holds a read-only copy (pending handoff discarded)"
    if state is AuthorityState.ACTIVE_OWNER:
        reason = ""
    # The store refuses a row below the fence; a retired source keeps epoch e in the machine
    # (its context) while the row carries the fence e+1 it already knows about.
    return replace(
        base,
        state=state,
        epoch=max(record.epoch, record.fence)
        if state is not AuthorityState.ACTIVE_OWNER
        else record.epoch,
        owner=owner,
        reason=reason,
        peer=ctx.peer if ctx else None,
        migration_id=ctx.migration_id if ctx else None,
        confirmed=bool(ctx and ctx.phase is MigrationPhase.CONFIRMED),
        updated_ns=time.time_ns(),
        context=encode_context(record),
    )
