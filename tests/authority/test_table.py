"""Properties of the authority table (igor_p2p.authority.table)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    ABSENT,
    SEND_ACTIONS,
    TRANSITIONS,
    AbortReason,
    AuthorityMachine,
    BeginHandoff,
    BudgetExhausted,
    ClaimsChecked,
    CommitReceived,
    ConfirmReceived,
    ConflictingClaim,
    DecideRetire,
    EnterRecovery,
    ForceRecover,
    Halt,
    HandoffAborted,
    HigherEpochSeen,
    IllegalTransition,
    IntegrityFailure,
    Launched,
    LogRejected,
    OfferPrepared,
    PendingDiscarded,
    PersistAuthority,
    RecoveryReason,
    RejectCode,
    RejectReason,
    ResolutionKind,
    ResolutionOutcome,
    Restarted,
    SendAck,
    SendCommit,
    SendConfirm,
    SendReject,
    StartTicking,
    StopTicking,
)
from igor_p2p.errors import IgorError

S = AuthorityState
M1 = b"\x01" * 16
M2 = b"\x02" * 16


def owner(epoch: int = 1) -> AuthorityMachine:
    m = AuthorityMachine()
    m.handle(Launched(epoch))
    return m


def initiated() -> AuthorityMachine:
    m = owner()
    m.handle(BeginHandoff("B", M1))
    return m


def retired() -> AuthorityMachine:
    m = initiated()
    m.handle(DecideRetire(M1, 1, b"record", b"d" * 32))
    return m


def pending() -> AuthorityMachine:
    m = AuthorityMachine()
    m.handle(OfferPrepared("A", M1, 1, b"h" * 32))
    return m


def test_only_active_owner_ticks() -> None:
    for state in AuthorityState:
        assert state.may_tick == (state is S.ACTIVE_OWNER)
    m = owner()
    assert m.may_tick
    m.handle(BeginHandoff("B", M1))
    assert not m.may_tick
    assert not pending().may_tick and not retired().may_tick


def test_every_rule_emits_exactly_its_declared_actions_and_persists_before_dependent_sends() -> (
    None
):
    for (state, _event), rules in TRANSITIONS.items():
        for rule in rules:
            kinds = list(rule.actions)
            if PersistAuthority in kinds:
                p = kinds.index(PersistAuthority)
                before = kinds[:p]
                assert not any(k in SEND_ACTIONS for k in before if k is not SendReject), (
                    state,
                    rule,
                )
                assert StartTicking not in before, (state, rule)
            if rule.next_state not in (None, state) and state is S.ACTIVE_OWNER:
                assert kinds[0] is StopTicking, (state, rule)


def test_leaving_ownership_stops_ticking_before_the_persist() -> None:
    acts = owner().handle(BeginHandoff("B", M1))
    assert [type(a) for a in acts[:2]] == [StopTicking, PersistAuthority]


def test_second_migration_in_flight_is_refused() -> None:
    m = initiated()
    acts = m.handle(BeginHandoff("C", M2))
    assert acts == [LogRejected(RejectReason.MIGRATION_IN_FLIGHT, acts[0].detail)]
    assert m.state is S.HANDOFF_INITIATED and m.migration is not None
    assert m.migration.migration_id == M1
    p = pending()
    acts = p.handle(OfferPrepared("C", M2, 1))
    assert isinstance(acts[0], SendReject) and acts[0].code is RejectCode.BUSY
    assert p.migration is not None and p.migration.migration_id == M1


def test_timeout_before_decision_resumes_source() -> None:
    m = initiated()
    acts = m.handle(HandoffAborted(M1, AbortReason.TIMEOUT))
    assert m.state is S.ACTIVE_OWNER and m.epoch == 1 and m.may_tick
    assert isinstance(acts[0], PersistAuthority)


def test_decision_retires_and_raises_the_fence() -> None:
    m = retired()
    assert m.state is S.RETIRED and m.fence == 2 and not m.may_tick
    with pytest.raises(IllegalTransition):
        m.handle(HandoffAborted(M1, AbortReason.TIMEOUT))  # abort only before the decision


def test_commit_makes_target_owner_at_next_epoch() -> None:
    m = pending()
    acts = m.handle(CommitReceived(M1, 2, b"record"))
    assert m.state is S.ACTIVE_OWNER and m.epoch == 2
    assert [type(a) for a in acts][:2] == [PersistAuthority, SendConfirm]


def test_duplicate_commit_is_idempotent() -> None:
    m = pending()
    m.handle(CommitReceived(M1, 2, b"record"))
    record = m.record
    acts = m.handle(CommitReceived(M1, 2, b"record"))
    assert acts == [SendConfirm("A", M1, 2)]
    assert m.record == record


def test_duplicate_confirm_is_idempotent() -> None:
    m = retired()
    m.handle(ConfirmReceived(M1, 2))
    record = m.record
    assert m.handle(ConfirmReceived(M1, 2)) == []
    assert m.record == record


def test_stale_epoch_is_rejected() -> None:
    m = retired()  # fence 2
    record = m.record
    acts = m.handle(OfferPrepared("C", M2, 1))
    assert isinstance(acts[0], SendReject) and acts[0].code is RejectCode.STALE_EPOCH
    assert isinstance(acts[1], LogRejected) and acts[1].reason is RejectReason.STALE_EPOCH
    assert m.record == record
    t = pending()
    t.handle(CommitReceived(M1, 2, b"r"))
    t.handle(HigherEpochSeen(5, "claim"))  # -> recovery, fence 5
    acts = t.handle(CommitReceived(M1, 2, b"r"))
    assert isinstance(acts[0], LogRejected) and acts[0].reason is RejectReason.STALE_EPOCH


def test_unknown_migration_is_rejected() -> None:
    m = pending()
    acts = m.handle(CommitReceived(M2, 2, b"r"))
    assert isinstance(acts[0], LogRejected) and acts[0].reason is RejectReason.UNKNOWN_MIGRATION
    assert m.state is S.HANDOFF_PENDING


def test_higher_epoch_stops_ticking() -> None:
    m = owner()
    acts = m.handle(HigherEpochSeen(3, "peer claim"))
    assert isinstance(acts[0], StopTicking)
    assert m.state is S.RECOVERY_REQUIRED and m.record.reason is RecoveryReason.HIGHER_EPOCH_SEEN
    assert m.fence == 3 and not m.may_tick


def test_conflicting_claims_enter_recovery() -> None:
    m = owner()
    acts = m.handle(ConflictingClaim(1, "two heads at epoch 1"))
    assert m.state is S.RECOVERY_REQUIRED
    assert any(isinstance(a, EnterRecovery) for a in acts)
    p = pending()
    p.handle(ConflictingClaim(1, "fork"))
    assert p.state is S.RECOVERY_REQUIRED


def test_restart_from_stale_copy_never_ticks() -> None:
    m = owner()
    stale = AuthorityMachine.restore(m.record)
    acts = stale.handle(Restarted())
    assert not stale.may_tick and not any(isinstance(a, StartTicking) for a in acts)
    stale.handle(ClaimsChecked(highest_epoch=2))
    assert stale.state is S.RECOVERY_REQUIRED and not stale.may_tick
    fresh = AuthorityMachine.restore(m.record)
    fresh.handle(Restarted())
    fresh.handle(ClaimsChecked(highest_epoch=1))
    assert fresh.may_tick


def test_restart_before_decision_aborts_the_handoff() -> None:
    m = AuthorityMachine.restore(initiated().record)
    m.handle(Restarted())
    assert m.state is S.ACTIVE_OWNER and not m.may_tick  # until the claim check


def test_pending_target_never_ticks_and_discards_on_abort() -> None:
    m = pending()
    m.handle(PendingDiscarded(M1))
    assert m.state is S.RETIRED and not m.may_tick


def test_resolution_outcomes_are_idempotent() -> None:
    m = pending()
    m.handle(ResolutionOutcome(M1, ResolutionKind.COMMIT, transfer_record=b"r"))
    record = m.record
    assert m.handle(ResolutionOutcome(M1, ResolutionKind.COMMIT, transfer_record=b"r")) == [
        SendConfirm("A", M1, 2)
    ]
    assert m.record == record
    r = retired()
    r.handle(ResolutionOutcome(M1, ResolutionKind.CONFIRMED))
    record = r.record
    assert r.handle(ResolutionOutcome(M1, ResolutionKind.CONFIRMED)) == []
    assert r.record == record


def test_resend_commit_uses_the_stored_transfer_record() -> None:
    r = retired()
    assert r.handle(ResolutionOutcome(M1, ResolutionKind.RESEND_COMMIT)) == [
        SendCommit("B", M1, b"record")
    ]


def test_force_recover_needs_an_epoch_above_the_fence() -> None:
    m = owner()
    m.handle(IntegrityFailure("bad checkpoint"))
    acts = m.handle(ForceRecover("ops", 1))
    assert isinstance(acts[0], LogRejected) and m.state is S.RECOVERY_REQUIRED
    m.handle(ForceRecover("ops", 2))
    assert m.state is S.ACTIVE_OWNER and m.epoch == 2 and m.may_tick


def test_illegal_pairs_raise_typed_errors() -> None:
    with pytest.raises(IllegalTransition) as info:
        AuthorityMachine().handle(Halt())
    assert isinstance(info.value, IgorError) and info.value.state is ABSENT
    with pytest.raises(IllegalTransition):
        pending().handle(BudgetExhausted())


def test_offer_to_an_owner_is_refused() -> None:
    m = owner()
    acts = m.handle(OfferPrepared("X", M2, 1))
    assert isinstance(acts[0], SendReject) and m.state is S.ACTIVE_OWNER and m.may_tick


EVENTS = st.one_of(
    st.builds(Launched, st.integers(1, 4)),
    st.just(Restarted()),
    st.builds(ClaimsChecked, st.integers(0, 5)),
    st.builds(BeginHandoff, st.just("B"), st.sampled_from([M1, M2])),
    st.builds(HandoffAborted, st.sampled_from([M1, M2]), st.sampled_from(list(AbortReason))),
    st.builds(OfferPrepared, st.just("A"), st.sampled_from([M1, M2]), st.integers(1, 5)),
    st.builds(
        DecideRetire, st.sampled_from([M1, M2]), st.integers(1, 5), st.just(b"r"), st.just(b"d")
    ),
    st.builds(CommitReceived, st.sampled_from([M1, M2]), st.integers(1, 6), st.just(b"r")),
    st.builds(ConfirmReceived, st.sampled_from([M1, M2]), st.integers(1, 6)),
    st.builds(PendingDiscarded, st.sampled_from([M1, M2])),
    st.builds(HigherEpochSeen, st.integers(1, 6), st.just("e")),
    st.builds(ConflictingClaim, st.integers(1, 6), st.just("e")),
    st.builds(IntegrityFailure, st.just("x")),
    st.just(BudgetExhausted()),
    st.just(Halt()),
    st.builds(
        ResolutionOutcome,
        st.sampled_from([M1, M2]),
        st.sampled_from(list(ResolutionKind)),
        st.just(RecoveryReason.PEER_CONTRADICTS),
        st.just(b"r"),
    ),
    st.builds(ForceRecover, st.just("ops"), st.integers(1, 7)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENTS, max_size=30))
def test_any_event_sequence_keeps_fence_monotonic_and_errors_typed(events: list) -> None:
    m = AuthorityMachine()
    for event in events:
        before = m.record
        try:
            actions = m.handle(event)
        except IllegalTransition:
            assert m.record == before
            continue
        assert m.fence >= before.fence and m.fence >= m.epoch
        if m.state is not before.state or m.epoch != before.epoch:
            assert any(isinstance(a, PersistAuthority) for a in actions)
        if m.may_tick:
            assert m.state is S.ACTIVE_OWNER
        if any(isinstance(a, SendAck) for a in actions):
            assert m.state is S.HANDOFF_PENDING
