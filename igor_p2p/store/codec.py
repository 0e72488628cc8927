"""Stored encodings of witness state: :class:`WitnessRecord` blobs (msgpack).

A witness record's ``chosen`` link is stored with its derived fields (owner, witness set,
digest) as well as its evidence, so it is read back without verifying it again (it was verified
when learned). Every decoding failure raises :class:`CorruptWitness`.
"""

from __future__ import annotations

from typing import Any

import msgpack

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.errors import InvalidInput
from igor_p2p.lineage._codec import MAX_ENTRY_BYTES, CorruptEntry
from igor_p2p.lineage.cert import Ballot

WITNESS_TAG = "igor/witness-record/1"


class CorruptWitness(InvalidInput):
    """A stored witness record that does not decode."""


def start_fields(start: EpochStart) -> list[Any]:
    return [
        start.agent,
        start.epoch,
        start.owner,
        list(start.witnesses),
        start.digest,
        start.record,
        start.cert,
        start.forced,
        start.genesis,
    ]


def start_from_fields(value: Any) -> EpochStart:
    if not isinstance(value, list) or len(value) != 9:
        raise CorruptWitness("custody link: want 9 fields")
    agent, epoch, owner, witnesses, digest, record, cert, forced, genesis = value
    if not isinstance(agent, str) or type(epoch) is not int or epoch < 1:
        raise CorruptWitness("custody link: bad agent or epoch")
    if not isinstance(witnesses, list) or not all(isinstance(w, bytes) for w in witnesses):
        raise CorruptWitness("custody link: bad witness set")
    for field in (owner, digest, record, cert, genesis):
        if not isinstance(field, bytes):
            raise CorruptWitness("custody link: want bytes")
    if not isinstance(forced, bool):
        raise CorruptWitness("custody link: bad forced flag")
    return EpochStart(
        agent=agent,
        epoch=epoch,
        owner=owner,
        witnesses=tuple(witnesses),
        digest=digest,
        record=record,
        cert=cert,
        forced=forced,
        genesis=genesis,
    )


def _ballot(value: Any) -> Ballot | None:
    if value is None:
        return None
    try:
        return Ballot.from_wire(value)
    except CorruptEntry as exc:
        raise CorruptWitness(f"ballot: {exc}") from None


def encode_witness(record: WitnessRecord) -> bytes:
    packed: bytes = msgpack.packb(
        [
            WITNESS_TAG,
            record.agent,
            start_fields(record.chosen),
            record.promised.to_wire() if record.promised else None,
            record.accepted_ballot.to_wire() if record.accepted_ballot else None,
            record.accepted_record,
        ],
        use_bin_type=True,
    )
    return packed


def decode_witness(blob: bytes) -> WitnessRecord:
    try:
        body = msgpack.unpackb(blob, raw=False, max_bin_len=MAX_ENTRY_BYTES)
    except Exception as exc:
        raise CorruptWitness(f"not a witness record: {type(exc).__name__}") from None
    if not isinstance(body, list) or len(body) != 6 or body[0] != WITNESS_TAG:
        raise CorruptWitness("not a witness record")
    _, agent, chosen, promised, accepted_ballot, accepted_record = body
    if not isinstance(agent, str):
        raise CorruptWitness("agent: want a string")
    if accepted_record is not None and not isinstance(accepted_record, bytes):
        raise CorruptWitness("accepted record: want bytes")
    return WitnessRecord(
        agent=agent,
        chosen=start_from_fields(chosen),
        promised=_ballot(promised),
        accepted_ballot=_ballot(accepted_ballot),
        accepted_record=accepted_record,
    )
