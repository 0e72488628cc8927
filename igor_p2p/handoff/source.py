"""The source side of one migration: a pure session machine.

The session owns message sequencing only; every authority change goes through the
:class:`~igor_p2p.authority.table.AuthorityMachine` behind an :class:`AuthorityPort`, so the
authority table stays the single owner of the rules. Sequence:

``start()`` → StopTicking, persist HANDOFF_INITIATED → (durable) CommitHandoffCheckpoint →
(checkpoint committed) OpenStream → (stream opened) OFFER → ACK → persist RETIRED + transfer
record (the decision) → (durable) COMMIT → CONFIRM → persist confirmed → Done(TRANSFERRED).
REJECT or Timeout(ACK) before the decision → persist ACTIVE_OWNER → ABORT, StartTicking.
Timeout(CONFIRM) → QueryStatus (the recover exchange settles it; nobody ticks meanwhile).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    AbortReason,
    Action,
    BeginHandoff,
    ConfirmReceived,
    DecideRetire,
    Event,
    HandoffAborted,
    IntegrityFailure,
    LogRejected,
    MigrationPhase,
    QueryStatus,
    RejectReason,
    Restarted,
    SendOffer,
)
from igor_p2p.handoff.messages import Ack, Commit, Confirm, Message, Offer, Reject
from igor_p2p.handoff.session import (
    ArmTimer,
    Close,
    CommitHandoffCheckpoint,
    Done,
    Durable,
    HandoffCheckpointCommitted,
    HandoffPayload,
    MessageReceived,
    OpenStream,
    Outcome,
    Send,
    SessionEvent,
    StreamOpened,
    Timeout,
    TimerKind,
)
from igor_p2p.handoff.writeahead import AuthorityPort, message_for


@dataclass(frozen=True)
class TransferTerms:
    """What the source signs at the decision point."""

    agent: str
    migration_id: bytes
    epoch: int
    from_node: str
    to_node: str
    head_digest: bytes


@dataclass(frozen=True)
class SignedTransfer:
    record: bytes
    digest: bytes


@dataclass(frozen=True)
class SourceConfig:
    agent: str
    self_peer: str
    target: str
    migration_id: bytes
    sign_transfer: Callable[[TransferTerms], SignedTransfer]
    """Injected signer (node key); pure from the session's point of view."""


class SourcePhase(enum.StrEnum):
    IDLE = "IDLE"
    PREPARING = "PREPARING"
    CHECKPOINTING = "CHECKPOINTING"
    OPENING = "OPENING"
    AWAIT_ACK = "AWAIT_ACK"
    DECIDING = "DECIDING"
    AWAIT_CONFIRM = "AWAIT_CONFIRM"
    ABORTING = "ABORTING"
    DONE = "DONE"


_BEFORE_DECISION = (
    SourcePhase.PREPARING,
    SourcePhase.CHECKPOINTING,
    SourcePhase.OPENING,
    SourcePhase.AWAIT_ACK,
)


class SourceSession:
    def __init__(self, config: SourceConfig, port: AuthorityPort) -> None:
        self.config = config
        self.port = port
        self.phase = SourcePhase.IDLE
        self.outcome: Outcome | None = None
        self._payload: HandoffPayload | None = None
        self._finish: tuple[int, Outcome] | None = None

    # -- entry points

    def start(self) -> list[Action]:
        """Begin the handoff (the driver calls this at a tick boundary)."""
        actions = self._feed(BeginHandoff(self.config.target, self.config.migration_id))
        if self.port.machine.state is AuthorityState.HANDOFF_INITIATED and self._mine():
            self.phase = SourcePhase.PREPARING
            return [*actions, ArmTimer(TimerKind.ACK)]
        self.phase = SourcePhase.DONE
        self.outcome = Outcome.REFUSED
        return [*actions, Done(Outcome.REFUSED)]

    def restart(self) -> list[Action]:
        """After a crash: the machine was restored from the last durable record."""
        before = self.port.machine.state
        actions = self._feed(Restarted())
        if before is AuthorityState.HANDOFF_INITIATED:
            self.phase = SourcePhase.ABORTING
            self._finish_after_write(Outcome.ABORTED)
        elif any(isinstance(a, QueryStatus) for a in actions):
            self.phase = SourcePhase.AWAIT_CONFIRM
        else:
            self.phase = SourcePhase.DONE
        return actions + self._maybe_finish()

    def handle(self, event: SessionEvent) -> list[Action]:
        if isinstance(event, Durable):
            return self._translate(self.port.durable(event.version)) + self._maybe_finish()
        if isinstance(event, HandoffCheckpointCommitted):
            if self.phase is not SourcePhase.CHECKPOINTING:
                return []
            self._payload = event.payload
            self.phase = SourcePhase.OPENING
            return [OpenStream(self.config.target)]
        if isinstance(event, StreamOpened):
            if self.phase is not SourcePhase.OPENING or self._payload is None:
                return []
            self.phase = SourcePhase.AWAIT_ACK
            return [Send(self._offer(self._payload))]
        if isinstance(event, Timeout):
            return self._on_timeout(event.kind)
        if isinstance(event, MessageReceived):
            return self._on_message(event.message)
        return []

    # -- internals

    def _mine(self) -> bool:
        ctx = self.port.machine.migration
        return ctx is not None and ctx.migration_id == self.config.migration_id

    def _feed(self, event: Event) -> list[Action]:
        return self._translate(self.port.handle(event))

    def _translate(self, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            if isinstance(action, SendOffer):
                if self.phase is SourcePhase.PREPARING:
                    self.phase = SourcePhase.CHECKPOINTING
                    out.append(CommitHandoffCheckpoint(action.epoch))
                continue
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
            if self.phase is SourcePhase.DECIDING and isinstance(message, Commit):
                self.phase = SourcePhase.AWAIT_CONFIRM
                out.append(ArmTimer(TimerKind.CONFIRM))
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
        self.phase = SourcePhase.DONE
        self.outcome = outcome
        return [Close(), Done(outcome)]

    def _offer(self, payload: HandoffPayload) -> Offer:
        return Offer(
            sender=self.config.self_peer,
            agent=self.config.agent,
            epoch=self.port.machine.epoch,
            migration_id=self.config.migration_id,
            checkpoint=payload.checkpoint,
            lineage=payload.lineage,
            wasm_hash=payload.wasm_hash,
            manifest=payload.manifest,
            wasm=payload.wasm,
        )

    def _abort(self, reason: AbortReason) -> list[Action]:
        actions = self._feed(HandoffAborted(self.config.migration_id, reason))
        if self.port.machine.state is AuthorityState.ACTIVE_OWNER:
            self.phase = SourcePhase.ABORTING
            self._finish_after_write(Outcome.ABORTED)
        return actions + self._maybe_finish()

    def _on_timeout(self, kind: TimerKind) -> list[Action]:
        if kind is TimerKind.ACK and self.phase in _BEFORE_DECISION:
            return self._abort(AbortReason.TIMEOUT)
        if kind is TimerKind.CONFIRM and self._unconfirmed():
            return [QueryStatus(self.config.target, self.config.migration_id)]
        return []

    def _unconfirmed(self) -> bool:
        ctx = self.port.machine.durable_record.migration
        return (
            self.port.machine.state is AuthorityState.RETIRED
            and ctx is not None
            and ctx.migration_id == self.config.migration_id
            and ctx.phase is MigrationPhase.DECIDED
        )

    def _reject(self, reason: RejectReason, detail: str) -> list[Action]:
        return [LogRejected(reason, detail)]

    def _on_message(self, message: Message) -> list[Action]:
        if (
            message.sender != self.config.target
            or getattr(message, "agent", None) != self.config.agent
        ):
            return self._reject(RejectReason.NOT_APPLICABLE, f"{message.TYPE} from wrong peer")
        if getattr(message, "migration_id", None) != self.config.migration_id:
            return self._reject(
                RejectReason.UNKNOWN_MIGRATION, f"{message.TYPE} for other migration"
            )
        if isinstance(message, Ack):
            return self._on_ack(message)
        if isinstance(message, Reject):
            if self.phase in _BEFORE_DECISION:
                return self._abort(AbortReason.REJECTED)
            return self._reject(
                RejectReason.NOT_APPLICABLE, f"REJECT {message.code} in {self.phase}"
            )
        if isinstance(message, Confirm):
            was_decided = self._unconfirmed()
            actions = self._feed(ConfirmReceived(message.migration_id, message.new_epoch))
            if (
                was_decided
                and self.port.machine.migration is not None
                and (self.port.machine.migration.phase is MigrationPhase.CONFIRMED)
            ):
                self._finish_after_write(Outcome.TRANSFERRED)
            return actions + self._maybe_finish()
        return self._reject(RejectReason.NOT_APPLICABLE, f"{message.TYPE} is not for a source")

    def _on_ack(self, ack: Ack) -> list[Action]:
        machine = self.port.machine
        if self.phase is SourcePhase.AWAIT_ACK:
            assert self._payload is not None
            if ack.epoch != machine.epoch:
                return self._reject(RejectReason.STALE_EPOCH, "ACK for another epoch")
            if ack.prepared_digest != self._payload.head_digest:
                # MC-9: the target prepared a different checkpoint than the one offered.
                return self._feed(IntegrityFailure("target prepared a different head digest"))
            signed = self.config.sign_transfer(
                TransferTerms(
                    agent=self.config.agent,
                    migration_id=self.config.migration_id,
                    epoch=machine.epoch,
                    from_node=self.config.self_peer,
                    to_node=self.config.target,
                    head_digest=self._payload.head_digest,
                )
            )
            decision = DecideRetire(ack.migration_id, ack.epoch, signed.record, signed.digest)
            self.phase = SourcePhase.DECIDING
            actions = self._feed(decision)
            if machine.state is not AuthorityState.RETIRED:
                self.phase = SourcePhase.AWAIT_ACK
            return actions
        if machine.state is AuthorityState.HANDOFF_INITIATED:
            return self._reject(RejectReason.NOT_APPLICABLE, f"ACK before the OFFER ({self.phase})")
        # Duplicate or late ACK: the table re-sends COMMIT (decided) or ABORT (aborted).
        ctx = machine.migration
        record = ctx.transfer_record if ctx is not None and ctx.transfer_record else b""
        return self._feed(DecideRetire(ack.migration_id, ack.epoch, record, b""))
