"""The authority table (igor_p2p.authority.table): the rules that decide when a node may tick.

Node A's machine is under test. Events carry real certified custody (tests/authority/chain.py);
tests/authority/table_world.py holds the reachable situations and the per-step contract.
"""

from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import igor_p2p.authority.events as events_module
from igor_p2p.authority.claim import Claim
from igor_p2p.authority.events import (
    AbortReason,
    AbortReceived,
    AgentFailed,
    BeginHandoff,
    BudgetExhausted,
    ClaimResolved,
    ClaimStale,
    CommitReceived,
    EnterRecovery,
    Event,
    ForceRecover,
    Halt,
    HandoffAborted,
    Imported,
    IntegrityFailure,
    Launched,
    Learn,
    LogRejected,
    OfferPrepared,
    OfferRefused,
    PersistAuthority,
    PublishClaim,
    ReplyAck,
    ReplyConfirm,
    ReplyDone,
    ReplyReject,
    Restarted,
    Resume,
    SendAbort,
    SendCommit,
    SourceAborted,
    StartClaim,
    StartTicking,
    StopTicking,
    Superseded,
    TickFailed,
)
from igor_p2p.authority.record import (
    ABSENT,
    AuthorityRecord,
    ClaimPurpose,
    PendingCopy,
    Phase,
    RecoveryReason,
    Successor,
)
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    ALWAYS,
    OTHERWISE,
    TRANSITIONS,
    AuthorityMachine,
    IllegalTransition,
    TableInconsistency,
)
from igor_p2p.errors import IgorError
from igor_p2p.wire.messages import RejectCode

from .chain import A, ballot, make_transfer
from .table_world import (
    GENESIS,
    H_ELSE,
    H_OFFER,
    H_OURS,
    M1,
    M2,
    ME,
    SITUATIONS,
    SOURCE,
    TARGET,
    THIRD,
    WITNESSES,
    ContractBroken,
    Driven,
    _fed,
    _loaded,
    events_for,
    our_handoff,
    start,
    walk,
)

S = AuthorityState
ROOT = Path(__file__).resolve().parents[2]


def _types(actions: list) -> list[type]:
    return [type(a) for a in actions]


def _owner() -> Driven:
    return _fed(Launched(WITNESSES, GENESIS))


def _restarted(state: AuthorityState, epoch: int = 2, **fields: object) -> Driven:
    return _loaded(state, epoch, **fields).crash()


def _pending() -> Driven:
    return _fed(OfferPrepared(SOURCE.public_key, M1, 2, H_OFFER, WITNESSES, (b"copy",)))


# --------------------------------------------------------------------------- ticking


def test_only_an_epoch_certified_in_this_incarnation_may_tick() -> None:
    launched = _owner()
    assert launched.machine.may_tick and launched.machine.run.certified == 1
    # The same record read back from disk: this incarnation holds no certificate for it.
    reloaded = Driven.loaded(launched.durable)
    assert reloaded.machine.state is S.ACTIVE_OWNER and not reloaded.machine.may_tick
    reloaded.feed(Restarted())
    assert not reloaded.machine.may_tick
    reloaded.feed(ClaimResolved(start(2, A, H_OURS)))
    assert reloaded.machine.may_tick and reloaded.machine.run.certified == 2
    for state in AuthorityState:
        machine = AuthorityMachine(ME, AuthorityRecord(state=state, epoch=3))
        assert not machine.may_tick  # a fresh run never ticks, whatever the record says


def test_restart_of_an_owner_claims_a_new_epoch_instead_of_ticking() -> None:
    owner = _loaded(S.ACTIVE_OWNER, epoch=3)
    actions = owner.feed(Restarted())
    assert actions == [StartClaim(ClaimPurpose.RESUME, 4)]
    assert owner.machine.record == owner.durable  # nothing is written before the claim wins
    assert owner.machine.run.phase is Phase.CLAIMING
    chosen = start(4, A, H_OURS)
    actions = owner.feed(ClaimResolved(chosen))
    assert _types(actions) == [PersistAuthority, StartTicking, PublishClaim, Learn]
    persist = actions[0]
    assert isinstance(persist, PersistAuthority)
    assert (persist.record.state, persist.record.epoch) == (S.ACTIVE_OWNER, 4)
    assert persist.record.witnesses == chosen.witnesses
    assert persist.append == chosen.links()  # the record and its certificate join the lineage
    assert actions[1:] == [StartTicking(4), PublishClaim(chosen, 4), Learn(chosen)]


def test_a_restarted_owner_whose_next_epoch_went_to_another_node_retires() -> None:
    owner = _restarted(S.ACTIVE_OWNER, epoch=3)
    elsewhere = start(4, THIRD, H_ELSE)
    actions = owner.feed(ClaimResolved(elsewhere))
    assert _types(actions) == [PersistAuthority, Learn]
    record = owner.machine.record
    assert record.state is S.RETIRED
    assert record.successor == Successor(4, THIRD.public_key) and record.fence == 4


@pytest.mark.parametrize("result", [ClaimResolved, ClaimStale])
def test_a_restarted_owner_whose_own_earlier_handoff_was_chosen_sends_the_target_its_commit(
    result: type,
) -> None:
    # Its transfer was accepted, then it died before it learned the outcome: nobody else will
    # send the COMMIT its target waits for in HANDOFF_PENDING.
    owner = _restarted(S.ACTIVE_OWNER, epoch=3)
    chosen = our_handoff(4, TARGET)
    actions = owner.feed(result(chosen))
    assert _types(actions)[:2] == [PersistAuthority, SendCommit]
    assert actions[1] == SendCommit(TARGET.public_key, b"\x07" * 16, chosen)
    assert owner.machine.state is S.RETIRED
    assert owner.machine.record.successor == Successor(4, TARGET.public_key)


def test_a_handoff_adopting_our_earlier_handoff_aborts_its_target_and_commits_the_earlier() -> None:
    owner = _restarted(S.ACTIVE_OWNER, epoch=3)
    owner.feed(ClaimResolved(start(4, A, H_OURS)))  # the restart's claim: ticking epoch 4 now
    owner.feed(BeginHandoff(TARGET.public_key, M2))
    earlier = our_handoff(5, THIRD)
    actions = owner.feed(ClaimResolved(earlier))
    assert _types(actions) == [SendAbort, PersistAuthority, SendCommit, Learn]
    assert actions[0] == SendAbort(TARGET.public_key, M2)
    assert actions[2] == SendCommit(THIRD.public_key, b"\x07" * 16, earlier)


def _handing_off_at(epoch: int) -> Driven:
    owner = _restarted(S.ACTIVE_OWNER, epoch=epoch - 1)
    owner.feed(ClaimResolved(start(epoch, A, H_OURS)))  # the restart's claim: ticking now
    owner.feed(BeginHandoff(TARGET.public_key, M2))
    return owner


def test_a_handoff_proven_stale_for_another_node_retires_and_aborts_its_target() -> None:
    # A restore or a forced recovery won the next epoch: our target's copy can never be chosen,
    # so it hears it at once instead of waiting out its own settlement.
    owner = _handing_off_at(4)
    actions = owner.feed(ClaimStale(start(5, THIRD, H_ELSE)))
    assert _types(actions) == [SendAbort, PersistAuthority]
    assert actions[0] == SendAbort(TARGET.public_key, M2)
    assert owner.machine.state is S.RETIRED
    assert owner.machine.record.successor == Successor(5, THIRD.public_key)
    assert owner.machine.run.handoff is None


def test_a_handoff_proven_stale_by_our_earlier_handoff_aborts_it_and_commits_the_earlier() -> None:
    owner = _handing_off_at(4)
    earlier = our_handoff(5, THIRD)
    actions = owner.feed(ClaimStale(earlier))
    assert _types(actions) == [SendAbort, PersistAuthority, SendCommit]
    assert actions[0] == SendAbort(TARGET.public_key, M2)
    assert actions[2] == SendCommit(THIRD.public_key, b"\x07" * 16, earlier)
    assert owner.machine.record.successor == Successor(5, THIRD.public_key)


@pytest.mark.parametrize("state", [S.HALTED, S.RECOVERY_REQUIRED])
def test_a_halted_or_recovering_node_whose_own_handoff_was_chosen_sends_the_commit(
    state: AuthorityState,
) -> None:
    # It learns by proof (a peer's, or the witnesses' answer to its claim) that the next epoch
    # is its own earlier transfer, which it never completed: its target still waits.
    chosen = our_handoff(4, TARGET)
    told = _loaded(state, 3)
    actions = told.feed(Superseded(chosen))
    assert _types(actions) == [PersistAuthority, SendCommit]
    assert actions[1] == SendCommit(TARGET.public_key, b"\x07" * 16, chosen)
    assert told.machine.state is S.RETIRED
    claiming = _loaded(state, 3)
    claiming.feed(Resume() if state is S.HALTED else ForceRecover("ops"))
    actions = claiming.feed(ClaimStale(chosen))
    assert _types(actions) == [PersistAuthority, SendCommit]
    assert claiming.machine.record.successor == Successor(4, TARGET.public_key)


def test_a_pending_target_told_its_copy_was_chosen_owns_it() -> None:
    pending = _pending()
    actions = pending.feed(Superseded(start(3, A, H_OFFER)))
    assert _types(actions) == [PersistAuthority, StartTicking, PublishClaim, Learn]
    assert pending.machine.state is S.ACTIVE_OWNER and pending.ticking


def test_a_pending_target_proven_owner_of_its_epoch_for_another_copy_was_restored() -> None:
    # Its settlement finds the epoch it waits for certified to itself, for a copy it does not
    # hold: it lost what it committed (a backup restored). Never tick; never wait forever.
    pending = _pending()
    actions = pending.feed(ClaimStale(start(3, A, H_ELSE)))
    assert _types(actions) == [PersistAuthority, EnterRecovery]
    assert pending.machine.record.reason is RecoveryReason.RESTORED_COPY
    assert not pending.ticking


def test_claim_results_count_only_while_the_node_claims() -> None:
    owner = _owner()  # ticking epoch 1, no claim in progress
    for event in (ClaimResolved(start(2, A, H_OURS)), ClaimStale(start(3, THIRD))):
        assert _types(owner.feed(event)) == [LogRejected]
        assert owner.machine.may_tick and owner.machine.epoch == 1


def test_pending_target_never_ticks_before_the_certificate() -> None:
    target = Driven.fresh()
    actions = target.feed(OfferPrepared(SOURCE.public_key, M1, 2, H_OFFER, WITNESSES, (b"c",)))
    assert _types(actions) == [PersistAuthority, ReplyAck, StartClaim]
    assert actions[1] == ReplyAck(M1, 2, H_OFFER) and actions[2] == StartClaim(
        ClaimPurpose.SETTLE, 3
    )
    assert target.machine.state is S.HANDOFF_PENDING and not target.machine.may_tick
    # A COMMIT without a certificate, for another copy, or for another node changes nothing.
    for start_ in (None, start(3, A, H_ELSE), start(3, THIRD, H_OFFER)):
        actions = target.feed(CommitReceived(M1, start_))
        assert _types(actions) == [ReplyReject, LogRejected]
        assert actions[0].code is RejectCode.UNKNOWN_MIGRATION  # type: ignore[attr-defined]
        assert target.machine.state is S.HANDOFF_PENDING and not target.machine.may_tick
    chosen = start(3, A, H_OFFER)
    actions = target.feed(CommitReceived(M1, chosen))
    assert _types(actions) == [PersistAuthority, ReplyConfirm, StartTicking, PublishClaim, Learn]
    assert actions[1] == ReplyConfirm(M1, 3) and actions[2] == StartTicking(3)
    assert target.machine.may_tick and target.machine.record.last_migration == M1


def test_a_pending_copy_prepared_before_a_restart_claims_once_more_before_ticking() -> None:
    target = _restarted(S.HANDOFF_PENDING)
    assert target.machine.run.claim is ClaimPurpose.SETTLE and not target.machine.may_tick
    actions = target.feed(CommitReceived(M1, start(3, A, H_OFFER)))
    assert _types(actions) == [PersistAuthority, ReplyConfirm, StartClaim]
    assert actions[2] == StartClaim(ClaimPurpose.RESUME, 4)
    assert target.machine.state is S.ACTIVE_OWNER and not target.machine.may_tick


def test_a_settle_claim_completes_the_sources_record_for_our_copy() -> None:
    fresh = _pending()
    assert _types(fresh.feed(ClaimResolved(start(3, A, H_OFFER)))) == [
        PersistAuthority,
        StartTicking,
        PublishClaim,
        Learn,
    ]
    restarted = _restarted(S.HANDOFF_PENDING)
    assert _types(restarted.feed(ClaimResolved(start(3, A, H_OFFER)))) == [
        PersistAuthority,
        StartClaim,
    ]
    elsewhere = _pending()
    assert _types(elsewhere.feed(ClaimResolved(start(3, THIRD)))) == [PersistAuthority]
    assert elsewhere.machine.state is S.RETIRED


def test_source_may_abort_only_before_any_accept_left() -> None:
    source = _owner()
    assert source.feed(BeginHandoff(TARGET.public_key, M1)) == [StopTicking()]
    assert not source.machine.may_tick and not source.ticking
    # The driver aborts only while its claim has sent no ACCEPT (Claim.accept_sent):
    custody_start = start(1, A)
    claim = Claim(custody_start.agent, 2, custody_start, [custody_start], ballot(A))
    claim.start()
    assert not claim.accept_sent
    # ... and the table then goes back to ticking the same, still certified, epoch.
    record_before = source.machine.record
    actions = source.feed(HandoffAborted(M1, AbortReason.NO_QUORUM))
    assert actions == [SendAbort(TARGET.public_key, M1), StartTicking(1)]
    assert source.machine.record == record_before  # nothing was written: nothing was signed
    assert source.machine.may_tick and source.ticking
    # An abort of a migration that is not in flight changes nothing.
    assert _types(source.feed(HandoffAborted(M2, AbortReason.TIMEOUT))) == [LogRejected]


def test_once_the_transfer_is_chosen_the_source_retires_and_cannot_abort() -> None:
    source = _fed(BeginHandoff(TARGET.public_key, M1), base=_owner())
    chosen = start(2, TARGET, H_OURS)
    actions = source.feed(ClaimResolved(chosen, b"handoff-checkpoint"))
    assert _types(actions) == [PersistAuthority, SendCommit, Learn]
    persist = actions[0]
    assert isinstance(persist, PersistAuthority)
    assert persist.append == (b"handoff-checkpoint", *chosen.links())
    assert actions[1] == SendCommit(TARGET.public_key, M1, chosen)
    assert source.machine.record.successor == Successor(2, TARGET.public_key)
    with pytest.raises(IllegalTransition):
        source.feed(HandoffAborted(M1, AbortReason.TIMEOUT))


def test_a_handoff_that_adopted_another_record_aborts_the_target_and_retires() -> None:
    source = _fed(BeginHandoff(TARGET.public_key, M1), base=_owner())
    actions = source.feed(ClaimResolved(start(2, THIRD, H_ELSE)))
    assert _types(actions) == [SendAbort, PersistAuthority, Learn]
    assert actions[0] == SendAbort(TARGET.public_key, M1)
    assert source.machine.state is S.RETIRED


def test_a_handoff_that_adopted_our_own_earlier_resume_ticks_the_new_epoch() -> None:
    source = _fed(BeginHandoff(TARGET.public_key, M1), base=_owner())
    actions = source.feed(ClaimResolved(start(2, A, H_OURS)))
    assert _types(actions) == [SendAbort, PersistAuthority, StartTicking, PublishClaim, Learn]
    assert source.machine.may_tick and source.machine.epoch == 2


# --------------------------------------------------------------------------- proven facts


def test_proven_later_epoch_retires_instead_of_halting() -> None:
    for situation in (
        _restarted(S.ACTIVE_OWNER, epoch=2),
        _fed(Resume(), base=_fed(Halt("op"), base=_owner())),
        _fed(ForceRecover("op"), base=_restarted(S.RECOVERY_REQUIRED, epoch=2)),
        _restarted(S.HANDOFF_PENDING, epoch=2),
    ):
        e = situation.machine.epoch
        actions = situation.feed(ClaimStale(start(e + 2, THIRD)))
        assert _types(actions) == [PersistAuthority], situation.history
        record = situation.machine.record
        assert record.state is S.RETIRED and record.reason is None
        assert record.successor == Successor(e + 2, THIRD.public_key)
        assert record.fence == e + 2


def test_a_retired_node_remembers_the_latest_owner_it_learns_of() -> None:
    retired = _restarted(S.RETIRED, epoch=2)  # successor (3, TARGET)
    actions = retired.feed(Superseded(start(5, THIRD)))
    assert _types(actions) == [PersistAuthority]
    assert retired.machine.record.successor == Successor(5, THIRD.public_key)
    assert retired.feed(Superseded(start(4, THIRD))) == []  # older news


def test_restored_copy_named_owner_of_a_later_epoch_enters_recovery() -> None:
    owner = _restarted(S.ACTIVE_OWNER, epoch=2)
    actions = owner.feed(ClaimStale(start(4, A, H_ELSE)))
    assert _types(actions) == [PersistAuthority, EnterRecovery]
    record = owner.machine.record
    assert record.state is S.RECOVERY_REQUIRED and record.reason is RecoveryReason.RESTORED_COPY
    assert record.successor == Successor(4, ME)
    assert not owner.machine.may_tick


def test_the_next_epoch_certified_to_us_for_another_copy_is_a_restore_too() -> None:
    owner = _restarted(S.ACTIVE_OWNER, epoch=2)
    owner.feed(ClaimStale(start(3, A, H_ELSE)))  # our key, but not the head we hold
    assert owner.machine.record.reason is RecoveryReason.RESTORED_COPY


def test_the_next_epoch_certified_to_us_for_this_copy_is_recorded_and_claimed_past() -> None:
    owner = _restarted(S.ACTIVE_OWNER, epoch=2)
    chosen = start(3, A, H_OURS)
    actions = owner.feed(ClaimStale(chosen))
    assert _types(actions) == [PersistAuthority, StartClaim]
    assert actions[0].append == chosen.links()  # type: ignore[attr-defined]
    assert actions[1] == StartClaim(ClaimPurpose.RESUME, 4)
    assert owner.machine.state is S.ACTIVE_OWNER and owner.machine.epoch == 3
    assert not owner.machine.may_tick


def test_an_unexpected_error_halts_the_agent_in_recovery_and_stops_the_runner() -> None:
    for name, build in SITUATIONS.items():
        d = build()
        if d.machine.state is ABSENT:
            with pytest.raises(IllegalTransition):
                d.feed(AgentFailed("a bug"))
            continue
        actions = d.feed(AgentFailed("a bug"))
        assert d.machine.state is S.RECOVERY_REQUIRED, name
        assert d.machine.record.reason is RecoveryReason.UNEXPECTED_ERROR
        assert isinstance(actions[-1], EnterRecovery) and not d.ticking


def test_force_recover_claims_the_next_epoch_and_ticks_only_with_the_certificate() -> None:
    halted = _restarted(S.RECOVERY_REQUIRED, epoch=2)
    assert halted.feed(ForceRecover("op@example")) == [
        StartClaim(ClaimPurpose.FORCE, 3, "op@example")
    ]
    assert not halted.machine.may_tick
    actions = halted.feed(ClaimResolved(start(3, A, H_OURS)))  # our forced record, our head
    assert _types(actions) == [PersistAuthority, StartTicking, PublishClaim, Learn]
    assert halted.machine.may_tick and halted.machine.epoch == 3


def test_halt_and_resume_go_through_a_new_claim() -> None:
    owner = _owner()
    actions = owner.feed(Halt("operator"))
    assert _types(actions) == [StopTicking, PersistAuthority]
    assert actions[1].final_checkpoint  # type: ignore[attr-defined]
    assert owner.machine.state is S.HALTED and not owner.ticking
    assert owner.feed(Resume()) == [StartClaim(ClaimPurpose.RESUME, 2)]
    owner.feed(ClaimResolved(start(2, A, H_OURS)))
    assert owner.machine.may_tick and owner.machine.epoch == 2


def test_budget_exhaustion_and_a_failing_tick_stop_the_agent_with_its_final_checkpoint() -> None:
    for event, state in [
        (BudgetExhausted(b"final"), S.BUDGET_EXHAUSTED),
        (TickFailed("trap", b"final"), S.HALTED),
    ]:
        owner = _owner()
        actions = owner.feed(event)
        assert _types(actions) == [StopTicking, PersistAuthority]
        assert actions[1].append == (b"final",)  # type: ignore[attr-defined]
        assert owner.machine.state is state and not owner.ticking


# --------------------------------------------------------------------------- requests


def test_an_offer_below_the_fence_is_refused_as_stale() -> None:
    retired = _restarted(S.RETIRED, epoch=2)  # successor at epoch 3: fence 3
    actions = retired.feed(OfferPrepared(SOURCE.public_key, M2, 2, H_OFFER, WITNESSES, ()))
    assert _types(actions) == [ReplyReject, LogRejected]
    assert actions[0].code is RejectCode.STALE_EPOCH  # type: ignore[attr-defined]
    actions = retired.feed(OfferPrepared(SOURCE.public_key, M2, 3, H_OFFER, WITNESSES, ()))
    assert _types(actions) == [PersistAuthority, ReplyAck, StartClaim]


def test_a_repeated_offer_is_acked_again_and_a_newer_one_replaces_the_copy() -> None:
    target = _pending()
    assert target.feed(OfferPrepared(SOURCE.public_key, M1, 2, H_OFFER, WITNESSES, ())) == [
        ReplyAck(M1, 2, H_OFFER)
    ]
    actions = target.feed(OfferPrepared(SOURCE.public_key, M2, 2, H_OFFER, WITNESSES, ()))
    assert _types(actions) == [PersistAuthority, ReplyAck, StartClaim]
    assert actions[0].discard_copy  # type: ignore[attr-defined]
    assert target.machine.record.pending == PendingCopy(M2, SOURCE.public_key, H_OFFER)
    busy = target.feed(OfferPrepared(THIRD.public_key, M1, 2, H_OFFER, WITNESSES, ()))
    assert busy[0].code is RejectCode.BUSY  # type: ignore[attr-defined]


def test_a_repeated_commit_for_the_migration_that_made_us_owner_is_confirmed_again() -> None:
    owner = _fed(CommitReceived(M1, start(3, A, H_OFFER)), base=_pending())
    assert owner.feed(CommitReceived(M1, start(3, A, H_OFFER))) == [ReplyConfirm(M1, 3)]
    assert _types(owner.feed(CommitReceived(M2, None))) == [ReplyReject, LogRejected]


def test_an_abort_discards_the_pending_copy() -> None:
    target = _pending()
    actions = target.feed(AbortReceived(M1))
    assert _types(actions) == [PersistAuthority, ReplyDone]
    assert actions[0].discard_copy  # type: ignore[attr-defined]
    assert target.machine.state is S.RETIRED and target.machine.record.pending is None
    assert _types(target.feed(AbortReceived(M1))) == [ReplyDone, LogRejected]


def test_the_source_saying_it_kept_the_agent_discards_the_pending_copy() -> None:
    target = _restarted(S.HANDOFF_PENDING)
    assert _types(target.feed(SourceAborted(M2))) == [LogRejected]
    assert _types(target.feed(SourceAborted(M1))) == [PersistAuthority]
    assert target.machine.state is S.RETIRED


def test_a_pair_the_table_does_not_list_is_a_typed_illegal_transition() -> None:
    retired = _restarted(S.RETIRED)
    with pytest.raises(IllegalTransition) as caught:
        retired.feed(BeginHandoff(TARGET.public_key, M1))
    assert caught.value.state is S.RETIRED and isinstance(caught.value.event, BeginHandoff)
    assert isinstance(caught.value, IgorError)
    assert not issubclass(TableInconsistency, IllegalTransition)
    owner = _restarted(S.ACTIVE_OWNER)  # claiming, not ticking: no handoff may begin
    with pytest.raises(IllegalTransition):
        owner.feed(BeginHandoff(TARGET.public_key, M1))


# --------------------------------------------------------------------------- every rule

KNOWN_BUGS: dict[tuple[object, str, Phase], str] = {}
"""(state, event, phase) -> what breaks: none (the test below keeps the list exact)."""

UNREACHABLE_RULES: set[tuple[object, str, str]] = set()
"""(state, event, guard) of rules no reachable situation can hit (issue 8: every rule has a
producer, or it is deleted): none."""


@functools.cache
def _walk() -> list:
    return walk()


def _broken(outcomes: list) -> dict[tuple[object, str, Phase], list[str]]:
    found: dict[tuple[object, str, Phase], list[str]] = {}
    for o in outcomes:
        if o.error is None or isinstance(o.error, IllegalTransition):
            continue
        base = SITUATIONS[o.situation]()
        key = (base.machine.state, type(o.event).__name__, base.machine.run.phase)
        found.setdefault(key, []).append(f"{o.situation}: {o.error}")
    return found


def test_every_rule_is_hit_from_a_reachable_situation() -> None:
    fired = {o.rule for o in _walk() if o.rule is not None}
    missing = {
        (state, event.__name__, rules[i].guard.name)
        for (state, event), rules in TRANSITIONS.items()
        for i in range(len(rules))
        if (state, event, i) not in fired
    }
    assert missing == UNREACHABLE_RULES


def test_every_rule_emits_exactly_its_declared_actions_and_persists_before_dependent_actions() -> (
    None
):
    # The write-ahead contract of the table's docstring, checked on every rule hit from every
    # reachable situation (check_step): StopTicking before the write that leaves ownership;
    # replies, StartTicking, SendCommit, PublishClaim, Learn and StartClaim after the
    # PersistAuthority they depend on; the persisted record is the machine's, one version up;
    # one reply per request; the runner ticks exactly when may_tick holds.
    broken = _broken(_walk())
    unexpected = {k: v for k, v in broken.items() if k not in KNOWN_BUGS}
    assert unexpected == {}
    assert len({o.rule for o in _walk() if o.error is None and o.rule}) > 100


def test_the_known_bug_list_is_exact() -> None:
    assert set(_broken(_walk())) == set(KNOWN_BUGS)


def test_errors_from_the_table_are_typed() -> None:
    for o in _walk():
        if o.error is not None:
            assert isinstance(o.error, IllegalTransition | TableInconsistency | ContractBroken)


def test_request_events_name_their_reply_in_every_rule() -> None:
    replies = {ReplyAck, ReplyReject, ReplyConfirm, ReplyDone}
    for (state, event), rules in TRANSITIONS.items():
        for r in rules:
            count = sum(a in replies for a in r.actions)
            if event in (OfferPrepared, OfferRefused, CommitReceived, AbortReceived):
                assert count == 1, (state, event.__name__, r.guard.name)
            else:
                assert count == 0, (state, event.__name__, r.guard.name)


def test_only_active_owner_rules_start_ticking() -> None:
    for (_state, _event), rules in TRANSITIONS.items():
        for r in rules:
            if StartTicking in r.actions:
                assert r.next_state in (S.ACTIVE_OWNER, None)
                assert PersistAuthority in r.actions or r.next_state is None


# --------------------------------------------------------------------------- producers

NO_PRODUCER_YET: set[str] = set()
"""Event types nothing outside igor_p2p/authority/ constructs (keep exact: the test fails when
it is stale in either direction)."""


def _event_types() -> set[str]:
    return {
        name
        for name, obj in vars(events_module).items()
        if inspect.isclass(obj) and issubclass(obj, Event) and obj is not Event
    }


def _constructed_events() -> dict[str, set[str]]:
    """Event name -> modules outside igor_p2p/authority/ that construct it (imports resolved)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "igor_p2p").rglob("*.py")):
        if path.parent.name == "authority":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: dict[str, str] = {}
        modules: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "igor_p2p.authority.events":
                names.update({a.asname or a.name: a.name for a in node.names})
            elif isinstance(node, ast.ImportFrom) and node.module == "igor_p2p.authority":
                modules.update(a.asname or a.name for a in node.names if a.name == "events")
            elif isinstance(node, ast.Import):
                modules.update(
                    a.asname or a.name for a in node.names if a.name == "igor_p2p.authority.events"
                )
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in names:
                found.setdefault(names[func.id], set()).add(str(path.relative_to(ROOT)))
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in modules
            ):
                found.setdefault(func.attr, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_event_type_has_a_producer() -> None:
    produced = _constructed_events()
    without = {name for name in _event_types() if not produced.get(name)}
    assert without == NO_PRODUCER_YET


def test_every_event_type_can_reach_the_table() -> None:
    in_table = {event.__name__ for (_state, event) in TRANSITIONS}
    assert _event_types() <= in_table


# --------------------------------------------------------------------------- random sequences

REQUESTS = (OfferPrepared, OfferRefused, CommitReceived, AbortReceived)


class TableMachine(RuleBasedStateMachine):
    """Random event sequences, crashes and restores of node A's machine; check_step holds on
    every step, and the only errors are typed IllegalTransitions (plus KNOWN_BUGS)."""

    def __init__(self) -> None:
        super().__init__()
        self.d = Driven.fresh()
        self.snapshots: list[AuthorityRecord] = []
        self.fence = 0

    @initialize(name=st.sampled_from(sorted(SITUATIONS)))
    def begin(self, name: str) -> None:
        self.d = SITUATIONS[name]()
        self.snapshots = [self.d.durable]
        self.fence = self.d.machine.record.fence

    @rule(pick=st.integers(0, 10_000))
    def feed(self, pick: int) -> None:
        events = events_for(self.d.machine.record)
        event = events[pick % len(events)]
        trial = self.d.copy()
        key = (trial.machine.state, type(event).__name__, trial.machine.run.phase)
        before = trial.machine.record
        try:
            trial.feed(event)
        except IllegalTransition:
            assert trial.machine.record == before
            return
        except (TableInconsistency, ContractBroken):
            if key in KNOWN_BUGS:
                return  # reproduced by the xfail tests; the step is not taken
            raise
        self.d = trial
        if self.d.durable is not self.snapshots[-1]:
            self.snapshots.append(self.d.durable)

    @rule()
    def crash_and_restart(self) -> None:
        self.d = self.d.crash()

    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(pick=st.integers(0, 100))
    def restore_an_older_disk(self, pick: int) -> None:
        older = self.snapshots[pick % (len(self.snapshots) - 1)]
        self.d = self.d.crash(restore=older)
        self.fence = older.fence
        self.snapshots.append(older)

    @invariant()
    def durable_record_is_the_machine_record(self) -> None:
        assert self.d.machine.record == self.d.durable

    @invariant()
    def fence_never_decreases_except_by_a_restore(self) -> None:
        assert self.d.machine.record.fence >= self.fence
        self.fence = self.d.machine.record.fence

    @invariant()
    def ticking_needs_a_certificate_from_this_incarnation(self) -> None:
        m = self.d.machine
        if m.may_tick:
            assert m.state is S.ACTIVE_OWNER and m.run.phase is Phase.TICKING
            assert m.run.certified == m.record.epoch
        assert self.d.ticking == m.may_tick


TableMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_event_sequences_keep_the_table_contract = TableMachine.TestCase


# --------------------------------------------------------------------------- known core bugs


def _xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(
        strict=True, raises=(TableInconsistency, ContractBroken), reason=reason
    )


def test_proven_later_epoch_retires_a_ticking_owner() -> None:
    owner = _owner()
    actions = owner.feed(Superseded(start(3, THIRD)))
    assert _types(actions) == [StopTicking, PersistAuthority]
    assert owner.machine.state is S.RETIRED and not owner.ticking


def test_another_record_certified_for_the_owned_epoch_halts_a_ticking_owner() -> None:
    owner = _fed(CommitReceived(M1, start(3, A, H_OFFER)), base=_pending())  # ticking epoch 3
    actions = owner.feed(Superseded(start(3, THIRD)))
    assert _types(actions) == [StopTicking, PersistAuthority, EnterRecovery]
    assert owner.machine.record.reason is RecoveryReason.CONFLICTING_CUSTODY


def test_a_ticking_owner_named_owner_of_a_later_epoch_stops_and_enters_recovery() -> None:
    owner = _owner()
    owner.feed(Superseded(start(3, A, H_ELSE)))
    assert owner.machine.record.reason is RecoveryReason.RESTORED_COPY and not owner.ticking


def test_proof_that_the_next_epoch_is_ours_stops_the_runner_before_claiming_again() -> None:
    owner = _owner()
    actions = owner.feed(Superseded(start(2, A, H_OURS)))
    assert StopTicking in _types(actions)


def test_an_operator_can_halt_an_owner_waiting_for_its_claim() -> None:
    owner = _restarted(S.ACTIVE_OWNER)
    owner.feed(Halt("operator"))
    assert owner.machine.state is S.HALTED and owner.machine.run.claim is None


@pytest.mark.parametrize("phase", ["claiming", "handing off"])
def test_integrity_failure_halts_an_owner_that_is_not_ticking(phase: str) -> None:
    owner = (
        _restarted(S.ACTIVE_OWNER)
        if phase == "claiming"
        else _fed(BeginHandoff(TARGET.public_key, M1), base=_owner())
    )
    owner.feed(IntegrityFailure("checksum"))
    assert owner.machine.record.reason is RecoveryReason.INTEGRITY_FAILURE


@pytest.mark.parametrize("event", [BudgetExhausted(b"final"), TickFailed("trap", None)])
def test_a_tick_ending_after_a_handoff_began_leaves_the_decision_to_the_handoff(
    event: Event,
) -> None:
    # The runner reports the end asynchronously; the handoff carries the last committed state.
    # If it aborts, the agent ticks again and the same end is reported again.
    owner = _fed(BeginHandoff(TARGET.public_key, M1), base=_owner())
    assert _types(owner.feed(event)) == [LogRejected]
    assert owner.machine.state is S.ACTIVE_OWNER
    assert owner.machine.run.phase is Phase.HANDING_OFF


@pytest.mark.parametrize("event", [BudgetExhausted(b"final"), TickFailed("trap", None)])
def test_a_tick_ending_while_claiming_is_recorded(event: Event) -> None:
    owner = _restarted(S.ACTIVE_OWNER)
    assert _types(owner.feed(event)) == [PersistAuthority]
    assert owner.machine.state in (S.BUDGET_EXHAUSTED, S.HALTED)


@pytest.mark.parametrize("event_type", [ClaimStale, Superseded])
def test_a_handoff_ended_by_proven_custody_leaves_no_handoff_in_flight(event_type: type) -> None:
    source = _fed(BeginHandoff(TARGET.public_key, M1), base=_owner())
    source.feed(event_type(start(3, THIRD)))
    assert source.machine.run.handoff is None


def test_older_news_never_moves_the_fence_back() -> None:
    restored = _fed(ClaimStale(start(4, A, H_ELSE)), base=_restarted(S.ACTIVE_OWNER, epoch=2))
    assert restored.machine.record.fence == 4
    restored.feed(Superseded(start(3, THIRD)))
    assert restored.machine.record.fence == 4
    assert restored.machine.record.reason is RecoveryReason.RESTORED_COPY


def _a_restored_copy() -> Driven:
    """A copy restored to epoch 2 that the witnesses say owns epoch 4 (RECOVERY_REQUIRED with
    successor (4, us), fence 4)."""
    restored = _fed(ClaimStale(start(4, A, H_ELSE)), base=_restarted(S.ACTIVE_OWNER, epoch=2))
    assert restored.machine.record.fence == 4
    return restored


def test_a_restored_copy_behind_a_proven_epoch_cannot_be_forced() -> None:
    # Forcing it would claim epoch 3 below the fence: adopting a record chosen there, or
    # retiring to it, would tick below or lower the fence (witness-notes §6.3). Refused.
    restored = _a_restored_copy()
    assert _types(restored.feed(ForceRecover("op"))) == [LogRejected]
    assert not restored.machine.may_tick and restored.machine.run.claim is None
    assert restored.machine.record.fence == 4
    assert restored.machine.record.reason is RecoveryReason.RESTORED_COPY


def test_claim_results_for_a_restored_copy_never_tick_or_lower_the_fence() -> None:
    for result in (ClaimResolved(start(3, A, H_ELSE)), ClaimStale(start(3, THIRD))):
        restored = _a_restored_copy()
        restored.feed(result)  # no claim in progress: ignored
        assert not restored.machine.may_tick
        assert restored.machine.record.fence == 4


def test_an_adopted_record_of_ours_for_another_copy_is_a_restore_not_a_resume() -> None:
    owner = _restarted(S.ACTIVE_OWNER, epoch=2)
    owner.feed(ClaimResolved(start(3, A, H_ELSE)))  # ours, but not signed on the head we hold
    assert not owner.machine.may_tick
    assert owner.machine.record.reason is RecoveryReason.RESTORED_COPY


def test_imports_claim_before_ticking_unless_the_genesis_is_fresh() -> None:
    fresh = Driven.fresh()
    assert _types(fresh.feed(Imported(1, WITNESSES, (GENESIS,), True))) == [
        PersistAuthority,
        StartTicking,
        PublishClaim,
    ]
    chain = Driven.fresh()
    actions = chain.feed(Imported(4, WITNESSES, (GENESIS, b"more"), False))
    assert _types(actions) == [PersistAuthority, StartClaim]
    assert actions[1] == StartClaim(ClaimPurpose.RESUME, 5)
    assert actions[0].append == (GENESIS, b"more")  # type: ignore[attr-defined]
    assert not chain.machine.may_tick


def test_offer_refusals_are_answered_in_every_state() -> None:
    for name, build in SITUATIONS.items():
        d = build()
        actions = d.feed(OfferRefused(M1, RejectCode.BAD_CUSTODY, "no"))
        assert _types(actions) == [ReplyReject, LogRejected], name


def test_a_transfer_record_helper_sanity() -> None:
    # The world's starts are real: the record of "next, ours, for our head" names our head.
    from igor_p2p.authority.custody import decode_record

    assert decode_record(start(3, A, H_OURS).record).prev == H_OURS
    assert make_transfer(start(2, THIRD), A).to_epoch == 3
    assert H_ELSE != H_OURS


def test_no_rule_hides_behind_a_catch_all() -> None:
    for (state, event), rules in TRANSITIONS.items():
        for i, r in enumerate(rules):
            if r.guard is ALWAYS or r.guard is OTHERWISE:
                assert i == len(rules) - 1, (state, event.__name__, i)
