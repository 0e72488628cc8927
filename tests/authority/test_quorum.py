"""Claims against real witnesses, wired by direct calls (no trio): every SendTo goes to the
addressed WitnessCore, which makes its record durable before it replies, and the reply goes back
to the claim (tests/authority/network.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from igor_p2p.authority.claim import Chosen, Claim, ClaimPhase, Failed, SendTo, Stale
from igor_p2p.authority.custody import EpochStart, decode_record, next_start, read_chain
from igor_p2p.lineage.cert import Ballot, WitnessCert, cert_shortfall
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.wire.messages import Accept, Accepted, Prepare

from .chain import (
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
from .network import Network, WitnessNode, run_claim


def _network(custody: Custody, *keys: Keypair, knowing: int = 1) -> Network:
    """Witness nodes for ``keys``, each knowing the custody up to epoch ``knowing``."""
    return Network(WitnessNode(k).knows(custody.starts[:knowing]) for k in keys)


def _claim(
    custody: Custody, proposer: Keypair, value: bytes | None = None, round_: int = 1
) -> Claim:
    return Claim(
        agent=custody.agent,
        slot=custody.latest.epoch + 1,
        previous=custody.latest,
        custody=list(custody.starts),
        ballot=ballot(proposer, round_, nonce=proposer.public_key[:8]),
        value=value,
    )


def _verifies(custody: Custody, chosen: EpochStart) -> None:
    """The chosen record and certificate verify on their own, and as a lineage."""
    assert next_start(custody.latest, chosen.record, chosen.cert) == chosen
    record = decode_record(chosen.record)
    cert = WitnessCert.decode(chosen.cert)
    assert cert.shortfall(custody.latest.witnesses, record.witnesses) is None


def _is(kind: type, send: SendTo, node: Keypair) -> bool:
    return isinstance(send.message, kind) and send.node == node.public_key


def test_a_normal_claim_is_chosen_with_a_certificate_that_verifies() -> None:
    custody = Custody(A, (B, C, D))
    net = _network(custody, B, C, D)
    handoff = make_checkpoint(custody.latest, custody.genesis.digest())
    record = make_transfer(custody.latest, E, prev=handoff.digest())
    outcome = run_claim(_claim(custody, A, record.encode()), net)
    assert isinstance(outcome, Chosen) and not outcome.adopted
    _verifies(custody, outcome.start)
    lineage = [custody.genesis.encode(), handoff.encode(), *outcome.start.links()]
    report = verify_lineage(lineage)
    assert report.valid and report.custodian == E.public_key and report.last_epoch == 2
    # Every witness that voted made its acceptance durable before answering.
    voters = set(WitnessCert.decode(outcome.start.cert).voters)
    for node in net.nodes.values():
        if node.me in voters:
            assert node.records[custody.agent].accepted_record == record.encode()


def test_learning_the_choice_makes_later_claims_meet_it() -> None:
    custody = Custody(A, (B, C, D))
    net = _network(custody, B, C, D)
    outcome = run_claim(_claim(custody, A, make_transfer(custody.latest, E).encode()), net)
    assert isinstance(outcome, Chosen)
    net.learn([*custody.starts, outcome.start])
    assert {n.chosen(custody.agent) for n in net.nodes.values()} == {2}
    custody.starts.append(outcome.start)
    resume = run_claim(_claim(custody, E, make_transfer(custody.latest, E).encode()), net)
    assert isinstance(resume, Chosen) and resume.start.epoch == 3


def test_a_second_proposer_adopts_a_value_a_quorum_accepted() -> None:
    custody = Custody(A, (B, C, D))
    net = _network(custody, B, C, D)
    first_value = make_transfer(custody.latest, E).encode()
    first = _claim(custody, A, first_value, round_=1)
    # The source's ACCEPT reaches B and C, then the source crashes before counting the votes.
    run_claim(
        first,
        net,
        drop=lambda s: _is(Accept, s, D),
        stop_after=lambda s: _is(Accept, s, C),
    )
    assert first.outcome is None
    # The target, holding no record of its own, settles the slot with a higher ballot.
    second = _claim(custody, E, None, round_=2)
    outcome = run_claim(second, net)
    assert isinstance(outcome, Chosen) and outcome.adopted
    assert outcome.start.record == first_value and outcome.start.owner == E.public_key
    _verifies(custody, outcome.start)


def test_a_competing_proposer_with_its_own_value_still_completes_the_accepted_one() -> None:
    custody = Custody(A, (B, C, D))
    net = _network(custody, B, C, D)
    handed = make_transfer(custody.latest, E).encode()
    run_claim(
        _claim(custody, A, handed, round_=1),
        net,
        drop=lambda s: _is(Accept, s, B),
        stop_after=lambda s: _is(Accept, s, D),
    )
    # A restored copy of the source, which forgot it handed off, proposes a resume for itself.
    resume = make_transfer(custody.latest, A).encode()
    outcome = run_claim(_claim(custody, A, resume, round_=7), net)
    assert isinstance(outcome, Chosen) and outcome.adopted
    assert decode_record(outcome.start.record).to_node == E.public_key  # never the resume


def test_a_value_accepted_by_a_minority_may_lose_but_never_to_two_certificates() -> None:
    custody = Custody(A, (B, C, D))
    net = _network(custody, B, C, D)
    first_value = make_transfer(custody.latest, E).encode()
    first = _claim(custody, A, first_value, round_=1)
    run_claim(first, net, drop=lambda s: isinstance(s.message, Accept) and s.node != D.public_key)
    assert first.outcome is None  # only D accepted
    # The second proposer's phase 1 misses D: it proposes its own value and wins.
    second_value = make_transfer(custody.latest, F).encode()
    net.down(D)
    outcome = run_claim(_claim(custody, G, second_value, round_=2), net)
    assert isinstance(outcome, Chosen) and outcome.start.record == second_value
    # The first proposer, continuing its old ballot, can no longer complete a certificate.
    net.up(D)
    for witness in (B, C):
        late = Accept(A.public_key, custody.agent, 2, first.ballot, first_value, 0, ())
        first.on_reply(witness.public_key, net.deliver(SendTo(witness.public_key, late)))
    assert not isinstance(first.outcome, Chosen)


def test_a_stale_proposer_meets_higher_with_custody_that_verifies() -> None:
    custody = Custody(A, (B, C, D))
    net = _network(custody, B, C, D)
    later = custody.copy()
    later.hand(E)
    later.hand(F)
    for node in net.nodes.values():
        node.knows(later.starts)
    # A, restored from a backup taken at epoch 1, claims epoch 2 as if nothing had happened.
    outcome = run_claim(_claim(custody, A, make_transfer(custody.latest, A).encode()), net)
    assert isinstance(outcome, Stale)
    assert outcome.latest == later.at(3)
    assert list(outcome.starts) == later.starts[1:]
    after, blobs = later.wire(0)
    assert read_chain(after, blobs, custody.latest) == list(outcome.starts)


def test_a_witness_that_is_behind_is_caught_up_by_the_claim() -> None:
    custody = Custody(A, (B, C, D))
    custody.hand(E)
    custody.hand(F)
    net = Network(
        [
            WitnessNode(B).knows(custody.starts),
            WitnessNode(C).knows(custody.starts[:1]),  # missed epochs 2 and 3
            WitnessNode(D),  # never heard of the agent
        ]
    )
    net.down(B)
    outcome = run_claim(_claim(custody, F, make_transfer(custody.latest, F).encode()), net)
    assert isinstance(outcome, Chosen) and outcome.start.epoch == 4
    assert net[C].custody[custody.agent] == custody.starts
    assert net[D].custody[custody.agent] == custody.starts


def test_a_restored_proposers_own_vote_does_not_count() -> None:
    # A owns epoch 1 and is one of its three witnesses. Its first incarnation proposes a
    # handoff to E: B and C promise, A's own witness store and B accept, C's ACCEPT is lost.
    custody = Custody(A, (A, B, C))
    net = _network(custody, A, B, C)
    handoff = make_transfer(custody.latest, E).encode()
    first = _claim(custody, A, handoff)
    assert run_claim(first, net, drop=lambda s: _is(Accept, s, C)) is None
    assert set(first.votes) == {A.public_key, B.public_key}  # A + B: A's own vote is no vote
    assert first.missing() == "1 of 2 votes needed from the previous witness set"
    # A is restored from an old disk: its witness store forgot the handoff; B is now down.
    net[A].forget(custody.agent, custody.starts)
    net.down(B)
    net.up(C)
    resume = make_transfer(custody.latest, A).encode()
    second = _claim(custody, A, resume, round_=5)
    sent_before = len(net.sent)
    outcome = run_claim(second, net)
    assert isinstance(outcome, Failed)  # A + C would be a quorum only if A's vote counted
    assert second.phase is ClaimPhase.DONE
    assert not any(isinstance(s.message, Accept) for s in net.sent[sent_before:])
    # Once B answers, B's accepted handoff is found and completed instead of the resume.
    net.up(B)
    outcome = run_claim(_claim(custody, A, resume, round_=9), net)
    assert isinstance(outcome, Chosen) and outcome.start.record == handoff


def test_with_two_witnesses_the_proposers_own_vote_counts() -> None:
    custody = Custody(A, (A, B))
    net = _network(custody, A, B)
    outcome = run_claim(_claim(custody, A, make_transfer(custody.latest, A).encode()), net)
    assert isinstance(outcome, Chosen)
    assert set(WitnessCert.decode(outcome.start.cert).voters) == {A.public_key, B.public_key}


def test_a_witness_set_change_needs_a_quorum_of_the_old_and_of_the_new_set() -> None:
    custody = Custody(A, (B, C, D))
    record = make_transfer(custody.latest, G, witnesses=(D, E, F)).encode()

    # Only the new set accepts (B and C drop out after promising): no certificate.
    net = _network(custody, B, C, D, E, F)
    only_new = run_claim(
        _claim(custody, A, record),
        net,
        drop=lambda s: isinstance(s.message, Accept) and s.node in pks(B, C),
    )
    assert only_new is None  # waiting: D, E, F accepted, but only D is of the old set

    # Only the old set accepts (the new members are down): the ballot fails.
    net = _network(custody, B, C, D, E, F)
    net.down(E, F)
    only_old = run_claim(_claim(custody, A, record), net)
    assert isinstance(only_old, Failed)

    # Both quorums: B and C of the old set, E and F of the new one (D is down).
    net = _network(custody, B, C, D, E, F)
    net.down(D)
    outcome = run_claim(_claim(custody, A, record), net)
    assert isinstance(outcome, Chosen)
    _verifies(custody, outcome.start)
    assert outcome.start.witnesses == pks(D, E, F)

    # The new members learn the choice; the next claim prepares at the new set only.
    net.up(D)
    net.learn([*custody.starts, outcome.start])
    custody.starts.append(outcome.start)
    nxt = _claim(custody, G, make_transfer(custody.latest, G).encode())
    sends = nxt.start()
    assert {s.node for s in sends} == set(pks(D, E, F))
    assert all(isinstance(s.message, Prepare) for s in sends)
    # The departed members B and C are no longer needed (nor asked).
    net.down(B, C, D)
    assert isinstance(
        run_claim(_claim(custody, G, make_transfer(custody.latest, G).encode()), net), Chosen
    )
    assert net[B].chosen(custody.agent) == 2


# --- chaos: several proposers, messages dropped, duplicated and reordered ------------------


@dataclass
class Proposer:
    key: Keypair
    value: bytes | None
    claim: Claim
    chosen: list[EpochStart] = field(default_factory=list)


def _proposers(custody: Custody) -> list[Proposer]:
    values = {
        A: make_transfer(custody.latest, E).encode(),  # the source hands off to E
        E: None,  # the target settles whatever the source proposed
        F: make_transfer(custody.latest, F, signer=A, from_node=A.public_key).encode(),
    }
    # F proposes a record A signed earlier for F (a second record A signed after a restore).
    return [Proposer(k, v, _claim(custody, k, v)) for k, v in values.items()]


@given(st.data())
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_whatever_the_network_does_at_most_one_record_is_chosen_for_a_slot(
    data: st.DataObject,
) -> None:
    custody = Custody(A, (B, C, D))
    net = _network(custody, B, C, D)
    proposers = _proposers(custody)
    flying: list[tuple[int, Claim, object]] = []  # (proposer, claim, SendTo | (node, reply))
    accepted: dict[tuple[Ballot, bytes], set[bytes]] = {}  # what witnesses signed, by ballot

    def launch(i: int) -> None:
        for send in proposers[i].claim.start():
            flying.append((i, proposers[i].claim, send))

    for i in range(len(proposers)):
        launch(i)
    for _ in range(data.draw(st.integers(20, 120), label="steps")):
        if not flying:
            break
        pick = data.draw(st.integers(0, len(flying) - 1), label="message")
        fate = data.draw(st.sampled_from(["deliver", "deliver", "deliver", "drop", "dup"]))
        i, claim, item = flying[pick]
        if fate != "dup":
            flying.pop(pick)
        if fate == "drop":
            continue
        p = proposers[i]
        if isinstance(item, SendTo):
            reply = net.deliver(item)
            if isinstance(reply, Accepted):
                accepted.setdefault((reply.ballot, reply.record_digest), set()).add(item.node)
            flying.append((i, claim, (item.node, reply)))
            continue
        node, reply = item  # type: ignore[misc]
        for send in claim.on_reply(node, reply):
            flying.append((i, claim, send))
        if claim is not p.claim:
            continue
        if claim.phase is ClaimPhase.WAITING_VALUE and p.value is not None:
            for send in claim.provide_value(p.value):
                flying.append((i, claim, send))
        if isinstance(claim.outcome, Chosen):
            p.chosen.append(claim.outcome.start)
        if claim.outcome is not None:  # a new ballot, outbidding what this one heard of
            p.claim = _claim(custody, p.key, p.value, round_=claim.highest_round + 1)
            launch(i)
    chosen = [s for p in proposers for s in p.chosen]
    event(f"proposers that saw a choice: {sum(bool(p.chosen) for p in proposers)}")
    assert len({s.record for s in chosen}) <= 1
    for s in chosen:
        _verifies(custody, s)
    # Chosen or not by anyone's knowledge: the values a quorum of witnesses accepted at one
    # ballot (under the certificate rule). Paxos safety: there is at most one.
    witnesses = custody.latest.witnesses
    decided = {
        digest
        for (b, digest), voters in accepted.items()
        if cert_shortfall(voters, b.proposer, witnesses, witnesses) is None
    }
    event(f"values decided: {len(decided)}")
    assert len(decided) <= 1
    assert {decode_record(s.record).digest() for s in chosen} <= decided
