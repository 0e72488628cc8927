"""Fuzz: every stream message a peer can send (the authority protocols' requests and replies,
info requests, the generic message frame) decodes or fails with a typed error, never anything
else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st

from igor_p2p.lineage.cert import BALLOT_NONCE_BYTES, Ballot
from igor_p2p.net.errors import MalformedMessage
from igor_p2p.net.framing import decode_message
from igor_p2p.node.info import BadInfoRequest, parse_request
from igor_p2p.wire.codec import MAX_EPOCH, Message, encode
from igor_p2p.wire.messages import (
    MAX_REPLAY_TICKS,
    MESSAGES,
    Abort,
    Accept,
    Accepted,
    Ack,
    Commit,
    Confirm,
    Done,
    GetModule,
    Holding,
    Learn,
    Module,
    Nack,
    NackCode,
    Offer,
    Prepare,
    Promise,
    Refused,
    RefusedCode,
    Reject,
    RejectCode,
    Status,
    StatusReply,
)

from .fuzzing import fuzz, hostile_bytes, msgpack_values, packb, replaced_field, typed_only

ids = st.text(min_size=1, max_size=60)
nodes = st.binary(min_size=32, max_size=32)
epochs = st.integers(1, MAX_EPOCH)
epochs_or_zero = st.integers(0, MAX_EPOCH)
mids = st.binary(min_size=16, max_size=16)
digests = st.binary(min_size=32, max_size=32)
blobs = st.binary(min_size=1, max_size=64)
chains = st.lists(blobs, max_size=3).map(tuple)
reasons = st.text(max_size=40)
ballots = st.builds(
    Ballot,
    epochs_or_zero,
    nodes,
    st.binary(min_size=BALLOT_NONCE_BYTES, max_size=BALLOT_NONCE_BYTES),
)
accepted = st.none() | st.tuples(ballots, blobs)

BY_TYPE: dict[type[Message], st.SearchStrategy[Message]] = {
    Offer: st.builds(Offer, nodes, ids, mids, epochs, epochs_or_zero, chains, blobs, digests,
                     blobs, st.none() | blobs, st.none() | chains.filter(bool)),
    Ack: st.builds(Ack, nodes, ids, mids, epochs, digests),
    Reject: st.builds(
        Reject, nodes, ids, mids,
        st.sampled_from([c for c in RejectCode if c is not RejectCode.REPLAY_REQUIRED]), reasons,
    ) | st.builds(
        Reject, nodes, ids, mids, st.just(RejectCode.REPLAY_REQUIRED), reasons,
        st.integers(1, MAX_REPLAY_TICKS),
    ),
    Commit: st.builds(Commit, nodes, ids, mids, blobs, blobs),
    Confirm: st.builds(Confirm, nodes, ids, mids, epochs),
    Abort: st.builds(Abort, nodes, ids, mids),
    Done: st.builds(Done, nodes, ids),
    Refused: st.builds(Refused, nodes, st.sampled_from(list(RefusedCode)), reasons),
    Prepare: st.builds(Prepare, nodes, ids, epochs, ballots, epochs_or_zero, chains),
    Promise: st.builds(
        lambda s, a, e, b, acc: Promise(s, a, e, b, *(acc or (None, None))),
        nodes, ids, epochs, ballots, accepted,
    ),
    Accept: st.builds(Accept, nodes, ids, epochs, ballots, blobs, epochs_or_zero, chains),
    Accepted: st.builds(Accepted, nodes, ids, epochs, ballots, digests,
                        st.binary(min_size=64, max_size=64)),
    Nack: st.builds(Nack, nodes, ids, epochs, st.sampled_from(list(NackCode)), epochs_or_zero,
                    st.none() | ballots, epochs_or_zero, chains),
    Learn: st.builds(Learn, nodes, ids, epochs_or_zero, chains),
    Status: st.builds(Status, nodes, ids, epochs_or_zero),
    StatusReply: st.builds(
        lambda s, a, c, ca, ch, acc, h, e, m: StatusReply(
            s, a, c, ca, ch, *(acc or (None, None)), h, e, m
        ),
        nodes, ids, epochs_or_zero, epochs_or_zero, chains, accepted,
        st.sampled_from(list(Holding)), epochs_or_zero, st.none() | mids,
    ),
    GetModule: st.builds(GetModule, nodes, digests),
    Module: st.builds(Module, nodes, st.none() | blobs),
}  # fmt: skip
valid_messages: st.SearchStrategy[Message] = st.one_of(*BY_TYPE.values())


def test_the_valid_message_strategy_covers_every_message_type() -> None:
    """The mutations below start from every kind of message a peer can send."""
    assert {t.TYPE for t in BY_TYPE} == set(MESSAGES.by_type)


def test_the_valid_message_strategy_round_trips() -> None:
    """The mutations below start from messages that really decode."""
    me = bytes(32)
    for message in [
        Confirm(me, "a", bytes(16), 2),
        Status(me, "a", 0),
        Offer(me, "a", bytes(16), 1, 0, (b"e",), b"c", bytes(32), b"{}", None),
        Promise(me, "a", 2, Ballot(1, me, bytes(8)), None, None),
    ]:
        assert MESSAGES.decode(encode(message)) == message


@fuzz(valid_messages)
def _valid(message: Message) -> None:
    """Every message the strategy builds decodes back to itself (so mutations start from
    frames a node really accepts)."""
    assert MESSAGES.decode(encode(message)) == message


test_valid_messages_round_trip, test_valid_messages_round_trip_soak = _valid


authority_frames = st.one_of(
    hostile_bytes(valid_messages.map(encode)),
    replaced_field(valid_messages.map(lambda m: m.to_wire())).map(packb),
    st.builds(
        lambda kind, body: packb({"type": kind, **body}),
        st.sampled_from(sorted(MESSAGES.by_type)),
        st.dictionaries(
            st.sampled_from(
                ["sender", "agent", "epoch", "slot", "ballot", "chain", "migration_id"]
            ),
            msgpack_values,
        ),
    ),
)


@fuzz(authority_frames)
def _authority(frame: bytes) -> None:
    """A migrate/witness/module frame decodes to a message or fails as MalformedMessage."""
    message = typed_only(MESSAGES.decode, frame)
    if message is not None:
        assert MESSAGES.decode(encode(message)) == message  # whatever decodes is well formed


test_authority_frames_decode_or_fail_typed, test_authority_frames_soak = _authority


@fuzz(msgpack_values)
def _authority_maps(wire: Any) -> None:
    """A decoded value of any shape handed to from_wire fails typed or builds a message."""
    typed_only(MESSAGES.from_wire, wire)


test_authority_maps_decode_or_fail_typed, test_authority_maps_soak = _authority_maps


generic_frames = hostile_bytes(
    st.dictionaries(st.text(max_size=8), msgpack_values, max_size=5).map(
        lambda d: packb({"type": "agent_status", **d})
    )
)


@fuzz(generic_frames)
def _generic(frame: bytes) -> None:
    """The frame decoder of every /igor/ protocol: a map with sane values or MalformedMessage."""
    try:
        message = decode_message(frame)
    except MalformedMessage:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)


test_message_frames_decode_or_fail_typed, test_message_frames_soak = _generic


@fuzz(generic_frames)
def _info(frame: bytes) -> None:
    """An /igor/info request parses to a DID or is refused with BadInfoRequest."""
    message = typed_only(decode_message, frame)
    if message is None:
        return
    try:
        did = parse_request(message)
    except BadInfoRequest:
        return
    assert isinstance(did, str) and len(did) <= 128


test_info_requests_parse_or_fail_typed, test_info_requests_soak = _info


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, float("nan"), float("inf")])
def test_a_frame_with_an_out_of_range_number_is_malformed(value: object) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(packb({"type": "claims", "claims": [{"agent": "a", "epoch": value}]}))
