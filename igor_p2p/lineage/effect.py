"""Effect records: the lineage's log of the side effects an agent caused (http, payments).

Each side effect is two signed entries in the agent's hash chain, both signed by the node that
owns the epoch in which it ran (``owner``):

* an **INTENT**, appended durably *before* the effect starts: the idempotency ``key`` (sent as the
  ``Idempotency-Key`` header, and in the payment memo), what kind of effect, the SHA-256 of the
  request, a short human-readable ``target`` and the most it may cost (``charge``, reserved from
  the budget);
* an **OUTCOME**, appended after it finished: the status (an HTTP status or the hostcall's error
  code), the result (the response body, or the payment receipt) and what it cost.

An INTENT without its OUTCOME is an effect whose outcome is unknown (the owner stopped in
between); the runtime never repeats it on its own (docs/effects.md).

Same encoding and hostile-input rules as the custody records: a canonical msgpack array starting
with the format tag, signed over its own domain tag followed by the array without its signature.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from igor_p2p.lineage._codec import (
    INT64_MAX,
    INT64_MIN,
    MAX_STATE_BYTES,
    CorruptEntry,
    FieldReader,
    check_bytes,
    check_canonical,
    check_int,
    check_str,
    unpack_array,
)
from igor_p2p.lineage.custody import _check_agent, _SignedRecord, _UnsignedRecord
from igor_p2p.lineage.identity import MAX_DID_CHARS, Keypair

EFFECT_TAG = "igor/effect/1"
EFFECT_DOMAIN = b"igor-p2p/effect/v1\x00"
KEY_BYTES = 16
"""An idempotency key is 16 bytes (32 hex characters on the wire)."""
MAX_TARGET_BYTES = 1024
MAX_RESULT_BYTES = MAX_STATE_BYTES
"""Largest result an OUTCOME carries (a response body is capped far lower by the manifest)."""

_FIELDS = (
    "agent",
    "epoch",
    "tick",
    "owner",
    "prev",
    "key",
    "phase",
    "effect",
    "request",
    "target",
    "charge",
    "status",
    "result",
    "wall_ns",
)


class CorruptEffectRecord(CorruptEntry):
    """Bytes or fields that are not a valid effect record."""


class EffectPhase(enum.IntEnum):
    INTENT = 0
    OUTCOME = 1


class EffectKind(enum.IntEnum):
    HTTP = 1
    """``igor.http_request``."""
    PAYMENT = 2
    """``igor.wallet_pay``."""


def _validate(rec: Any) -> None:
    err = CorruptEffectRecord
    try:
        _check_agent(rec.agent)
    except CorruptEntry as exc:
        raise CorruptEffectRecord(str(exc)) from None
    check_int(rec.epoch, "epoch", err, 1, INT64_MAX)
    check_int(rec.tick, "tick", err, 0, INT64_MAX)
    check_bytes(rec.owner, "owner", err, 32)
    check_bytes(rec.prev, "prev", err, 32)
    check_bytes(rec.key, "key", err, KEY_BYTES)
    for name, enum_type in (("phase", EffectPhase), ("effect", EffectKind)):
        value = getattr(rec, name)
        if type(value) is not enum_type:
            check_int(value, name, err, INT64_MIN, INT64_MAX)
            try:
                object.__setattr__(rec, name, enum_type(value))
            except ValueError:
                raise CorruptEffectRecord(f"{name}: unknown value {value}") from None
    check_bytes(rec.request, "request", err, 32)
    check_str(rec.target, "target", err, MAX_TARGET_BYTES)
    check_int(rec.charge, "charge", err, 0, INT64_MAX)
    check_int(rec.status, "status", err, INT64_MIN, INT64_MAX)
    check_bytes(rec.result, "result", err, max_len=MAX_RESULT_BYTES)
    check_int(rec.wall_ns, "wall_ns", err, INT64_MIN, INT64_MAX)
    if rec.phase is EffectPhase.INTENT and (rec.status != 0 or rec.result):
        raise CorruptEffectRecord("an INTENT carries no status or result")


def _items(rec: Any) -> list[Any]:
    return [EFFECT_TAG, *(int(v) if isinstance(v, enum.IntEnum) else v for v in _values(rec))]


def _values(rec: Any) -> list[Any]:
    return [getattr(rec, name) for name in _FIELDS]


@dataclass(frozen=True)
class EffectRecord(_SignedRecord):
    """One phase of one side effect, signed by the owner of ``epoch``."""

    TAG = EFFECT_TAG
    DOMAIN = EFFECT_DOMAIN
    FIELDS = _FIELDS
    KIND = "effect"

    agent: str
    epoch: int
    tick: int
    """The tick the effect ran in (the tick number the agent was computing)."""
    owner: bytes
    prev: bytes
    key: bytes
    phase: EffectPhase
    effect: EffectKind
    request: bytes
    """SHA-256 of the canonical request (``igor_p2p.effects.requests``)."""
    target: str
    """Human-readable: ``METHOD URL`` (cut to 1 KiB) or the payment's recipient."""
    charge: int
    """INTENT: the most the effect may cost (µ, reserved); OUTCOME: what it cost."""
    status: int
    """OUTCOME: an HTTP status, or the hostcall's (negative) error code; 0 in an INTENT."""
    result: bytes
    """OUTCOME: the response body (or a u32 LE size hint when it was too big), or the payment
    receipt; empty in an INTENT."""
    wall_ns: int
    signature: bytes

    def __post_init__(self) -> None:
        _validate(self)
        check_bytes(self.signature, "signature", CorruptEffectRecord, 64)

    @property
    def signer(self) -> bytes:
        return self.owner

    def unsigned_items(self) -> list[Any]:
        return _items(self)

    @classmethod
    def decode(cls, data: bytes) -> EffectRecord:
        return cls._from_items(unpack_array(data, CorruptEffectRecord), data)

    @classmethod
    def _from_items(cls, items: list[Any], data: bytes) -> EffectRecord:
        r = FieldReader(items, CorruptEffectRecord, ("tag", *_FIELDS, "signature"))
        if r.raw("tag") != EFFECT_TAG:
            raise CorruptEffectRecord("not an effect record (format tag)")
        rec = cls(
            agent=r.str("agent", MAX_DID_CHARS),
            epoch=r.int("epoch"),
            tick=r.int("tick"),
            owner=r.bytes("owner", 32),
            prev=r.bytes("prev", 32),
            key=r.bytes("key", KEY_BYTES),
            phase=r.int("phase"),  # type: ignore[arg-type]  # converted by __post_init__
            effect=r.int("effect"),  # type: ignore[arg-type]
            request=r.bytes("request", 32),
            target=r.str("target", MAX_TARGET_BYTES),
            charge=r.int("charge"),
            status=r.int("status"),
            result=r.bytes("result", max_len=MAX_RESULT_BYTES),
            wall_ns=r.int("wall_ns"),
            signature=r.bytes("signature", 64),
        )
        check_canonical(data, rec.encode(), CorruptEffectRecord)
        return rec


@dataclass(frozen=True)
class UnsignedEffectRecord(_UnsignedRecord):
    TAG = EFFECT_TAG
    DOMAIN = EFFECT_DOMAIN
    FIELDS = _FIELDS
    SIGNED = EffectRecord

    agent: str
    epoch: int
    tick: int
    owner: bytes
    prev: bytes
    key: bytes
    phase: EffectPhase
    effect: EffectKind
    request: bytes
    target: str
    charge: int
    status: int
    result: bytes
    wall_ns: int

    def __post_init__(self) -> None:
        _validate(self)

    def unsigned_items(self) -> list[Any]:
        return _items(self)

    def sign(self, keypair: Keypair) -> EffectRecord:
        """Sign as ``owner``; the verifier rejects a record signed by any other key."""
        signed: EffectRecord = super().sign(keypair)
        return signed
