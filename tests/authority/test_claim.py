"""The claim: the proposer of single-decree Paxos for one epoch slot (igor_p2p.authority.claim).

Replies are written by hand here (the witness side has its own tests; tests/authority/
test_quorum.py runs claims against real witnesses). Custody: genesis owned by A with witnesses
{B, C, D}; A proposes slot 2 unless said otherwise.
"""

from __future__ import annotations

import pytest

from igor_p2p.authority.claim import (
    Chosen,
    Claim,
    ClaimPhase,
    Failed,
    SendTo,
    Stale,
)
from igor_p2p.authority.custody import next_start
from igor_p2p.lineage.cert import Ballot, WitnessCert, sign_vote
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Accept,
    Accepted,
    Nack,
    NackCode,
    Prepare,
    Promise,
    Refused,
    RefusedCode,
)

from .chain import (
    AGENT,
    A,
    B,
    C,
    Custody,
    D,
    E,
    F,
    G,
    ballot,
    make_checkpoint,
    make_transfer,
    pks,
)


def _claim(
    custody: Custody, proposer: Keypair = A, value: bytes | None = None, round_: int = 1
) -> Claim:
    return Claim(
        agent=custody.agent,
        slot=custody.latest.epoch + 1,
        previous=custody.latest,
        custody=list(custody.starts),
        ballot=ballot(proposer, round_),
        value=value,
    )


def _promise(
    claim: Claim, witness: Keypair, accepted: tuple[Ballot, bytes] | None = None
) -> Promise:
    return Promise(
        sender=witness.public_key,
        agent=claim.agent,
        slot=claim.slot,
        ballot=claim.ballot,
        accepted_ballot=accepted[0] if accepted else None,
        accepted_record=accepted[1] if accepted else None,
    )


def _accepted(claim: Claim, witness: Keypair, value: bytes | None = None) -> Accepted:
    from igor_p2p.authority.custody import decode_record

    digest = decode_record(value or claim.value).digest()  # type: ignore[arg-type]
    vote = sign_vote(witness, claim.agent, claim.slot, claim.ballot, digest)
    return Accepted(
        sender=witness.public_key,
        agent=claim.agent,
        slot=claim.slot,
        ballot=claim.ballot,
        record_digest=digest,
        signature=vote.signature,
    )


def _nack(claim: Claim, witness: Keypair, code: NackCode, **fields: object) -> Nack:
    values: dict[str, object] = {
        "sender": witness.public_key,
        "agent": claim.agent,
        "slot": claim.slot,
        "code": code,
        "chosen": claim.previous.epoch,
        "promised": None,
        "chain_after": 0,
        "chain": (),
    }
    values.update(fields)
    return Nack(**values)  # type: ignore[arg-type]


def _targets(sends: list[SendTo]) -> list[bytes]:
    return [s.node for s in sends]


def _messages(sends: list[SendTo]) -> list[Message]:
    return [s.message for s in sends]


def _promised(claim: Claim, *witnesses: Keypair) -> list[SendTo]:
    out: list[SendTo] = []
    for w in witnesses:
        out = claim.on_reply(w.public_key, _promise(claim, w))
    return out


# --- phase 1 -----------------------------------------------------------------------------------


def test_a_claim_prepares_at_every_member_of_the_previous_witness_set() -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody)
    sends = claim.start()
    assert _targets(sends) == list(pks(B, C, D))
    for message in _messages(sends):
        assert isinstance(message, Prepare)
        assert (message.slot, message.ballot, message.sender) == (2, ballot(A), A.public_key)
        assert message.chain == ()  # custody goes only to witnesses that say they lack it
    assert claim.phase is ClaimPhase.PREPARING and claim.outcome is None


def test_a_claim_is_only_for_the_slot_after_the_known_epoch() -> None:
    custody = Custody()
    with pytest.raises(ValueError):
        Claim(custody.agent, 3, custody.latest, list(custody.starts), ballot(A))


def test_a_quorum_of_promises_without_accepted_values_waits_for_our_own() -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody)
    claim.start()
    assert _promised(claim, B) == [] and claim.phase is ClaimPhase.PREPARING
    assert _promised(claim, C) == []
    assert claim.phase is ClaimPhase.WAITING_VALUE
    assert claim.missing() == "the record to propose"
    record = make_transfer(custody.latest, E).encode()
    sends = claim.provide_value(record)
    assert claim.phase is ClaimPhase.ACCEPTING and claim.accept_sent
    assert _targets(sends) == list(pks(B, C, D))
    for message in _messages(sends):
        assert isinstance(message, Accept) and message.record == record
    assert claim.provide_value(record) == []  # only once, and only when waiting


def test_a_claim_with_its_own_value_goes_straight_to_accept() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, E).encode()
    claim = _claim(custody, value=record)
    claim.start()
    sends = _promised(claim, B, C)
    assert claim.phase is ClaimPhase.ACCEPTING and len(sends) == 3
    assert not claim.adopted


def test_the_proposers_own_promise_does_not_count_among_three_witnesses() -> None:
    custody = Custody(A, (A, B, C))  # A owns the agent and witnesses it
    claim = _claim(custody, value=make_transfer(custody.latest, E).encode())
    claim.start()
    assert _promised(claim, A, B) == []
    assert claim.phase is ClaimPhase.PREPARING
    assert claim.missing() == "1 of 2 witness promises"
    assert _promised(claim, C) != []
    assert claim.phase is ClaimPhase.ACCEPTING


def test_the_proposers_own_promise_counts_among_two_witnesses() -> None:
    custody = Custody(A, (A, B))
    claim = _claim(custody, value=make_transfer(custody.latest, A).encode())
    claim.start()
    assert _promised(claim, A, B) != []
    assert claim.phase is ClaimPhase.ACCEPTING


def test_promises_for_another_ballot_slot_agent_or_from_a_stranger_are_ignored() -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody)
    claim.start()
    good = _promise(claim, B)
    for reply in [
        Promise(**{**good.__dict__, "ballot": ballot(A, 2)}),
        Promise(**{**good.__dict__, "slot": 3}),
        Promise(**{**good.__dict__, "agent": "did:key:other"}),
    ]:
        claim.on_reply(B.public_key, reply)
        claim.on_reply(C.public_key, reply)
    claim.on_reply(E.public_key, _promise(claim, E))
    claim.on_reply(F.public_key, _promise(claim, F))
    assert claim.phase is ClaimPhase.PREPARING and claim.promises == {}


def test_the_highest_ballot_accepted_value_is_adopted_instead_of_our_own() -> None:
    custody = Custody(A, (B, C, D))
    older = make_transfer(custody.latest, F).encode()
    newer = make_transfer(custody.latest, G).encode()
    own = make_transfer(custody.latest, A).encode()
    claim = _claim(custody, proposer=E, value=own, round_=5)
    claim.start()
    claim.on_reply(B.public_key, _promise(claim, B, (ballot(F, 1), older)))
    sends = claim.on_reply(C.public_key, _promise(claim, C, (ballot(G, 3), newer)))
    assert claim.value == newer and claim.adopted
    assert all(isinstance(m, Accept) and m.record == newer for m in _messages(sends))


def test_finding_our_own_value_accepted_is_not_an_adoption() -> None:
    custody = Custody(A, (B, C, D))
    own = make_transfer(custody.latest, E).encode()
    claim = _claim(custody, value=own, round_=2)
    claim.start()
    claim.on_reply(B.public_key, _promise(claim, B, (ballot(A, 1), own)))
    claim.on_reply(C.public_key, _promise(claim, C))
    assert claim.value == own and not claim.adopted


def test_a_claim_that_only_settles_adopts_and_never_needs_a_value() -> None:
    custody = Custody(A, (B, C, D))
    proposed = make_transfer(custody.latest, E).encode()
    claim = _claim(custody, proposer=E)  # the target: it can only complete the source's record
    claim.start()
    claim.on_reply(B.public_key, _promise(claim, B, (ballot(A, 1), proposed)))
    claim.on_reply(C.public_key, _promise(claim, C))
    assert claim.phase is ClaimPhase.ACCEPTING and claim.value == proposed and claim.adopted


# --- phase 2 -----------------------------------------------------------------------------------


def _accepting(custody: Custody, value: bytes, proposer: Keypair = A) -> Claim:
    claim = _claim(custody, proposer=proposer, value=value)
    claim.start()
    members = [m for m in custody.latest.witnesses if m != proposer.public_key]
    for m in members[: len(members) // 2 + 1] if len(members) > 1 else members:
        claim.on_reply(m, _promise(claim, _key(m)))
    assert claim.phase is ClaimPhase.ACCEPTING
    return claim


def _key(public: bytes) -> Keypair:
    from .chain import KEY_OF

    return KEY_OF[public]


def test_a_quorum_of_signed_acceptances_chooses_the_value_with_a_certificate_that_verifies() -> (
    None
):
    custody = Custody(A, (B, C, D))
    handoff = make_checkpoint(custody.latest, custody.genesis.digest())
    record = make_transfer(custody.latest, E, prev=handoff.digest())
    claim = _accepting(custody, record.encode())
    assert claim.on_reply(B.public_key, _accepted(claim, B)) == []
    assert claim.outcome is None
    claim.on_reply(C.public_key, _accepted(claim, C))
    outcome = claim.outcome
    assert isinstance(outcome, Chosen) and not outcome.adopted
    assert claim.phase is ClaimPhase.DONE
    start = outcome.start
    assert (start.epoch, start.owner, start.record) == (2, E.public_key, record.encode())
    cert = WitnessCert.decode(start.cert)
    assert set(cert.voters) == {B.public_key, C.public_key}
    assert next_start(custody.latest, start.record, start.cert) == start  # checks signatures
    lineage = [custody.genesis, handoff, record, cert]
    assert verify_lineage([e.encode() for e in lineage]).valid
    assert claim.on_reply(D.public_key, _accepted(claim, D)) == []  # done is done


def test_acceptances_that_do_not_verify_or_do_not_match_are_ignored() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, E).encode()
    other = make_transfer(custody.latest, F).encode()
    claim = _accepting(custody, record)
    good = _accepted(claim, B)
    forged = Accepted(**{**good.__dict__, "signature": bytes(64)})
    wrong_digest = _accepted(claim, C, other)
    wrong_ballot = Accepted(**{**good.__dict__, "ballot": ballot(A, 9)})
    claim.on_reply(B.public_key, forged)
    claim.on_reply(C.public_key, wrong_digest)
    claim.on_reply(C.public_key, wrong_ballot)
    claim.on_reply(G.public_key, _accepted(claim, G))  # not a witness of either set
    claim.on_reply(C.public_key, good)  # B's vote, but delivered as C's reply
    assert claim.outcome is None and claim.votes == {}


def test_a_changed_witness_set_is_chosen_only_with_a_quorum_of_both_sets() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, G, witnesses=(D, E, F)).encode()
    claim = _accepting(custody, record)
    assert claim.accept_targets == pks(B, C, D, E, F)
    for w in (B, C):
        claim.on_reply(w.public_key, _accepted(claim, w))
    assert claim.outcome is None
    assert claim.missing() == "0 of 2 votes needed from the new witness set"
    claim.on_reply(E.public_key, _accepted(claim, E))
    assert claim.outcome is None
    claim.on_reply(F.public_key, _accepted(claim, F))
    assert isinstance(claim.outcome, Chosen)
    assert claim.outcome.start.witnesses == pks(D, E, F)


def test_no_witnesses_at_all_means_nothing_to_ask_and_the_value_is_chosen() -> None:
    custody = Custody(A, ())
    record = make_transfer(custody.latest, A, witnesses=()).encode()
    claim = _claim(custody, value=record)
    assert claim.start() == []
    assert isinstance(claim.outcome, Chosen)
    assert claim.outcome.start.epoch == 2


def test_a_witness_set_that_can_never_form_a_quorum_fails_at_once() -> None:
    custody = Custody(A, (A,))  # the proposer is the only witness and its vote cannot count
    claim = _claim(custody, value=make_transfer(custody.latest, A).encode())
    assert claim.start() == []
    assert isinstance(claim.outcome, Failed)


# --- refusals ----------------------------------------------------------------------------------


def test_a_verified_higher_answer_ends_the_claim_as_stale() -> None:
    custody = Custody(A, (B, C, D))
    later = custody.copy()
    later.hand(E)
    later.hand(F)
    claim = _claim(custody)
    claim.start()
    after, chain = later.wire(1)
    claim.on_reply(B.public_key, _nack(claim, B, NackCode.HIGHER, chain_after=after, chain=chain))
    outcome = claim.outcome
    assert isinstance(outcome, Stale)
    assert outcome.starts == tuple(later.starts[1:]) and outcome.latest == later.at(3)


@pytest.mark.parametrize("proof", ["none", "forged", "other agent", "not beyond"])
def test_an_unproven_higher_answer_counts_only_as_a_refusal(proof: str) -> None:
    custody = Custody(A, (B, C, D))
    later = custody.copy()
    later.hand(E)
    after, chain = later.wire(1)
    if proof == "none":
        after, chain = 1, ()
    elif proof == "forged":
        chain = (chain[0], chain[0])
    elif proof == "other agent":
        from .chain import OTHER_AGENT_KEY

        stranger = Custody(A, (B, C, D), agent_key=OTHER_AGENT_KEY)
        stranger.hand(E)
        after, chain = stranger.wire(0)
    else:
        after, chain = later.wire(0)
        chain = chain[:1]  # the genesis only: proves nothing beyond what we know
    claim = _claim(custody)
    claim.start()
    claim.on_reply(B.public_key, _nack(claim, B, NackCode.HIGHER, chain_after=after, chain=chain))
    assert claim.outcome is None and claim.refused == {B.public_key}
    claim.on_reply(C.public_key, _nack(claim, C, NackCode.HIGHER, chain_after=after, chain=chain))
    assert isinstance(claim.outcome, Failed)


def test_a_witness_that_is_behind_gets_the_request_again_with_the_custody_it_lacks() -> None:
    custody = Custody(A, (B, C, D))
    custody.hand(E)
    custody.hand(F)  # slot 4, proposer F
    claim = _claim(custody, proposer=F)
    claim.start()
    sends = claim.on_reply(B.public_key, _nack(claim, B, NackCode.BEHIND, chosen=1))
    [resend] = sends
    assert resend.node == B.public_key and isinstance(resend.message, Prepare)
    assert (resend.message.chain_after, resend.message.chain) == custody.wire(1)
    again = claim.on_reply(B.public_key, _nack(claim, B, NackCode.BEHIND, chosen=1))
    assert again == [] and B.public_key in claim.refused  # caught up once: then a refusal
    fresh = claim.on_reply(C.public_key, _nack(claim, C, NackCode.BEHIND, chosen=0))
    assert (fresh[0].message.chain_after, fresh[0].message.chain) == custody.wire(0)  # type: ignore[attr-defined]


def test_a_witness_behind_during_accept_gets_the_accept_again_with_custody() -> None:
    custody = Custody(A, (B, C, D))
    custody.hand(E)
    record = make_transfer(custody.latest, F).encode()
    claim = _accepting(custody, record, proposer=E)
    [resend] = claim.on_reply(D.public_key, _nack(claim, D, NackCode.BEHIND, chosen=1))
    assert isinstance(resend.message, Accept) and resend.message.record == record
    assert (resend.message.chain_after, resend.message.chain) == custody.wire(1)


def test_promised_refusals_fail_the_ballot_once_a_quorum_is_out_of_reach() -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody)
    claim.start()
    claim.on_reply(B.public_key, _nack(claim, B, NackCode.PROMISED, promised=ballot(E, 7)))
    assert claim.outcome is None
    claim.on_reply(C.public_key, _nack(claim, C, NackCode.PROMISED, promised=ballot(F, 4)))
    outcome = claim.outcome
    assert isinstance(outcome, Failed) and outcome.highest_round == 7
    assert claim.on_reply(D.public_key, _promise(claim, D)) == []


def test_unreachable_witnesses_count_as_refusals() -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody)
    claim.start()
    assert claim.on_unreachable(B.public_key) == []
    claim.on_reply(C.public_key, _promise(claim, C))
    assert claim.outcome is None
    claim.on_unreachable(D.public_key)
    assert isinstance(claim.outcome, Failed)
    assert claim.on_unreachable(C.public_key) == []


def test_a_witness_at_its_quota_counts_as_a_refusal_and_is_named() -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody)
    claim.start()
    full = Refused(B.public_key, RefusedCode.BUSY, "this node witnesses as many agents as …")
    claim.on_reply(B.public_key, full)
    claim.on_reply(C.public_key, Refused(C.public_key, RefusedCode.BUSY, "full"))
    assert isinstance(claim.outcome, Failed)
    assert "witness is full" in claim.outcome.reason
    assert claim.full == {B.public_key, C.public_key}  # the next witness sets avoid them
    other = _claim(custody)
    other.start()
    other.on_reply(B.public_key, Refused(B.public_key, RefusedCode.RATE_LIMITED, "slow down"))
    other.on_reply(C.public_key, Refused(C.public_key, RefusedCode.RATE_LIMITED, "slow down"))
    assert other.outcome is None  # a rate limit is not a refusal: asked again in the round


def test_refusals_during_accept_fail_only_when_no_joint_quorum_is_left() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, G, witnesses=(D, E, F)).encode()
    claim = _accepting(custody, record)
    claim.on_unreachable(E.public_key)
    assert claim.outcome is None  # D and F can still make the new quorum
    claim.on_reply(F.public_key, _nack(claim, F, NackCode.INVALID))
    assert isinstance(claim.outcome, Failed)


@pytest.mark.parametrize("code", [NackCode.NOT_WITNESS, NackCode.INVALID, NackCode.WRONG_SENDER])
def test_other_refusals_count_against_the_quorum(code: NackCode) -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody)
    claim.start()
    claim.on_reply(B.public_key, _nack(claim, B, code))
    claim.on_reply(C.public_key, _nack(claim, C, code))
    assert isinstance(claim.outcome, Failed)


def test_nacks_for_another_slot_or_agent_are_ignored() -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody)
    claim.start()
    for w in (B, C, D):
        claim.on_reply(w.public_key, _nack(claim, w, NackCode.PROMISED, slot=3))
        claim.on_reply(w.public_key, _nack(claim, w, NackCode.PROMISED, agent="did:key:other"))
    assert claim.outcome is None and claim.refused == set()


def test_a_vote_already_counted_is_not_lost_to_a_later_refusal_from_the_same_witness() -> None:
    custody = Custody(A, (B, C, D))
    claim = _accepting(custody, make_transfer(custody.latest, E).encode())
    claim.on_reply(B.public_key, _accepted(claim, B))
    claim.on_unreachable(C.public_key)
    claim.on_reply(B.public_key, _nack(claim, B, NackCode.PROMISED, promised=ballot(G, 9)))
    # B's vote is signed and held; D alone can still complete the certificate.
    assert claim.outcome is None
    claim.on_reply(D.public_key, _accepted(claim, D))
    assert isinstance(claim.outcome, Chosen)


def test_missing_says_what_the_ballot_waits_for() -> None:
    custody = Custody(A, (B, C, D))
    claim = _claim(custody, value=make_transfer(custody.latest, E).encode())
    claim.start()
    assert claim.missing() == "0 of 2 witness promises"
    _promised(claim, B, C)
    assert claim.missing() == "0 of 2 votes needed from the previous witness set"
    claim.on_reply(B.public_key, _accepted(claim, B))
    claim.on_reply(C.public_key, _accepted(claim, C))
    assert claim.missing() == ""


def test_the_certificate_names_the_ballot_and_proposer_of_the_claim() -> None:
    custody = Custody(A, (B, C, D))
    claim = _accepting(custody, make_transfer(custody.latest, E).encode())
    claim.on_reply(B.public_key, _accepted(claim, B))
    claim.on_reply(D.public_key, _accepted(claim, D))
    assert isinstance(claim.outcome, Chosen)
    cert = WitnessCert.decode(claim.outcome.start.cert)
    assert cert.ballot == claim.ballot and cert.ballot.proposer == A.public_key
    assert cert.slot == 2 and cert.agent == AGENT
