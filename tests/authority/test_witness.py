"""The witness: the acceptor of single-decree Paxos per epoch slot (igor_p2p.authority.witness).

Custody in these tests: the genesis names owner A and witnesses {B, C, D}; B is the witness under
test unless said otherwise.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.authority.custody import EpochStart, chain_after, read_chain
from igor_p2p.authority.witness import WitnessCore, WitnessRecord, WitnessView
from igor_p2p.lineage.cert import Ballot, vote_bytes
from igor_p2p.lineage.identity import verify_signature
from igor_p2p.wire.messages import (
    Accept,
    Accepted,
    Done,
    Learn,
    Nack,
    NackCode,
    Prepare,
    Promise,
    Status,
)

from .chain import (
    AGENT,
    OTHER_AGENT_KEY,
    A,
    B,
    C,
    Custody,
    D,
    E,
    F,
    G,
    ballot,
    make_cert,
    make_transfer,
)

WITNESS = WitnessCore(B)


def _custody() -> Custody:
    return Custody(A, (B, C, D))


def _known(custody: Custody, epoch: int = 1) -> WitnessRecord:
    return WitnessRecord(agent=custody.agent, chosen=custody.at(epoch))


def _prepare(b: Ballot, slot: int = 2, *, sender: bytes | None = None, **kw: object) -> Prepare:
    after, chain = kw.pop("wire", (0, ()))  # type: ignore[misc]
    return Prepare(
        sender=b.proposer if sender is None else sender,
        agent=kw.pop("agent", AGENT),  # type: ignore[arg-type]
        slot=slot,
        ballot=b,
        chain_after=after,
        chain=chain,
    )


def _accept(b: Ballot, record: bytes, slot: int = 2, **kw: object) -> Accept:
    after, chain = kw.pop("wire", (0, ()))  # type: ignore[misc]
    return Accept(
        sender=kw.pop("sender", b.proposer),  # type: ignore[arg-type]
        agent=AGENT,
        slot=slot,
        ballot=b,
        record=record,
        chain_after=after,
        chain=chain,
    )


def _learn(wire: tuple[int, tuple[bytes, ...]]) -> Learn:
    return Learn(sender=A.public_key, agent=AGENT, chain_after=wire[0], chain=wire[1])


# --- PREPARE -----------------------------------------------------------------------------------


def test_a_first_prepare_is_promised_and_the_promise_is_made_durable() -> None:
    custody = _custody()
    step = WITNESS.prepare(_known(custody), _prepare(ballot(A)))
    assert isinstance(step.reply, Promise)
    assert (step.reply.slot, step.reply.ballot) == (2, ballot(A))
    assert step.reply.accepted_ballot is None and step.reply.accepted_record is None
    assert step.record is not None and step.record.promised == ballot(A)
    assert step.learned == () and step.chain_after is None


def test_a_repeated_prepare_gets_the_same_promise_without_a_new_write() -> None:
    custody = _custody()
    first = WITNESS.prepare(_known(custody), _prepare(ballot(A)))
    again = WITNESS.prepare(first.record, _prepare(ballot(A)))
    assert again.reply == first.reply
    assert again.record is None  # nothing new to make durable


def test_a_lower_ballot_than_promised_is_refused_with_the_promise() -> None:
    custody = _custody()
    promised = WITNESS.prepare(_known(custody), _prepare(ballot(E, 5))).record
    step = WITNESS.prepare(promised, _prepare(ballot(A, 4)))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.PROMISED
    assert step.reply.promised == ballot(E, 5)
    assert step.record is None


def test_a_higher_ballot_wins_a_new_promise_carrying_the_accepted_value() -> None:
    custody = _custody()
    record = make_transfer(custody.latest, E).encode()
    state = WITNESS.prepare(_known(custody), _prepare(ballot(A, 1))).record
    state = WITNESS.accept(state, _accept(ballot(A, 1), record)).record
    step = WITNESS.prepare(state, _prepare(ballot(E, 2)))
    assert isinstance(step.reply, Promise)
    assert step.reply.accepted_ballot == ballot(A, 1)
    assert step.reply.accepted_record == record
    assert step.record is not None and step.record.promised == ballot(E, 2)


def test_a_ballot_must_name_its_sender_as_proposer() -> None:
    custody = _custody()
    step = WITNESS.prepare(_known(custody), _prepare(ballot(A), sender=E.public_key))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.WRONG_SENDER
    assert step.record is None
    record = make_transfer(custody.latest, E).encode()
    step = WITNESS.accept(_known(custody), _accept(ballot(A), record, sender=E.public_key))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.WRONG_SENDER


def test_only_a_member_of_the_previous_witness_set_promises() -> None:
    custody = _custody()
    outsider = WitnessCore(E)
    step = outsider.prepare(_known(custody), _prepare(ballot(A)))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.NOT_WITNESS
    assert step.record is None


def test_a_slot_already_chosen_is_answered_higher_with_the_custody_to_attach() -> None:
    custody = _custody()
    custody.hand(E)
    custody.hand(F)
    step = WITNESS.prepare(_known(custody, 3), _prepare(ballot(G), slot=2))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.HIGHER
    assert step.reply.chosen == 3
    assert step.chain_after == 1  # the driver attaches the custody after epoch slot - 1
    assert step.record is None


def test_a_slot_beyond_the_next_is_answered_behind_with_what_the_witness_knows() -> None:
    custody = _custody()
    custody.hand(E)
    custody.hand(F)
    step = WITNESS.prepare(_known(custody, 1), _prepare(ballot(F), slot=4))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.BEHIND
    assert step.reply.chosen == 1 and step.chain_after is None
    unknown = WITNESS.prepare(None, _prepare(ballot(A), slot=2))
    assert isinstance(unknown.reply, Nack) and unknown.reply.code is NackCode.BEHIND
    assert unknown.reply.chosen == 0


def test_a_behind_witness_catches_up_from_the_custody_sent_with_the_request() -> None:
    custody = _custody()
    custody.hand(E)
    custody.hand(F)
    step = WITNESS.prepare(_known(custody, 1), _prepare(ballot(F), slot=4, wire=custody.wire(1)))
    assert isinstance(step.reply, Promise)
    assert step.learned == tuple(custody.starts[1:])
    assert step.record is not None and step.record.chosen == custody.at(3)
    fresh = WITNESS.prepare(None, _prepare(ballot(F), slot=4, wire=custody.wire(0)))
    assert isinstance(fresh.reply, Promise)
    assert fresh.learned == tuple(custody.starts)


def test_custody_for_another_agent_sent_with_a_request_teaches_nothing() -> None:
    stranger = Custody(A, (B, C, D), agent_key=OTHER_AGENT_KEY)
    stranger.hand(E)
    step = WITNESS.prepare(None, _prepare(ballot(E), slot=3, wire=stranger.wire(0)))
    assert step.learned == () and step.record is None
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.BEHIND


# --- ACCEPT ------------------------------------------------------------------------------------


def test_an_accept_at_the_promised_ballot_is_accepted_and_signed() -> None:
    custody = _custody()
    record = make_transfer(custody.latest, E)
    state = WITNESS.prepare(_known(custody), _prepare(ballot(A))).record
    step = WITNESS.accept(state, _accept(ballot(A), record.encode()))
    reply = step.reply
    assert isinstance(reply, Accepted)
    assert (reply.slot, reply.ballot, reply.record_digest) == (2, ballot(A), record.digest())
    verify_signature(
        B.public_key, vote_bytes(AGENT, 2, ballot(A), record.digest()), reply.signature
    )
    assert step.record is not None
    assert (step.record.accepted_ballot, step.record.accepted_record) == (
        ballot(A),
        record.encode(),
    )


def test_an_accept_without_a_prior_promise_is_accepted() -> None:
    custody = _custody()
    record = make_transfer(custody.latest, E).encode()
    step = WITNESS.accept(_known(custody), _accept(ballot(A, 3), record))
    assert isinstance(step.reply, Accepted)
    assert step.record is not None and step.record.promised == ballot(A, 3)


def test_an_accept_below_the_promise_is_refused() -> None:
    custody = _custody()
    state = WITNESS.prepare(_known(custody), _prepare(ballot(E, 2))).record
    record = make_transfer(custody.latest, F).encode()
    step = WITNESS.accept(state, _accept(ballot(A, 1), record))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.PROMISED
    assert step.reply.promised == ballot(E, 2) and step.record is None


def test_one_ballot_carries_one_value() -> None:
    custody = _custody()
    first = make_transfer(custody.latest, E).encode()
    second = make_transfer(custody.latest, F).encode()
    state = WITNESS.accept(_known(custody), _accept(ballot(A), first)).record
    step = WITNESS.accept(state, _accept(ballot(A), second))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.INVALID
    assert step.record is None


def test_a_repeated_accept_gets_the_same_signed_vote() -> None:
    custody = _custody()
    record = make_transfer(custody.latest, E).encode()
    first = WITNESS.accept(_known(custody), _accept(ballot(A), record))
    again = WITNESS.accept(first.record, _accept(ballot(A), record))
    assert again.reply == first.reply and again.record is None


def test_a_higher_ballot_may_carry_another_value() -> None:
    custody = _custody()
    first = make_transfer(custody.latest, E).encode()
    second = make_transfer(custody.latest, F).encode()
    state = WITNESS.accept(_known(custody), _accept(ballot(A, 1), first)).record
    step = WITNESS.accept(state, _accept(ballot(G, 2), second))
    assert isinstance(step.reply, Accepted)
    assert step.record is not None and step.record.accepted_record == second


def test_a_record_that_cannot_start_the_slot_is_invalid() -> None:
    custody = _custody()
    latest = custody.latest
    bad = [
        b"\x93not a record",
        custody.genesis.encode(),
        make_transfer(latest, E, signer=E).encode(),  # not signed by the owner it names
        make_transfer(latest, E, from_node=E.public_key, signer=E).encode(),  # not the owner
        make_transfer(latest, E, from_epoch=2, to_epoch=3).encode(),
        make_transfer(latest, E, agent=OTHER_AGENT_KEY.did).encode(),
    ]
    for record in bad:
        step = WITNESS.accept(_known(custody), _accept(ballot(A), record))
        assert isinstance(step.reply, Nack) and step.reply.code is NackCode.INVALID, record[:20]
        assert step.record is None


def test_a_member_of_only_the_new_witness_set_accepts() -> None:
    custody = _custody()
    record = make_transfer(custody.latest, G, witnesses=(D, E, F)).encode()
    newcomer = WitnessCore(E)
    step = newcomer.accept(_known(custody), _accept(ballot(A), record))
    assert isinstance(step.reply, Accepted)
    outsider = WitnessCore(G)
    step = outsider.accept(_known(custody), _accept(ballot(A), record))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.NOT_WITNESS


def test_an_accept_for_a_chosen_slot_is_answered_higher() -> None:
    custody = _custody()
    record = make_transfer(custody.latest, F).encode()
    custody.hand(E)
    step = WITNESS.accept(_known(custody, 2), _accept(ballot(A), record))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.HIGHER
    assert step.chain_after == 1


# --- LEARN -------------------------------------------------------------------------------------


def test_learning_a_certified_epoch_moves_chosen_forward_and_clears_the_slot() -> None:
    custody = _custody()
    record = make_transfer(custody.latest, E).encode()
    state = WITNESS.accept(_known(custody), _accept(ballot(A), record)).record
    custody.hand(E)
    step = WITNESS.learn(state, _learn(custody.wire(1)))
    assert step.reply == Done(sender=B.public_key, agent=AGENT)
    assert step.record == WitnessRecord(agent=AGENT, chosen=custody.at(2))
    assert step.learned == (custody.at(2),)


def test_learning_never_moves_chosen_backwards() -> None:
    custody = _custody()
    custody.hand(E)
    custody.hand(F)
    state = _known(custody, 3)
    for after in (0, 1, 2):
        step = WITNESS.learn(state, _learn(chain_after(custody.starts[:2], after)))
        assert step.record is None and step.learned == ()
    older = WITNESS.learn(state, _learn(custody.wire(0)))
    assert older.record is None


def test_only_verified_custody_is_learned() -> None:
    custody = _custody()
    latest = custody.latest
    record = make_transfer(latest, E)
    forged = [
        (record.encode(), make_cert(record, (B,)).encode()),  # one vote of three
        (record.encode(), make_cert(record, (E, F)).encode()),  # votes of non-members
        (record.encode(), make_cert(make_transfer(latest, F), (B, C)).encode()),  # other record
        (make_transfer(latest, E, signer=F).encode(), make_cert(record, (B, C)).encode()),
    ]
    for links in forged:
        step = WITNESS.learn(_known(custody), _learn((1, links)))
        assert step.record is None and step.learned == ()
    assert WITNESS.learn(_known(custody), _learn((5, ()))).record is None


def test_a_chain_that_disagrees_with_what_the_witness_knows_is_ignored() -> None:
    ours = _custody()
    theirs = ours.copy()
    ours.hand(E)
    theirs.hand(F)
    theirs.hand(G)
    step = WITNESS.learn(_known(ours, 2), _learn(theirs.wire(0)))
    assert step.record is None and step.learned == ()


def test_a_witness_that_left_the_set_answers_not_witness_for_the_next_slot() -> None:
    custody = _custody()
    custody.hand(G, witnesses=(D, E, F))  # B leaves the witness set at epoch 2
    state = WITNESS.learn(_known(custody), _learn(custody.wire(1))).record
    assert state is not None and state.chosen.epoch == 2
    step = WITNESS.prepare(state, _prepare(ballot(G), slot=3))
    assert isinstance(step.reply, Nack) and step.reply.code is NackCode.NOT_WITNESS


def test_status_reports_chosen_and_the_accepted_value() -> None:
    custody = _custody()
    record = make_transfer(custody.latest, E).encode()
    status = Status(sender=A.public_key, agent=AGENT, known=0)
    assert WITNESS.status(None, status) == WitnessView(0, None, None)
    state = WITNESS.accept(_known(custody), _accept(ballot(A), record)).record
    assert WITNESS.status(state, status) == WitnessView(1, ballot(A), record)


# --- properties under arbitrary request sequences ------------------------------------------


def _world() -> tuple[Custody, Custody, list[bytes]]:
    """A custody of three epochs, a fork of it, and records that may be proposed for any slot."""
    main = _custody()
    fork = main.copy()
    main.hand(E)
    main.hand(F)
    main.hand(E)
    fork.hand(G)
    values = [
        make_transfer(s, target).encode() for s in [*main.starts, fork.latest] for target in (E, G)
    ]
    return main, fork, values


WORLD = _world()
PROPOSERS = (A, E, F, G)

requests = st.one_of(
    st.tuples(
        st.just("prepare"),
        st.integers(1, 5),  # slot
        st.integers(0, 3),  # proposer
        st.integers(0, 4),  # round
        st.integers(-1, 4),  # custody attached: -1 none, else after epoch k (fork at 4)
    ),
    st.tuples(
        st.just("accept"),
        st.integers(1, 5),
        st.integers(0, 3),
        st.integers(0, 4),
        st.integers(-1, 4),
        st.integers(0, 9),  # value
    ),
    st.tuples(st.just("learn"), st.integers(0, 4)),
)


def _attached(choice: int) -> tuple[int, tuple[bytes, ...]]:
    main, fork, _ = WORLD
    if choice < 0:
        return 0, ()
    if choice == 4:
        return fork.wire(0)
    return main.wire(choice)


@given(st.lists(requests, max_size=25))
@settings(max_examples=300, deadline=None)
def test_a_witness_never_moves_backwards_and_never_accepts_two_values_at_one_ballot(
    script: list[tuple],
) -> None:
    _, _, values = WORLD
    state: WitnessRecord | None = None
    votes: dict[tuple[int, Ballot], bytes] = {}
    for request in script:
        before = state
        if request[0] == "learn":
            step = WITNESS.learn(state, _learn(_attached(request[1])))
        else:
            slot, who, round_, chain = request[1:5]
            b = ballot(PROPOSERS[who], round_)
            if request[0] == "prepare":
                step = WITNESS.prepare(state, _prepare(b, slot=slot, wire=_attached(chain)))
            else:
                msg = _accept(b, values[request[5]], slot=slot, wire=_attached(chain))
                step = WITNESS.accept(state, msg)
        if step.record is not None:
            state = step.record
        if before is not None:
            assert state is not None
            assert state.chosen.epoch >= before.chosen.epoch  # the max-register
            if state.chosen == before.chosen and before.promised is not None:
                assert state.promised is not None and state.promised >= before.promised
        if isinstance(step.reply, Accepted):
            key = (step.reply.slot, step.reply.ballot)
            assert votes.setdefault(key, step.reply.record_digest) == step.reply.record_digest
        if state is not None:  # what it holds as chosen is proven custody
            known = read_chain(0, WORLD[0].wire(0)[1], None)
            assert state.chosen in known or state.chosen in WORLD[1].starts


def test_every_handler_is_pure() -> None:
    custody = _custody()
    state = _known(custody)
    snapshot = dataclasses.replace(state)
    WITNESS.prepare(state, _prepare(ballot(A)))
    WITNESS.accept(state, _accept(ballot(A), make_transfer(custody.latest, E).encode()))
    WITNESS.learn(state, _learn(custody.wire(0)))
    assert state == snapshot


def test_epoch_start_values_survive_in_a_witness_record() -> None:
    custody = _custody()
    record = _known(custody)
    assert isinstance(record.chosen, EpochStart) and record.chosen.epoch == 1
