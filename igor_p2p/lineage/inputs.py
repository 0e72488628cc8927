"""Tick-input records: what an agent observed during the ticks a checkpoint covers.

A :class:`TickInputs` entry sits right before the checkpoint whose ticks it describes (that
checkpoint names it as ``prev``, so the owner's signature on the checkpoint also covers it). It
exists only when one of those ticks asked for something nondeterministic: a clock reading, random
bytes, the budget, resume information, an HTTP response, a payment result. ``log`` is the
observations of ticks ``first_tick … last_tick`` in the byte layout of
:mod:`igor_p2p.effects.observations`; with them ``igor checkpoint replay`` re-executes the ticks
offline and checks the resulting state against the checkpoint.

``complete`` is 0 when the observations were more than the node keeps
(:data:`MAX_LOG_BYTES`): the interval is then not replayable, and replay says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from igor_p2p.lineage._codec import (
    INT64_MAX,
    CorruptEntry,
    FieldReader,
    check_bytes,
    check_canonical,
    check_int,
    unpack_array,
)
from igor_p2p.lineage.custody import _check_agent, _SignedRecord, _UnsignedRecord
from igor_p2p.lineage.identity import MAX_DID_CHARS, Keypair

INPUTS_TAG = "igor/inputs/1"
INPUTS_DOMAIN = b"igor-p2p/tick-inputs/v1\x00"
MAX_LOG_BYTES = 8 * 1024 * 1024
"""Observations of one checkpoint interval kept at most (beyond: ``complete`` = 0)."""

_FIELDS = ("agent", "epoch", "owner", "prev", "first_tick", "last_tick", "complete", "log")


class CorruptTickInputs(CorruptEntry):
    """Bytes or fields that are not a valid tick-input record."""


def _validate(rec: Any) -> None:
    err = CorruptTickInputs
    try:
        _check_agent(rec.agent)
    except CorruptEntry as exc:
        raise CorruptTickInputs(str(exc)) from None
    check_int(rec.epoch, "epoch", err, 1, INT64_MAX)
    check_bytes(rec.owner, "owner", err, 32)
    check_bytes(rec.prev, "prev", err, 32)
    check_int(rec.first_tick, "first_tick", err, 1, INT64_MAX)
    check_int(rec.last_tick, "last_tick", err, rec.first_tick, INT64_MAX)
    check_int(rec.complete, "complete", err, 0, 1)
    check_bytes(rec.log, "log", err, max_len=MAX_LOG_BYTES)


@dataclass(frozen=True)
class TickInputs(_SignedRecord):
    """The observations of ticks ``first_tick … last_tick``, signed by the owner of ``epoch``."""

    TAG = INPUTS_TAG
    DOMAIN = INPUTS_DOMAIN
    FIELDS = _FIELDS
    KIND = "tick-inputs"

    agent: str
    epoch: int
    owner: bytes
    prev: bytes
    first_tick: int
    last_tick: int
    complete: int
    log: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _validate(self)
        check_bytes(self.signature, "signature", CorruptTickInputs, 64)

    @property
    def signer(self) -> bytes:
        return self.owner

    @classmethod
    def decode(cls, data: bytes) -> TickInputs:
        return cls._from_items(unpack_array(data, CorruptTickInputs), data)

    @classmethod
    def _from_items(cls, items: list[Any], data: bytes) -> TickInputs:
        r = FieldReader(items, CorruptTickInputs, ("tag", *_FIELDS, "signature"))
        if r.raw("tag") != INPUTS_TAG:
            raise CorruptTickInputs("not a tick-input record (format tag)")
        rec = cls(
            agent=r.str("agent", MAX_DID_CHARS),
            epoch=r.int("epoch"),
            owner=r.bytes("owner", 32),
            prev=r.bytes("prev", 32),
            first_tick=r.int("first_tick"),
            last_tick=r.int("last_tick"),
            complete=r.int("complete"),
            log=r.bytes("log", max_len=MAX_LOG_BYTES),
            signature=r.bytes("signature", 64),
        )
        check_canonical(data, rec.encode(), CorruptTickInputs)
        return rec


@dataclass(frozen=True)
class UnsignedTickInputs(_UnsignedRecord):
    TAG = INPUTS_TAG
    DOMAIN = INPUTS_DOMAIN
    FIELDS = _FIELDS
    SIGNED = TickInputs

    agent: str
    epoch: int
    owner: bytes
    prev: bytes
    first_tick: int
    last_tick: int
    complete: int
    log: bytes

    def __post_init__(self) -> None:
        _validate(self)

    def sign(self, keypair: Keypair) -> TickInputs:
        signed: TickInputs = super().sign(keypair)
        return signed
