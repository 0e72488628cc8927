"""Fuzz: gossip payloads (node announcements, authority claims) decode and enter the peer table
or the claim checks, or fail typed (a claim: dropped as None)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from igor_p2p.net.errors import MalformedMessage
from igor_p2p.net.framing import decode_message
from igor_p2p.node.claims import MAX_BLOB, MAX_CLAIMS_PER_MESSAGE, MAX_EPOCH, Claim
from igor_p2p.node.peers import Announcement, PeerTable

from .fuzzing import fuzz, hostile_bytes, msgpack_values, packb, replaced_field, typed_only

announcements = st.builds(
    Announcement,
    peer_id=st.text(min_size=1, max_size=60),
    name=st.text(max_size=20),
    addrs=st.lists(st.text(max_size=60), max_size=4).map(tuple),
    capacity=st.integers(0, 10**6),
    price=st.integers(0, 10**9),
    load=st.integers(0, 10**6),
    every_ms=st.integers(0, 3_600_000),
).map(lambda a: a.to_wire())

payloads = st.one_of(
    hostile_bytes(announcements.map(packb)),
    replaced_field(announcements).map(packb),
    st.dictionaries(
        st.sampled_from(["type", "peer_id", "addrs", "capacity", "price", "load", "every_ms"]),
        msgpack_values,
    ).map(lambda d: packb({"type": "announce", **d})),
)


@fuzz(payloads)
def _announce(payload: bytes) -> None:
    """What a gossip subscriber does with an announce payload, end to end."""
    try:
        message: dict[str, Any] = decode_message(payload)
    except MalformedMessage:
        return
    announcement = typed_only(Announcement.from_wire, message)
    if announcement is None:
        return
    table = PeerTable(self_id="me", down_after_s=4.0)
    table.observe(announcement, now=1.0)
    table.sweep(now=2.0)
    assert table.to_json(now=2.0) is not None
    assert announcement.capacity <= 10**6 and announcement.price <= 10**9


test_announcements_decode_or_fail_typed, test_announcements_soak = _announce


claims = st.builds(
    lambda agent, epoch, record, cert: {
        "agent": agent,
        "epoch": epoch,
        "record": record,
        "cert": cert,
    },
    st.text(min_size=1, max_size=128),
    st.integers(1, 2**63 - 1),
    st.binary(max_size=MAX_BLOB),
    st.binary(max_size=MAX_BLOB),
)

claim_payloads = st.one_of(
    hostile_bytes(
        st.lists(claims, max_size=3).map(lambda cs: packb({"type": "claims", "claims": cs}))
    ),
    replaced_field(claims).map(lambda c: packb({"type": "claims", "claims": [c]})),
    st.lists(msgpack_values, max_size=4).map(lambda xs: packb({"type": "claims", "claims": xs})),
)


@fuzz(claim_payloads)
def _claims(payload: bytes) -> None:
    """What a claims subscriber does with a payload before any proof is checked: each entry is
    a well-formed claim within its bounds, or None, never an exception."""
    try:
        message: dict[str, Any] = decode_message(payload)
    except MalformedMessage:
        return
    entries = message.get("claims")
    if not isinstance(entries, list):
        return
    for raw in entries[:MAX_CLAIMS_PER_MESSAGE]:
        claim = Claim.from_wire(raw)
        if claim is not None:
            assert 1 <= claim.epoch <= MAX_EPOCH and 0 < len(claim.agent) <= 128
            assert len(claim.record) <= MAX_BLOB and len(claim.cert) <= MAX_BLOB


test_claims_decode_or_are_dropped, test_claims_soak = _claims
