"""The target side of one migration: a pure session machine.

OFFER → ValidateOffer (injected; the session only sequences) → OfferChecked → persist
HANDOFF_PENDING (no ticking, no side effects: MC-6, MC-7) → (durable) ACK → COMMIT with a
transfer record that ``verify_transfer`` accepts → persist ACTIVE_OWNER at e+1 → (durable)
CONFIRM, StartTicking. ABORT while pending → discard. Timeout(COMMIT) → QueryStatus (FS-2).
A duplicate COMMIT after the commit re-sends CONFIRM (the authority table's rule).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    Action,
    CommitReceived,
    Event,
    LogRejected,
    MigrationContext,
    OfferPrepared,
    PendingDiscarded,
    QueryStatus,
    RejectReason,
    Restarted,
)
from igor_p2p.handoff.messages import Abort, Commit, Message, Offer, Reject
from igor_p2p.handoff.session import (
    ArmTimer,
    Close,
    Done,
    Durable,
    MessageReceived,
    OfferChecked,
    Outcome,
    Send,
    SessionEvent,
    Timeout,
    TimerKind,
    ValidateOffer,
)
from igor_p2p.handoff.writeahead import AuthorityPort, message_for


@dataclass(frozen=True)
class TargetConfig:
    agent: str
    self_peer: str
    source: str
    """The Noise-authenticated peer that opened the stream."""
    migration_id: bytes
    verify_transfer: Callable[[bytes, MigrationContext], bool]
    """Injected check of the COMMIT's transfer record against the pending migration."""


class TargetPhase(enum.StrEnum):
    IDLE = "IDLE"
    VALIDATING = "VALIDATING"
    PREPARING = "PREPARING"
    AWAIT_COMMIT = "AWAIT_COMMIT"
    COMMITTING = "COMMITTING"
    DONE = "DONE"


class TargetSession:
    def __init__(self, config: TargetConfig, port: AuthorityPort) -> None:
        self.config = config
        self.port = port
        self.phase = TargetPhase.IDLE
        self.outcome: Outcome | None = None
        self._offer: Offer | None = None
        self._aborted = False
        self._finish: tuple[int, Outcome] | None = None

    def restart(self) -> list[Action]:
        actions = self._feed(Restarted())
        if any(isinstance(a, QueryStatus) for a in actions):
            self.phase = TargetPhase.AWAIT_COMMIT
        else:
            self.phase = TargetPhase.DONE
        return actions

    def handle(self, event: SessionEvent) -> list[Action]:
        if isinstance(event, Durable):
            return self._translate(self.port.durable(event.version)) + self._maybe_finish()
        if isinstance(event, OfferChecked):
            return self._on_checked(event)
        if isinstance(event, Timeout):
            if event.kind is TimerKind.COMMIT and self._pending():
                return [QueryStatus(self.config.source, self.config.migration_id)]
            return []
        if isinstance(event, MessageReceived):
            return self._on_message(event.message)
        return []

    # -- internals

    def _pending(self) -> bool:
        ctx = self.port.machine.migration
        return (
            self.port.machine.state is AuthorityState.HANDOFF_PENDING
            and ctx is not None
            and ctx.migration_id == self.config.migration_id
        )

    def _feed(self, event: Event) -> list[Action]:
        return self._translate(self.port.handle(event))

    def _translate(self, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            message = message_for(
                action,
                agent=self.config.agent,
                sender=self.config.self_peer,
                machine=self.port.machine,
            )
            if message is None:
                out.append(action)
                continue
            out.append(Send(message))
            if self.phase is TargetPhase.PREPARING and message.TYPE.value == "ACK":
                self.phase = TargetPhase.AWAIT_COMMIT
                out.append(ArmTimer(TimerKind.COMMIT))
        return out

    def _finish_after_write(self, outcome: Outcome) -> None:
        self._finish = (self.port.machine.record.version, outcome)

    def _maybe_finish(self) -> list[Action]:
        if self._finish is None:
            return []
        version, outcome = self._finish
        if self.port.machine.durable_record.version < version:
            return []
        self._finish = None
        self.phase = TargetPhase.DONE
        self.outcome = outcome
        return [Done(outcome)]

    def _done(self, outcome: Outcome) -> list[Action]:
        self.phase = TargetPhase.DONE
        self.outcome = outcome
        return [Close(), Done(outcome)]

    def _on_message(self, message: Message) -> list[Action]:
        if (
            message.sender != self.config.source
            or getattr(message, "agent", None) != self.config.agent
        ):
            return [LogRejected(RejectReason.NOT_APPLICABLE, f"{message.TYPE} from wrong peer")]
        if getattr(message, "migration_id", None) != self.config.migration_id:
            return [
                LogRejected(RejectReason.UNKNOWN_MIGRATION, f"{message.TYPE} for other migration")
            ]
        if isinstance(message, Offer):
            return self._on_offer(message)
        if isinstance(message, Commit):
            return self._on_commit(message)
        if isinstance(message, Abort):
            self._aborted = True
            before = self._pending()
            actions = self._feed(PendingDiscarded(message.migration_id))
            if before and self.port.machine.state is AuthorityState.RETIRED:
                self._finish_after_write(Outcome.DISCARDED)
            return actions + self._maybe_finish()
        return [LogRejected(RejectReason.NOT_APPLICABLE, f"{message.TYPE} is not for a target")]

    def _on_offer(self, offer: Offer) -> list[Action]:
        if self.phase is TargetPhase.IDLE:
            self._offer = offer
            self.phase = TargetPhase.VALIDATING
            return [ValidateOffer(offer)]
        if self.phase is TargetPhase.VALIDATING or self._offer is None:
            return []
        if offer.epoch != self._offer.epoch:
            return [LogRejected(RejectReason.STALE_EPOCH, "duplicate OFFER with another epoch")]
        if not self._pending():
            return [LogRejected(RejectReason.NOT_APPLICABLE, f"duplicate OFFER in {self.phase}")]
        # Duplicate OFFER while pending: the table re-sends ACK.
        return self._feed(self._prepared_event(self._offer, None))

    def _prepared_event(self, offer: Offer, digest: bytes | None) -> OfferPrepared:
        return OfferPrepared(self.config.source, offer.migration_id, offer.epoch, digest)

    def _on_checked(self, event: OfferChecked) -> list[Action]:
        if self.phase is not TargetPhase.VALIDATING or self._offer is None:
            return []
        if self._aborted:
            return self._done(Outcome.ABORTED)
        verdict = event.verdict
        if not verdict.ok:
            code = verdict.code
            assert code is not None, "a failed verdict names its reject code"
            reject = Reject(
                self.config.self_peer, self.config.agent, self.config.migration_id, code
            )
            return [Send(reject), *self._done(Outcome.REJECTED)]
        self.phase = TargetPhase.PREPARING
        actions = self._feed(self._prepared_event(self._offer, verdict.prepared_digest))
        if not self._pending():
            return actions + self._done(Outcome.REJECTED)
        return actions

    def _on_commit(self, commit: Commit) -> list[Action]:
        machine = self.port.machine
        ctx = machine.migration
        if ctx is None or ctx.migration_id != commit.migration_id:
            return [LogRejected(RejectReason.UNKNOWN_MIGRATION, "COMMIT without a prepared offer")]
        if not self.config.verify_transfer(commit.transfer_record, ctx):
            return [LogRejected(RejectReason.NOT_APPLICABLE, "COMMIT transfer record rejected")]
        was_pending = self._pending()
        actions = self._feed(
            CommitReceived(commit.migration_id, ctx.offer_epoch + 1, commit.transfer_record)
        )
        if was_pending and machine.state is AuthorityState.ACTIVE_OWNER:
            self.phase = TargetPhase.COMMITTING
            self._finish_after_write(Outcome.COMMITTED)
        return actions + self._maybe_finish()
