"""The OFFER's replay window and the REJECT's replay_ticks on the wire: absent unless used,
bounded in count and bytes, and anything malformed is a typed error (never a crash); the
policy is range-checked in the node config and the manifest."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.agent.manifest import ManifestError, parse_manifest
from igor_p2p.errors import InvalidInput
from igor_p2p.node.config import ConfigError, NodeConfig
from igor_p2p.wire.codec import MalformedMessage, encode
from igor_p2p.wire.messages import (
    MAX_REPLAY_BYTES,
    MAX_REPLAY_ENTRIES,
    MAX_REPLAY_TICKS,
    MESSAGES,
    Offer,
    Reject,
    RejectCode,
)

NODE = b"\x01" * 32
AGENT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
MID = b"\x03" * 16
DIGEST = b"\x04" * 32


def _offer(replay: tuple[bytes, ...] | None) -> Offer:
    return Offer(NODE, AGENT, MID, 4, 0, (b"g",), b"checkpoint", DIGEST, b"{}", None, replay)


def _decode(wire: dict[str, Any]) -> Any:
    return MESSAGES.decode(msgpack.packb(wire, use_bin_type=True))


def test_an_offer_with_a_window_round_trips_and_one_without_has_no_key() -> None:
    with_window = _offer((b"base", b"inputs", b"tick"))
    assert MESSAGES.decode(encode(with_window)) == with_window
    without = _offer(None)
    assert "replay" not in without.to_wire()
    assert MESSAGES.decode(encode(without)) == without


@pytest.mark.parametrize(
    "window",
    [
        None,  # present but nil: absent is how "none" is said
        b"not a list",
        [b""],  # an empty entry
        [1, 2],
        [b"x"] * (MAX_REPLAY_ENTRIES + 1),
        [b"x" * (32 * 1024 * 1024)] * 3,  # each under the entry cap, over the total
    ],
    ids=["nil", "bytes", "empty-entry", "ints", "too-many", "too-big"],
)
def test_a_malformed_or_oversized_window_is_a_malformed_message(window: Any) -> None:
    assert MAX_REPLAY_BYTES < 3 * 32 * 1024 * 1024
    wire = {**_offer(None).to_wire(), "replay": window}
    with pytest.raises(MalformedMessage):
        _decode(wire)


def test_replay_ticks_comes_with_replay_required_only_and_in_range() -> None:
    asked = Reject(NODE, AGENT, MID, RejectCode.REPLAY_REQUIRED, "offer them", 3)
    assert MESSAGES.decode(encode(asked)) == asked
    plain = Reject(NODE, AGENT, MID, RejectCode.BUSY, "")
    assert "replay_ticks" not in plain.to_wire()
    for wire in [
        {**asked.to_wire(), "replay_ticks": MAX_REPLAY_TICKS + 1},
        {**asked.to_wire(), "replay_ticks": 0},
        {**asked.to_wire(), "replay_ticks": "3"},
        {k: v for k, v in asked.to_wire().items() if k != "replay_ticks"},
        {**plain.to_wire(), "replay_ticks": 3},
    ]:
        with pytest.raises(MalformedMessage):
            _decode(wire)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.integers(-(2**63), 2**63 - 1),
        st.binary(max_size=64),
        st.lists(
            st.one_of(st.binary(max_size=16), st.integers(-(2**63), 2**63 - 1), st.none()),
            max_size=8,
        ),
        st.dictionaries(st.text(max_size=4), st.integers(-(2**63), 2**63 - 1), max_size=3),
    )
)
def test_whatever_a_peer_puts_in_the_window_decodes_or_is_malformed(value: Any) -> None:
    wire = {**_offer(None).to_wire(), "replay": value}
    try:
        message = _decode(wire)
    except MalformedMessage:
        return
    assert isinstance(message, Offer) and isinstance(message.replay, tuple)
    assert all(isinstance(b, bytes) and b for b in message.replay)


def test_the_node_policy_is_range_checked_with_words() -> None:
    assert NodeConfig(replay_on_arrival=MAX_REPLAY_TICKS).replay_on_arrival == MAX_REPLAY_TICKS
    for bad in (-1, MAX_REPLAY_TICKS + 1):
        with pytest.raises(ConfigError, match="replay_on_arrival"):
            NodeConfig(replay_on_arrival=bad)
    with pytest.raises(ConfigError):
        NodeConfig(replay_on_arrival="3")  # type: ignore[arg-type]


def test_the_manifest_option_is_range_checked() -> None:
    ok = parse_manifest(b'{"migration_policy": {"enabled": true, "replay_on_arrival": 5}}')
    assert ok.migration_policy.replay_on_arrival == 5
    assert parse_manifest(b"{}").migration_policy.replay_on_arrival == 0
    for bad in (b"65", b"-1", b"1.5", b'"3"'):
        with pytest.raises(ManifestError):
            parse_manifest(
                b'{"migration_policy": {"enabled": true, "replay_on_arrival": ' + bad + b"}}"
            )
    assert issubclass(ManifestError, InvalidInput)
