"""Witness certificates: ballots, votes, the quorum rules and the WitnessCert codec."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage._codec import CorruptEntry
from igor_p2p.lineage.cert import (
    CERT_TAG,
    MAX_CERT_BYTES,
    VOTE_DOMAIN,
    Ballot,
    CorruptCert,
    Vote,
    WitnessCert,
    cert_shortfall,
    counted_voters,
    proposer_counts,
    quorum,
    quorum_reachable,
    sign_vote,
    vote_bytes,
)
from igor_p2p.lineage.identity import BadSignature, Keypair

from .builders import AGENT_KEY, MALLORY, NODE_A, NODE_B, NODE_C, OTHER_AGENT_KEY

AGENT = AGENT_KEY.did
RECORD = hashlib.sha256(b"a custody record").digest()
NONCE = b"nonce-01"
MEMBERS = [Keypair.from_seed(bytes([0x30 + i]) * 32) for i in range(8)]


def _ballot(proposer: Keypair = NODE_A, round_: int = 1) -> Ballot:
    return Ballot(round_, proposer.public_key, NONCE)


def _cert(voters: tuple[Keypair, ...] = (NODE_B, NODE_C), **changes: object) -> WitnessCert:
    ballot = changes.pop("ballot", _ballot())
    slot = changes.pop("slot", 2)
    votes = [sign_vote(k, AGENT, slot, ballot, RECORD) for k in voters]  # type: ignore[arg-type]
    return WitnessCert.build(AGENT, slot, ballot, RECORD, votes)  # type: ignore[arg-type]


# --- ballots -----------------------------------------------------------------------------------


def test_ballots_order_by_round_then_proposer_then_nonce() -> None:
    low, high = sorted([NODE_A.public_key, NODE_B.public_key])
    assert Ballot(1, high, NONCE) < Ballot(2, low, NONCE)
    assert Ballot(1, low, NONCE) < Ballot(1, high, NONCE)
    assert Ballot(1, low, b"a" * 8) < Ballot(1, low, b"b" * 8)
    assert Ballot(1, low, NONCE) == Ballot(1, low, NONCE)


def test_next_round_outbids_both_its_own_round_and_the_one_it_heard() -> None:
    ballot = _ballot(round_=3)
    assert ballot.next_round(7) == Ballot(8, ballot.proposer, ballot.nonce)
    assert ballot.next_round(1) == Ballot(4, ballot.proposer, ballot.nonce)
    assert ballot.next_round(7) > Ballot(7, b"\xff" * 32, b"\xff" * 8)


@pytest.mark.parametrize(
    "wire",
    [
        None,
        [1, NODE_A.public_key],
        [1, NODE_A.public_key, NONCE, 0],
        [-1, NODE_A.public_key, NONCE],
        [2**63, NODE_A.public_key, NONCE],
        [True, NODE_A.public_key, NONCE],
        [1, NODE_A.public_key[:31], NONCE],
        [1, NODE_A.public_key, NONCE + b"x"],
        [1, "proposer", NONCE],
        (1, NODE_A.public_key, NONCE),
    ],
)
def test_a_malformed_ballot_raises_the_callers_error_class(wire: object) -> None:
    with pytest.raises(CorruptCert):
        Ballot.from_wire(wire)

    class Mine(CorruptEntry):
        pass

    with pytest.raises(Mine):
        Ballot.from_wire(wire, Mine)


def test_a_ballot_round_trips_through_its_wire_form() -> None:
    ballot = _ballot(round_=9)
    assert Ballot.from_wire(ballot.to_wire()) == ballot


# --- votes -------------------------------------------------------------------------------------


def test_a_vote_signs_agent_slot_ballot_and_record_under_its_own_domain() -> None:
    message = vote_bytes(AGENT, 2, _ballot(), RECORD)
    assert message.startswith(VOTE_DOMAIN)
    assert msgpack.unpackb(message[len(VOTE_DOMAIN) :]) == [AGENT, 2, _ballot().to_wire(), RECORD]
    vote = sign_vote(NODE_B, AGENT, 2, _ballot(), RECORD)
    assert vote == Vote(NODE_B.public_key, NODE_B.sign(message))


@pytest.mark.parametrize(
    "changed",
    [
        {"agent": OTHER_AGENT_KEY.did},
        {"slot": 3},
        {"ballot": Ballot(2, NODE_A.public_key, NONCE)},
        {"record": hashlib.sha256(b"another record").digest()},
    ],
)
def test_a_vote_counts_only_for_exactly_what_it_signed(changed: dict) -> None:
    what = {"agent": AGENT, "slot": 2, "ballot": _ballot(), "record": RECORD} | changed
    vote = sign_vote(NODE_B, what["agent"], what["slot"], what["ballot"], what["record"])
    cert = WitnessCert(AGENT, 2, _ballot(), RECORD, (vote,))
    assert cert.valid_voters() == set()
    with pytest.raises(BadSignature):
        cert.verify_signature()


def test_a_vote_needs_a_node_key_and_a_full_signature() -> None:
    with pytest.raises(CorruptCert):
        Vote(b"\x01" * 31, bytes(64))
    with pytest.raises(CorruptCert):
        Vote(b"\x01" * 32, bytes(63))


# --- quorum rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "q", "proposer_votes"),
    [
        (0, 0, False),
        (1, 1, False),
        (2, 2, True),
        (3, 2, False),
        (4, 3, True),
        (5, 3, False),
        (6, 4, True),
        (7, 4, False),
    ],
)
def test_quorum_is_a_majority_and_the_proposer_counts_only_if_2q_is_at_least_k_plus_2(
    k: int, q: int, proposer_votes: bool
) -> None:
    members = [m.public_key for m in MEMBERS[:k]]
    assert quorum(members) == q
    assert proposer_counts(members) is proposer_votes
    assert proposer_votes == (2 * q >= k + 2)


def test_counted_voters_drop_non_members_and_an_uncounted_proposer() -> None:
    three = [m.public_key for m in MEMBERS[:3]]
    voters = [*three, MALLORY.public_key]
    assert counted_voters(three, voters, three[0]) == set(three[1:])
    four = [m.public_key for m in MEMBERS[:4]]
    assert counted_voters(four, voters, four[0]) == set(three)  # 2q >= k + 2: it counts


def test_a_quorum_is_out_of_reach_for_the_only_witness_proposing_for_itself() -> None:
    one = [NODE_A.public_key]
    assert not quorum_reachable(one, NODE_A.public_key)
    assert quorum_reachable(one, NODE_B.public_key)
    three = [m.public_key for m in (NODE_A, NODE_B, NODE_C)]
    assert quorum_reachable(three, NODE_A.public_key)
    assert quorum_reachable([], NODE_A.public_key)


def test_an_empty_witness_set_needs_no_votes() -> None:
    assert cert_shortfall((), NODE_A.public_key, (), ()) is None
    assert quorum(()) == 0


def test_a_joint_quorum_needs_both_the_previous_and_the_new_set() -> None:
    old = [m.public_key for m in (NODE_A, NODE_B, NODE_C)]
    new = [m.public_key for m in (NODE_B, NODE_C, MALLORY)]
    proposer = NODE_A.public_key
    assert cert_shortfall(old[1:], proposer, old, new) is None
    short_old = cert_shortfall([NODE_C.public_key, MALLORY.public_key], proposer, old, new)
    assert short_old == "1 of 2 votes needed from the previous witness set"
    short_new = cert_shortfall([NODE_A.public_key, NODE_B.public_key], NODE_C.public_key, old, new)
    assert short_new == "1 of 2 votes needed from the new witness set"


def _subsets(items: list[bytes]) -> list[frozenset[bytes]]:
    return [frozenset(c) for r in range(len(items) + 1) for c in itertools.combinations(items, r)]


@pytest.mark.parametrize("k", range(1, 8))
def test_any_two_certificates_share_a_witness_besides_a_possibly_restored_proposer(k: int) -> None:
    # The safety argument of the proposer rule: whatever two quorums certified two values for
    # one slot, they share a witness whose vote is not the (possibly amnesiac) second proposer's
    # own. Exhaustive over every pair of vote sets for witness sets of 1..7 members.
    members = [m.public_key for m in MEMBERS[:k]]
    outsider = MALLORY.public_key
    subsets = _subsets(members)
    for proposer_2 in [*members, outsider]:
        second = [
            counted_voters(members, s, proposer_2)
            for s in subsets
            if cert_shortfall(s, proposer_2, members, ()) is None
        ]
        for proposer_1 in [*members, outsider]:
            first = [
                counted_voters(members, s, proposer_1)
                for s in subsets
                if cert_shortfall(s, proposer_1, members, ()) is None
            ]
            for c1 in first:
                for c2 in second:
                    assert (c1 & c2) - {proposer_2}, (k, c1, c2, proposer_2)


@given(
    k_old=st.integers(0, 7),
    k_new=st.integers(0, 7),
    overlap=st.integers(0, 7),
    voters=st.sets(st.integers(0, 13)),
    more=st.sets(st.integers(0, 13)),
    proposer=st.integers(0, 14),
)
@settings(max_examples=300, deadline=None)
def test_more_votes_never_undo_a_joint_quorum(
    k_old: int, k_new: int, overlap: int, voters: set[int], more: set[int], proposer: int
) -> None:
    pool = [m.public_key for m in MEMBERS] + [
        Keypair.from_seed(bytes([0x50 + i]) * 32).public_key for i in range(7)
    ]
    old = pool[:k_old]
    start = max(0, k_old - min(overlap, k_old))
    new = pool[start : start + k_new]
    chosen = {pool[i] for i in voters}
    if cert_shortfall(chosen, pool[proposer], old, new) is None:
        assert cert_shortfall(chosen | {pool[i] for i in more}, pool[proposer], old, new) is None


# --- the certificate -------------------------------------------------------------------------


def test_a_certificate_round_trips_and_its_digest_is_the_hash_of_its_encoding() -> None:
    cert = _cert()
    data = cert.encode()
    decoded = WitnessCert.decode(data)
    assert decoded == cert
    assert cert.digest() == hashlib.sha256(data).digest()
    assert msgpack.unpackb(data)[0] == CERT_TAG
    assert cert.record_digest == cert.prev == RECORD
    assert cert.signer == b""
    decoded.verify_signature()


def test_build_sorts_the_votes_and_keeps_one_per_witness() -> None:
    b_vote = sign_vote(NODE_B, AGENT, 2, _ballot(), RECORD)
    c_vote = sign_vote(NODE_C, AGENT, 2, _ballot(), RECORD)
    cert = WitnessCert.build(AGENT, 2, _ballot(), RECORD, [c_vote, b_vote, c_vote])
    assert list(cert.voters) == sorted({NODE_B.public_key, NODE_C.public_key})
    assert len(cert.votes) == 2


def test_a_certificate_with_unsorted_or_repeated_votes_cannot_exist() -> None:
    cert = _cert()
    with pytest.raises(CorruptCert):
        dataclasses.replace(cert, votes=tuple(reversed(cert.votes)))
    with pytest.raises(CorruptCert):
        dataclasses.replace(cert, votes=(cert.votes[0], cert.votes[0]))


def test_a_certificate_starts_epoch_two_or_later() -> None:
    with pytest.raises(CorruptCert):
        _cert(slot=1)


def test_shortfall_counts_only_votes_that_verify_unless_trusted() -> None:
    cert = _cert((NODE_B, NODE_C))
    forged = dataclasses.replace(
        cert, votes=(cert.votes[0], dataclasses.replace(cert.votes[1], signature=bytes(64)))
    )
    members = sorted(k.public_key for k in (NODE_A, NODE_B, NODE_C))
    assert cert.shortfall(members, members) is None
    assert forged.shortfall(members, members) == "1 of 2 votes needed from the previous witness set"
    assert forged.shortfall(members, members, trusted=True) is None
    with pytest.raises(BadSignature):
        forged.verify_signature()


def test_the_proposers_own_vote_in_a_certificate_counts_only_for_an_even_set() -> None:
    three = sorted(k.public_key for k in (NODE_A, NODE_B, NODE_C))
    two = sorted(k.public_key for k in (NODE_A, NODE_B))
    own_and_one = _cert((NODE_A, NODE_B))  # proposer NODE_A
    assert own_and_one.shortfall(three, three) is not None
    assert own_and_one.shortfall(two, two) is None


def _encoded_items() -> list:
    return msgpack.unpackb(_cert().encode())


def _pack(items: list) -> bytes:
    return msgpack.packb(items, use_bin_type=True)


def _with(index: int, value: object) -> bytes:
    items = _encoded_items()
    items[index] = value
    return _pack(items)


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("empty", b""),
        ("not an array", msgpack.packb({"a": 1})),
        ("wrong tag", _with(0, "igor/cert/2")),
        ("too few fields", _pack(_encoded_items()[:-1])),
        ("bad did", _with(1, "did:key:zNope")),
        ("slot one", _with(2, 1)),
        ("slot is bool", _with(2, True)),
        ("ballot not a list", _with(3, b"ballot")),
        ("ballot short nonce", _with(3, [1, NODE_A.public_key, b"n"])),
        ("short record digest", _with(4, b"\x00" * 31)),
        ("votes not a list", _with(5, b"")),
        ("vote not a pair", _with(5, [[NODE_B.public_key]])),
        ("vote short signature", _with(5, [[NODE_B.public_key, bytes(63)]])),
        ("votes unsorted", _with(5, list(reversed(_encoded_items()[5])))),
        ("fifteen votes", _with(5, [[bytes([i]) * 32, bytes(64)] for i in range(15)])),
        ("trailing bytes", _cert().encode() + b"\x00"),
        ("larger than the cap", b"\x96" + bytes(MAX_CERT_BYTES)),
    ],
)
def test_a_malformed_certificate_raises_corrupt_cert(label: str, data: bytes) -> None:
    with pytest.raises(CorruptCert):
        WitnessCert.decode(data)
    assert issubclass(CorruptCert, InvalidInput)


def test_a_non_canonical_encoding_of_a_valid_certificate_is_rejected() -> None:
    data = _cert().encode()
    items = msgpack.unpackb(data)
    slot_at = data.index(msgpack.packb(items[1]), 1) + len(msgpack.packb(items[1]))
    assert data[slot_at] == 0x02
    wide = data[:slot_at] + b"\xcf" + (2).to_bytes(8, "big") + data[slot_at + 1 :]
    assert msgpack.unpackb(wide) == items
    with pytest.raises(CorruptCert):
        WitnessCert.decode(wide)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_random_bytes_never_escape_certificate_decoding_untyped(data: bytes) -> None:
    with contextlib.suppress(CorruptCert):
        WitnessCert.decode(data)


_VALID = _cert().encode()


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
@settings(max_examples=300)
def test_mutated_certificates_decode_canonically_or_raise_corrupt_cert(
    edits: list[tuple[int, int]],
) -> None:
    mutated = bytearray(_VALID)
    for pos, value in edits:
        mutated[pos % len(mutated)] = value
    try:
        cert = WitnessCert.decode(bytes(mutated))
    except CorruptCert:
        return
    assert cert.encode() == bytes(mutated)
