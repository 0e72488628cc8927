"""What a node can prove about who owns each epoch: EpochStart links built only from evidence that
verifies (igor_p2p.authority.custody)."""

from __future__ import annotations

import dataclasses

import pytest

from igor_p2p.authority.custody import (
    EpochStart,
    InvalidCustody,
    chain_after,
    chain_from_genesis,
    follow,
    genesis_start,
    next_start,
    read_chain,
)
from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.envelope import CheckpointKind

from .chain import (
    OTHER_AGENT_KEY,
    A,
    B,
    C,
    Custody,
    D,
    E,
    F,
    G,
    make_cert,
    make_checkpoint,
    make_forced,
    make_genesis,
    make_transfer,
    pks,
)


def test_the_genesis_starts_epoch_one_owned_by_its_owner_with_its_witnesses() -> None:
    genesis = make_genesis(A, (B, C, D))
    start = genesis_start(genesis)
    assert (start.agent, start.epoch, start.owner) == (genesis.agent, 1, A.public_key)
    assert start.witnesses == pks(B, C, D)
    assert start.digest == genesis.digest()
    assert start.is_genesis and start.links() == (genesis.encode(),)
    assert not start.forced


def test_only_a_genesis_signed_by_the_agent_key_starts_a_chain() -> None:
    custody = Custody()
    tick = make_checkpoint(custody.latest, custody.latest.digest, kind=CheckpointKind.TICK)
    with pytest.raises(InvalidCustody, match="genesis at epoch 1"):
        genesis_start(tick)
    node_signed = dataclasses.replace(custody.genesis.unsigned).sign(A)
    with pytest.raises(InvalidCustody, match="agent key"):
        genesis_start(node_signed)
    forged = dataclasses.replace(custody.genesis, signature=bytes(64))
    with pytest.raises(InvalidCustody, match="signature"):
        genesis_start(forged)
    assert genesis_start(forged, verified=True).epoch == 1  # a caller that checked it already


def test_a_certified_transfer_starts_the_next_epoch() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, E, witnesses=(B, C, D))
    cert = make_cert(record, (B, C))
    start = next_start(custody.latest, record.encode(), cert.encode())
    assert (start.epoch, start.owner, start.witnesses) == (2, E.public_key, pks(B, C, D))
    assert start.digest == cert.digest()
    assert start.links() == (record.encode(), cert.encode())
    assert not start.is_genesis and not start.forced


def test_a_certified_forced_recovery_starts_a_forced_epoch() -> None:
    custody = Custody(A, (B, C, D))
    start = custody.force(E)
    assert start.forced and start.owner == E.public_key and start.epoch == 2


def _link(custody: Custody, **changes: object) -> tuple[bytes, bytes]:
    record = make_transfer(custody.latest, E, **changes)  # type: ignore[arg-type]
    return record.encode(), make_cert(record, (B, C)).encode()


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"agent": OTHER_AGENT_KEY.did}, "another agent"),
        ({"from_epoch": 2, "to_epoch": 3}, "moves epoch 2 to 3"),
        ({"to_epoch": 3}, "moves epoch 1 to 3"),
        ({"from_node": E.public_key, "signer": E}, "not signed by the owner"),
        ({"signer": E}, "signature does not verify"),
    ],
)
def test_a_record_that_does_not_follow_the_known_epoch_is_refused(
    changes: dict, words: str
) -> None:
    custody = Custody()
    record_blob, cert_blob = _link(custody, **changes)
    with pytest.raises(InvalidCustody, match=words):
        next_start(custody.latest, record_blob, cert_blob)


def test_a_record_without_a_quorum_certificate_is_refused() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, E)
    for voters, words in [
        ((B,), "1 of 2 votes"),
        ((A, B), "1 of 2 votes"),  # A is no witness here; only B counts
        ((E, F, G), "0 of 2 votes"),  # signatures of non-members count for nothing
    ]:
        cert = make_cert(record, voters)
        with pytest.raises(InvalidCustody, match=words):
            next_start(custody.latest, record.encode(), cert.encode())


def test_a_certificate_must_be_for_this_record_and_epoch() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, E)
    rival = make_transfer(custody.latest, F)
    with pytest.raises(InvalidCustody, match="another record"):
        next_start(custody.latest, record.encode(), make_cert(rival, (B, C)).encode())
    later = Custody(A, (B, C, D))
    later.resume()
    later_record = make_transfer(later.latest, E)
    with pytest.raises(InvalidCustody, match="another agent or epoch"):
        next_start(custody.latest, record.encode(), make_cert(later_record, (B, C)).encode())


def test_a_changed_witness_set_needs_votes_from_both_sets() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, G, witnesses=(D, E, F))
    with pytest.raises(InvalidCustody, match="new witness set"):
        next_start(custody.latest, record.encode(), make_cert(record, (B, C)).encode())
    with pytest.raises(InvalidCustody, match="previous witness set"):
        next_start(custody.latest, record.encode(), make_cert(record, (E, F)).encode())
    start = next_start(custody.latest, record.encode(), make_cert(record, (C, D, E)).encode())
    assert start.witnesses == pks(D, E, F)


def test_verified_links_skip_only_the_signature_checks() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, E)
    forged_record = dataclasses.replace(record, signature=bytes(64))
    cert = make_cert(forged_record, (B, C))
    with pytest.raises(InvalidCustody, match="signature"):
        next_start(custody.latest, forged_record.encode(), cert.encode())
    start = next_start(custody.latest, forged_record.encode(), cert.encode(), verified=True)
    assert start.epoch == 2
    short = make_cert(forged_record, (B,))  # quorum rules still apply to trusted links
    with pytest.raises(InvalidCustody, match="quorum"):
        next_start(custody.latest, forged_record.encode(), short.encode(), verified=True)


@pytest.mark.parametrize("which", ["record", "cert"])
def test_garbage_in_a_link_is_invalid_custody(which: str) -> None:
    custody = Custody()
    record_blob, cert_blob = _link(custody)
    garbage = {"record": (b"\x93junk", cert_blob), "cert": (record_blob, b"\x01")}[which]
    with pytest.raises(InvalidCustody):
        next_start(custody.latest, *garbage)
    # a checkpoint is a lineage entry, but not a custody record
    with pytest.raises(InvalidCustody, match="not a custody record"):
        next_start(custody.latest, custody.genesis.encode(), cert_blob)
    assert issubclass(InvalidCustody, InvalidInput)


def test_follow_verifies_pairs_of_links_in_order() -> None:
    custody = Custody()
    custody.hand(E)
    custody.resume()
    custody.hand(F, witnesses=(D, E, G))
    _, blobs = custody.wire(after=1)
    starts = follow(custody.at(1), blobs)
    assert starts == custody.starts[1:]
    assert follow(custody.at(1), ()) == []
    with pytest.raises(InvalidCustody, match="pairs"):
        follow(custody.at(1), blobs[:-1])
    with pytest.raises(InvalidCustody):
        follow(custody.at(1), blobs[:2] + blobs[4:])  # a missing epoch


def test_chain_from_genesis_returns_every_epoch_start() -> None:
    custody = Custody()
    custody.hand(E)
    _, blobs = custody.wire(after=0)
    assert chain_from_genesis(blobs[0], blobs[1:]) == custody.starts
    with pytest.raises(InvalidCustody):
        chain_from_genesis(blobs[1], blobs[2:])  # a record is no genesis
    with pytest.raises(InvalidCustody):
        chain_from_genesis(b"\x00", ())


def test_chain_after_is_the_wire_form_of_the_epochs_after_a_given_one() -> None:
    custody = Custody()
    custody.hand(E)
    custody.hand(F)
    assert chain_after(custody.starts, 0) == (0, (custody.genesis.encode(), *_links(custody, 2)))
    assert chain_after(custody.starts, 1) == (1, _links(custody, 2))
    assert chain_after(custody.starts, 2) == (2, custody.at(3).links())
    assert chain_after(custody.starts, 3) == (3, ())


def _links(custody: Custody, first: int) -> tuple[bytes, ...]:
    return tuple(b for s in custody.starts[first - 1 :] for b in s.links())


# --- read_chain: what a reader learns from a wire chain, given what it proved already --------


def _grown(epochs: int) -> Custody:
    custody = Custody()
    for i in range(epochs - 1):
        custody.hand((E, F, G)[i % 3])
    return custody


def test_read_chain_from_the_genesis_returns_what_is_new_to_the_reader() -> None:
    custody = _grown(4)
    after, blobs = custody.wire(0)
    assert read_chain(after, blobs, None) == custody.starts
    assert read_chain(after, blobs, custody.at(2)) == custody.starts[2:]
    assert read_chain(after, blobs, custody.at(4)) == []
    assert read_chain(after, (), custody.at(1)) == []


def test_read_chain_continuing_from_a_known_epoch_skips_what_the_reader_holds() -> None:
    custody = _grown(5)
    after, blobs = custody.wire(1)
    assert read_chain(after, blobs, custody.at(3)) == custody.starts[3:]
    assert read_chain(after, blobs, custody.at(1)) == custody.starts[1:]
    after, blobs = custody.wire(3)
    assert read_chain(after, blobs, custody.at(3)) == custody.starts[3:]


def test_read_chain_of_a_shorter_history_than_known_proves_nothing_new() -> None:
    custody = _grown(4)
    short = Custody()
    short.starts = custody.starts[:2]
    after, blobs = short.wire(0)
    assert read_chain(after, blobs, custody.at(4)) == []
    after, blobs = short.wire(1)
    with pytest.raises(InvalidCustody, match="ends before"):
        read_chain(after, blobs, custody.at(4))


def test_read_chain_refuses_a_chain_continuing_from_an_epoch_the_reader_cannot_prove() -> None:
    custody = _grown(4)
    after, blobs = custody.wire(2)
    with pytest.raises(InvalidCustody, match="not known"):
        read_chain(after, blobs, None)
    with pytest.raises(InvalidCustody, match="not known"):
        read_chain(after, blobs, custody.at(1))


def _fork() -> tuple[Custody, Custody]:
    """Two custodies sharing a genesis whose epoch 2 differs (two records certified for one
    slot: what a Byzantine witness or a core bug could produce)."""
    ours = Custody()
    theirs = ours.copy()
    ours.hand(E)
    ours.hand(F)
    theirs.hand(G)
    theirs.hand(F)
    theirs.hand(E)
    return ours, theirs


def test_read_chain_refuses_a_chain_that_disagrees_with_known_custody() -> None:
    ours, theirs = _fork()
    after, blobs = theirs.wire(0)
    with pytest.raises(InvalidCustody, match="disagrees"):
        read_chain(after, blobs, ours.at(2))
    after, blobs = theirs.wire(1)
    with pytest.raises(InvalidCustody, match="disagrees"):
        read_chain(after, blobs, ours.at(3))


def test_a_fork_after_the_known_epoch_is_indistinguishable_from_news() -> None:
    ours, theirs = _fork()
    after, blobs = theirs.wire(1)
    assert read_chain(after, blobs, ours.at(1)) == theirs.starts[1:]


def test_read_chain_refuses_another_agents_genesis_when_it_knows_the_agent() -> None:
    ours = _grown(2)
    stranger = Custody(agent_key=OTHER_AGENT_KEY)
    stranger.hand(E)
    after, blobs = stranger.wire(0)
    with pytest.raises(InvalidCustody):
        read_chain(after, blobs, ours.at(2))


def test_a_genesis_that_differs_from_the_known_one_is_a_disagreement() -> None:
    ours = Custody(state=b"one")
    other = Custody(state=b"two")
    after, blobs = other.wire(0)
    with pytest.raises(InvalidCustody, match="disagrees"):
        read_chain(after, blobs, ours.at(1))


def test_a_forced_link_inside_a_chain_is_marked_forced() -> None:
    custody = Custody()
    custody.hand(E)
    custody.add(make_forced(custody.latest, F))
    after, blobs = custody.wire(0)
    assert [s.forced for s in read_chain(after, blobs, None)] == [False, False, True]


def test_epoch_start_is_a_value() -> None:
    custody = _grown(2)
    twin = EpochStart(
        **{f.name: getattr(custody.at(2), f.name) for f in dataclasses.fields(EpochStart)}
    )
    assert twin == custody.at(2) and hash(twin) == hash(custody.at(2))
