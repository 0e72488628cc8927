"""Source and target sessions driven step by step through the simulator's driver."""

from __future__ import annotations

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import MigrationPhase, PersistAuthority, StopTicking
from igor_p2p.handoff.messages import Ack, Commit, Confirm, Offer, decode
from igor_p2p.handoff.session import Outcome, Send

from .sim import A, B, Sim

S = AuthorityState


def run_until(sim: Sim, predicate, limit: int = 100) -> None:
    """Fault-free steps (first enabled each time) until ``predicate(sim)`` holds."""
    for _ in range(limit):
        if predicate(sim):
            return
        assert sim.step(0, faults=False), "stuck"
    raise AssertionError("predicate never held")


def in_flight(sim: Sim, kind: type) -> bool:
    return any(isinstance(decode(frame), kind) for _, frame in sim.net)


def drop_all(sim: Sim) -> None:
    sim.net.clear()


def test_every_send_is_preceded_by_its_persist() -> None:
    sim = Sim()
    sim.heal()  # Sim._send checks the durable record before every message
    for node in sim.nodes.values():
        persisted = False
        for action in node.log:
            if isinstance(action, PersistAuthority):
                persisted = True
            if isinstance(action, Send) and not isinstance(action.message, (Offer,)):
                assert persisted
    log = sim.nodes[A].log
    first_send = next(i for i, a in enumerate(log) if isinstance(a, Send))
    assert isinstance(log[0], StopTicking) and isinstance(log[1], PersistAuthority)
    assert first_send > 1


def test_source_stops_ticking_when_the_handoff_begins() -> None:
    sim = Sim()
    assert not sim.nodes[A].ticking


def test_timeout_before_decision_resumes_source() -> None:
    sim = Sim()
    run_until(sim, lambda s: in_flight(s, Offer))
    drop_all(sim)
    sim.apply(("timeout", A, "ACK"))
    sim.heal()
    assert sim.nodes[A].disk.state is S.ACTIVE_OWNER and sim.nodes[A].ticking
    assert sim.nodes[A].session.outcome is Outcome.ABORTED


def test_reject_before_decision_resumes_source() -> None:
    sim = Sim()
    run_until(sim, lambda s: s.nodes[B].offer_to_validate is not None)
    sim.apply(("validate", B, "reject"))
    sim.heal()
    assert sim.nodes[A].disk.state is S.ACTIVE_OWNER and sim.nodes[A].ticking
    assert sim.nodes[B].disk is None


def test_missing_confirm_leaves_both_halted() -> None:
    sim = Sim()
    run_until(sim, lambda s: in_flight(s, Commit))
    drop_all(sim)  # COMMIT lost: source retired-unconfirmed, target pending
    while sim.nodes[A].unflushed or sim.nodes[B].unflushed:
        sim.step(0, faults=False)
    assert sim.nodes[A].disk.state is S.RETIRED
    assert sim.nodes[A].disk.migration.phase is MigrationPhase.DECIDED
    assert sim.nodes[B].disk.state is S.HANDOFF_PENDING
    assert not sim.nodes[A].ticking and not sim.nodes[B].ticking
    sim.heal()  # the recover exchange settles it: resend COMMIT / commit
    assert sim.nodes[B].disk.state is S.ACTIVE_OWNER and sim.nodes[B].ticking
    assert sim.nodes[A].disk.migration.phase is MigrationPhase.CONFIRMED


def test_duplicate_commit_is_idempotent() -> None:
    sim = Sim()
    run_until(sim, lambda s: in_flight(s, Commit))
    commit = next(item for item in sim.net if isinstance(decode(item[1]), Commit))
    sim.net.append(commit)
    sim.heal()
    target = sim.nodes[B]
    confirms = [a for a in target.log if isinstance(a, Send) and isinstance(a.message, Confirm)]
    persists = [a for a in target.log if isinstance(a, PersistAuthority)]
    assert len(confirms) == 2 and len(persists) == 2  # PENDING, ACTIVE_OWNER; no third write
    assert target.disk.state is S.ACTIVE_OWNER and target.disk.epoch == 2


def test_duplicate_ack_resends_commit_without_a_new_decision() -> None:
    sim = Sim()
    run_until(sim, lambda s: in_flight(s, Ack))
    ack = next(item for item in sim.net if isinstance(decode(item[1]), Ack))
    sim.net.append(ack)
    sim.heal()
    source = sim.nodes[A]
    commits = [a for a in source.log if isinstance(a, Send) and isinstance(a.message, Commit)]
    assert len(commits) == 2
    assert source.disk.state is S.RETIRED and sim.nodes[B].disk.state is S.ACTIVE_OWNER


def test_source_crash_before_decision_keeps_authority() -> None:
    sim = Sim()
    run_until(sim, lambda s: in_flight(s, Ack))
    sim.apply(("crash", A))
    sim.apply(("restart", A))
    sim.heal()
    assert sim.nodes[A].disk.state is S.ACTIVE_OWNER and sim.nodes[A].ticking
    assert sim.nodes[B].disk.state is S.RETIRED  # discarded its pending copy


def test_target_crash_after_prepare_is_settled_by_resolution() -> None:
    sim = Sim()
    run_until(sim, lambda s: in_flight(s, Commit))
    sim.apply(("crash", B))
    drop_all(sim)
    sim.apply(("restart", B))
    sim.heal()
    assert sim.nodes[B].disk.state is S.ACTIVE_OWNER and sim.nodes[B].ticking
    assert sim.nodes[A].disk.state is S.RETIRED


def test_stale_replayed_offer_after_the_migration_is_rejected() -> None:
    sim = Sim()
    run_until(sim, lambda s: in_flight(s, Offer))
    offer = next(item for item in sim.net if isinstance(decode(item[1]), Offer))
    sim.heal()
    sim.net.append(offer)  # replay after B owns epoch 2
    sim.heal()
    assert sim.nodes[B].disk.state is S.ACTIVE_OWNER and sim.nodes[B].disk.epoch == 2
    assert sim.nodes[A].disk.state is S.RETIRED
