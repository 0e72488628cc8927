"""Fuzz: every stream message a peer can send (migrate/recover messages, info requests and
replies, the generic message frame) decodes or fails with a typed error, never anything else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import ABSENT, RejectCode
from igor_p2p.handoff.messages import (
    MAX_EPOCH,
    Abort,
    Ack,
    Commit,
    Confirm,
    Message,
    MessageType,
    Offer,
    Reject,
    StatusQuery,
    StatusReply,
    decode,
    encode,
    from_wire,
)
from igor_p2p.net.errors import MalformedMessage
from igor_p2p.net.framing import decode_message
from igor_p2p.node.info import BadInfoRequest, parse_request

from .fuzzing import fuzz, hostile_bytes, msgpack_values, packb, replaced_field, typed_only

ids = st.text(min_size=1, max_size=60)
epochs = st.integers(1, MAX_EPOCH)
mids = st.binary(min_size=16, max_size=16)
digests = st.binary(min_size=32, max_size=32)
blobs = st.binary(min_size=1, max_size=64)

valid_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Offer,
        ids,
        ids,
        epochs,
        mids,
        blobs,
        st.lists(blobs, max_size=3).map(tuple),
        digests,
        blobs,
        st.none() | blobs,
    ),
    st.builds(Ack, ids, ids, epochs, mids, digests),
    st.builds(Reject, ids, ids, mids, st.sampled_from(list(RejectCode))),
    st.builds(Commit, ids, ids, mids, blobs),
    st.builds(Confirm, ids, ids, mids, epochs),
    st.builds(Abort, ids, ids, mids),
    st.builds(StatusQuery, ids, ids, st.none() | mids, st.integers(0, MAX_EPOCH)),
    st.builds(
        StatusReply,
        ids,
        ids,
        st.sampled_from([ABSENT, *AuthorityState]),
        st.integers(0, MAX_EPOCH),
        st.none(),
        st.none(),
        st.none() | digests,
    ),
)


def test_the_valid_message_strategy_round_trips() -> None:
    """The mutations below start from messages that really decode."""
    for message in [
        Confirm("p", "a", bytes(16), 2),
        StatusQuery("p", "a", None, 0),
        Offer("p", "a", 1, bytes(16), b"c", (b"e",), bytes(32), b"{}", None),
    ]:
        assert decode(encode(message)) == message


handoff_frames = st.one_of(
    hostile_bytes(valid_messages.map(encode)),
    replaced_field(valid_messages.map(lambda m: m.to_wire())).map(packb),
    st.builds(
        lambda kind, body: packb({"type": kind, **body}),
        st.sampled_from([t.value for t in MessageType]),
        st.dictionaries(st.sampled_from(["sender", "agent", "epoch", "new_epoch"]), msgpack_values),
    ),
)


@fuzz(handoff_frames)
def _handoff(frame: bytes) -> None:
    """A migrate/recover frame decodes to a message or fails as MalformedMessage."""
    message = typed_only(decode, frame)
    if message is not None:
        assert decode(encode(message)) == message  # whatever decodes is well formed


test_handoff_frames_decode_or_fail_typed, test_handoff_frames_soak = _handoff


@fuzz(msgpack_values)
def _handoff_maps(wire: Any) -> None:
    """A decoded value of any shape handed to from_wire fails typed or builds a message."""
    typed_only(from_wire, wire)


test_handoff_maps_decode_or_fail_typed, test_handoff_maps_soak = _handoff_maps


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
