from __future__ import annotations

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    ABSENT,
    AbortReason,
    AuthorityMachine,
    BeginHandoff,
    DecideRetire,
    HandoffAborted,
    Launched,
    OfferPrepared,
    RecoveryReason,
    ResolutionKind,
)
from igor_p2p.handoff.messages import StatusReply
from igor_p2p.handoff.resolution import resolve, status_reply

M = b"\x05" * 16
OTHER = b"\x06" * 16
S = AuthorityState


def pending_target():
    m = AuthorityMachine()
    m.handle(OfferPrepared("A", M, 1, bytes(32)))
    return m.record


def unconfirmed_source():
    m = AuthorityMachine()
    m.handle(Launched(1))
    m.handle(BeginHandoff("B", M))
    m.handle(DecideRetire(M, 1, b"record", b"d"))
    return m.record


def reply(sender, state, epoch, mid=None, record=None):
    return StatusReply(sender, "agent", state, epoch, mid, record, None)


def test_pending_target_commits_when_source_retired_to_it() -> None:
    out = resolve(pending_target(), reply("A", S.RETIRED, 1, M, b"record"))
    assert (
        out is not None and out.kind is ResolutionKind.COMMIT and out.transfer_record == b"record"
    )


def test_pending_target_discards_when_source_still_owns_the_epoch() -> None:
    out = resolve(pending_target(), reply("A", S.ACTIVE_OWNER, 1, M))
    assert out is not None and out.kind is ResolutionKind.DISCARD


def test_pending_target_waits_while_source_has_not_decided() -> None:
    out = resolve(pending_target(), reply("A", S.HANDOFF_INITIATED, 1, M))
    assert out is not None and out.kind is ResolutionKind.WAIT


def test_source_that_lost_state_puts_target_in_recovery() -> None:
    out = resolve(pending_target(), reply("A", ABSENT, 0))
    assert out is not None and out.kind is ResolutionKind.RECOVERY
    assert out.reason is RecoveryReason.PEER_LOST_STATE


def test_stale_source_reply_puts_target_in_recovery() -> None:
    t = AuthorityMachine()
    t.handle(OfferPrepared("A", M, 3))
    out = resolve(t.record, reply("A", S.ACTIVE_OWNER, 2, None))
    assert out is not None and out.reason is RecoveryReason.PEER_STALE


def test_unconfirmed_source_is_confirmed_by_owner_at_next_epoch() -> None:
    out = resolve(unconfirmed_source(), reply("B", S.ACTIVE_OWNER, 2, M))
    assert out is not None and out.kind is ResolutionKind.CONFIRMED


def test_unconfirmed_source_resends_commit_to_pending_target() -> None:
    out = resolve(unconfirmed_source(), reply("B", S.HANDOFF_PENDING, 1, M))
    assert out is not None and out.kind is ResolutionKind.RESEND_COMMIT


def test_target_that_lost_state_after_decision_enters_recovery() -> None:
    out = resolve(unconfirmed_source(), reply("B", ABSENT, 0))
    assert out is not None and out.kind is ResolutionKind.RECOVERY
    assert out.reason is RecoveryReason.PEER_LOST_STATE


def test_contradictory_reply_enters_recovery() -> None:
    out = resolve(unconfirmed_source(), reply("B", S.RETIRED, 1, M))  # target discarded?!
    assert out is not None and out.reason is RecoveryReason.PEER_CONTRADICTS
    out = resolve(pending_target(), reply("A", S.RETIRED, 1, M, None))  # retired, no record
    assert out is not None and out.kind is ResolutionKind.RECOVERY


def test_reply_from_another_peer_is_ignored() -> None:
    assert resolve(pending_target(), reply("Mallory", S.RETIRED, 1, M, b"r")) is None


def test_aborted_source_reply_lets_target_discard_and_status_reply_round_trips() -> None:
    m = AuthorityMachine()
    m.handle(Launched(1))
    m.handle(BeginHandoff("B", M))
    m.handle(HandoffAborted(M, AbortReason.TIMEOUT))
    answer = status_reply(m.record, agent="agent", sender="A")
    assert answer.transfer_record is None and answer.state is S.ACTIVE_OWNER
    out = resolve(pending_target(), answer)
    assert out is not None and out.kind is ResolutionKind.DISCARD
    decided = status_reply(unconfirmed_source(), agent="agent", sender="A")
    assert decided.transfer_record == b"record"
    out = resolve(pending_target(), decided)
    assert out is not None and out.kind is ResolutionKind.COMMIT
    assert resolve(pending_target(), reply("A", S.ACTIVE_OWNER, 1, OTHER)).kind is (
        ResolutionKind.DISCARD
    )
