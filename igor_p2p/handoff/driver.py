"""The trio driver of the handoff: streams, timers, the store and the scheduler around the pure
source/target sessions and the authority table.

Every authority change goes through an :class:`~igor_p2p.handoff.writeahead.AuthorityPort`
rebuilt from the store's durable row: the driver executes the actions it returns, in order, and
reports each persist back as ``Durable`` only after the store has fsynced it, so a message that
depends on a write is never sent before that write is durable. One session per agent at a time
runs on a node (a per-agent lock); an OFFER for an agent that is busy here is refused (FS-3).

Protocols:
- ``/igor/migrate/1.0.0``: OFFER → ACK | REJECT, COMMIT → CONFIRM, ABORT (one stream).
- ``/igor/recover/1.0.0``: STATUS_QUERY → STATUS_REPLY, answered from the durable row.
- ``/igor/module/1.0.0``: fetch a module by hash from a peer that holds it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from igor_p2p.agent.environment import ResumeReason
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    ABSENT,
    Action,
    AuthorityMachine,
    CheckClaims,
    ClaimsChecked,
    ConflictingClaim,
    DiscardPending,
    EnterRecovery,
    Event,
    ForceRecover,
    HigherEpochSeen,
    IllegalTransition,
    LogRejected,
    MigrationContext,
    PersistAuthority,
    PublishClaim,
    QueryStatus,
    RecordFence,
    ResolutionKind,
    Restarted,
    StartTicking,
    StopTicking,
)
from igor_p2p.authority.table import AuthorityRecord as MachineRecord
from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.handoff.crashpoints import crash_point
from igor_p2p.handoff.messages import (
    MAX_FRAME_BYTES,
    Message,
    Offer,
    StatusQuery,
    StatusReply,
    decode,
    encode,
)
from igor_p2p.handoff.records import to_machine, to_store
from igor_p2p.handoff.resolution import resolve, status_query, status_reply
from igor_p2p.handoff.session import (
    ArmTimer,
    Close,
    CommitHandoffCheckpoint,
    Done,
    Durable,
    HandoffCheckpointCommitted,
    HandoffPayload,
    MessageReceived,
    OfferChecked,
    OfferVerdict,
    OpenStream,
    Outcome,
    Send,
    SessionEvent,
    StreamOpened,
    Timeout,
    ValidateOffer,
)
from igor_p2p.handoff.source import SignedTransfer, SourceConfig, SourceSession, TransferTerms
from igor_p2p.handoff.target import TargetConfig, TargetSession
from igor_p2p.handoff.validate import OfferRefused, PreparedCopy, TargetLimits, check_offer
from igor_p2p.handoff.writeahead import AuthorityPort, message_for
from igor_p2p.lineage.custody import TransferRecord, UnsignedForcedRecovery, UnsignedTransferRecord
from igor_p2p.lineage.entries import LineageEntry, decode_entry
from igor_p2p.lineage.envelope import CheckpointKind
from igor_p2p.logs import get_logger
from igor_p2p.net.errors import NetError
from igor_p2p.net.framing import read_frame, read_message, write_frame, write_message
from igor_p2p.net.handlers import set_guarded_handler
from igor_p2p.net.keys import public_key_from_peer_id
from igor_p2p.runtime.ledger import append_ops
from igor_p2p.runtime.loader import (
    LineageRejected,
    NotOwner,
    VerifiedCopy,
    resume,
    resume_verified,
)
from igor_p2p.store.ops import Op, PutManifest, PutModule, PutTombstone, RaiseFence
from igor_p2p.store.records import AuthorityRecord as StoreRecord
from igor_p2p.store.records import FirstRecord, LineageRow
from igor_p2p.store.sqlite import Store

if TYPE_CHECKING:
    from igor_p2p.node.node import Node

log = get_logger(__name__)

MIGRATE_PROTOCOL = "/igor/migrate/1.0.0"
RECOVER_PROTOCOL = "/igor/recover/1.0.0"
MODULE_PROTOCOL = "/igor/module/1.0.0"
MAX_RECOVER_FRAME = 64 * 1024
MAX_MODULE_FRAME = 33 * 1024 * 1024
IO_TIMEOUT_S = 10.0


class MigrationFailed(IgorError):
    """A migration did not transfer the agent (its outcome says why)."""


class AgentBusy(IgorError):
    """Another handoff or recovery of this agent is in progress on this node."""


@dataclass
class _Run:
    """One session being driven: its event queue, stream and bookkeeping."""

    did: str
    port: AuthorityPort
    session: SourceSession | TargetSession | None
    peer: str
    send_events: trio.MemorySendChannel[SessionEvent | Event]
    stream: INetStream | None = None
    outcome: Outcome | None = None
    prepared: PreparedCopy | None = None
    nursery: trio.Nursery | None = None
    full_lineage: bool = False
    """Source: offer the whole lineage instead of the part the target is not known to hold."""
    unresolved: bool = False
    """The session ended waiting for the recover exchange (the background resolver settles)."""


_HANDOFF_OUTCOME_STEPS = {
    (AuthorityState.HANDOFF_INITIATED, AuthorityState.RETIRED): "retired",
    (AuthorityState.HANDOFF_PENDING, AuthorityState.ACTIVE_OWNER): "committed",
    (AuthorityState.HANDOFF_INITIATED, AuthorityState.ACTIVE_OWNER): "aborted",
    (AuthorityState.HANDOFF_PENDING, AuthorityState.RETIRED): "aborted",
}
"""Handoff history steps implied by an authority transition (source retired, target committed)."""


class HandoffDriver:
    """Drives migrations, answers peers, and settles unresolved handoffs for one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._locks: dict[str, trio.Lock] = {}
        self.fencing = not node.config.test_disable_fencing

    # ------------------------------------------------------------ wiring

    @property
    def parts(self):  # type: ignore[no-untyped-def]
        return self.node.running

    @property
    def services(self):  # type: ignore[no-untyped-def]
        return self.node.running.services

    @property
    def self_peer(self) -> str:
        return str(self.services.peer_id)

    def lock(self, did: str) -> trio.Lock:
        return self._locks.setdefault(did, trio.Lock())

    async def run(self, node: Node) -> None:
        """Node extension: register the protocols, settle what a crash left, keep resolving."""
        host = self.parts.host
        logger = logging.getLogger("igor_p2p.handoff")
        set_guarded_handler(host, MIGRATE_PROTOCOL, self._serve_migrate, log=logger)
        set_guarded_handler(host, RECOVER_PROTOCOL, self._serve_recover, log=logger)
        set_guarded_handler(host, MODULE_PROTOCOL, self._serve_module, log=logger)
        while True:
            await trio.sleep(node.config.recover_interval_s)
            await self.resolve_all()

    # ------------------------------------------------------------ persistence

    async def _row(self, did: str) -> tuple[StoreRecord | None, int]:
        return await self.services.committer.read_inline(lambda s: (s.authority(did), s.fence(did)))

    async def _port(self, did: str) -> AuthorityPort:
        row, fence = await self._row(did)
        return AuthorityPort(AuthorityMachine.restore(to_machine(row, fence)))

    async def _persist(self, run: _Run, record: MachineRecord) -> None:
        """Make ``record`` durable, with the lineage entries it depends on, in one transaction."""
        did = run.did
        row, _ = await self._row(did)
        ops: list[Op] = []
        entries: list[LineageEntry] = []
        previous_tick = 0
        if run.prepared is not None and record.state is AuthorityState.HANDOFF_PENDING:
            prepared = run.prepared
            entries = (
                list(prepared.entries)
                if row is None or row.head != prepared.checkpoint.digest()
                else []
            )
            previous_tick = prepared.previous_tick
            ops += [PutModule(prepared.wasm), PutManifest(prepared.manifest)]
            if row is None:
                ck = prepared.checkpoint
                row = StoreRecord.first(
                    did,
                    FirstRecord(
                        state=AuthorityState.HANDOFF_PENDING,
                        epoch=ck.epoch,
                        owner=ck.owner,
                        wasm_hash=ck.wasm_hash,
                        manifest_hash=ck.manifest_hash,
                    ),
                )
        if row is None:
            raise MigrationFailed(f"no stored row for {did}")
        ctx = record.migration
        if (
            ctx is not None
            and ctx.transfer_record
            and record.state
            in (
                AuthorityState.RETIRED,
                AuthorityState.ACTIVE_OWNER,
            )
        ):
            transfer = decode_entry(ctx.transfer_record)
            if transfer.digest() != row.head and isinstance(transfer, TransferRecord):
                held = await self.services.committer.read(lambda s: s.lineage_index(did))
                if transfer.digest() not in {r.digest for r in held}:
                    entries.append(transfer)
                    previous_tick = held[-1].tick if held else 0
        owner = self._owner_for(record, row)
        new_row = to_store(record, row, owner)
        more, _ = (
            append_ops(new_row, entries, previous_tick=previous_tick) if entries else ([], new_row)
        )
        if entries:
            ops += more
        else:
            from igor_p2p.store.ops import PutAuthority

            ops += [RaiseFence(did, new_row.epoch, "own authority record"), PutAuthority(new_row)]
        ops.append(RaiseFence(did, record.fence, "authority machine fence"))
        if (
            ctx is not None
            and record.state is AuthorityState.RETIRED
            and ctx.transfer_record is not None
            and ctx.peer
        ):
            ops.append(PutTombstone(did, record.epoch + 1, ctx.peer))
        await self.services.committer.commit(ops)
        self._history_authority(did, row.state, record, ctx)

    def _owner_for(self, record: MachineRecord, row: StoreRecord) -> bytes:
        ctx = record.migration
        if record.state is AuthorityState.ACTIVE_OWNER:
            return self.services.key.public_key
        if record.state is AuthorityState.RETIRED and ctx is not None and ctx.transfer_record:
            return public_key_from_peer_id(ctx.peer)
        if record.state is AuthorityState.HANDOFF_PENDING and ctx is not None:
            return public_key_from_peer_id(ctx.peer)
        return row.owner

    def _history_authority(
        self, did: str, before: AuthorityState, record: MachineRecord, ctx: MigrationContext | None
    ) -> None:
        state = AuthorityState.RETIRED if record.state is ABSENT else record.state
        self.services.history.emit(
            "authority",
            agent=did,
            epoch=record.epoch,
            from_state=before.value,
            to_state=state.value,
            reason=record.detail or (record.reason.value if record.reason else ""),
        )
        step = _HANDOFF_OUTCOME_STEPS.get((before, state))
        if step is not None and ctx is not None:  # docs/history.md: retired/committed/aborted
            self.services.history.emit(
                "handoff",
                agent=did,
                epoch=record.epoch,
                migration_id=ctx.migration_id.hex(),
                step=step,
                peer=ctx.peer,
                detail="",
            )

    # ------------------------------------------------------------ executing actions

    async def _execute(self, run: _Run, actions: list[Action]) -> None:
        # Once a batch is released its persists are durable: start ticking before telling the
        # peer, so an owner that confirmed is already ticking when the confirm arrives.
        starts = [a for a in actions if isinstance(a, StartTicking)]
        if starts and not any(isinstance(a, PersistAuthority) for a in actions):
            actions = starts + [a for a in actions if not isinstance(a, StartTicking)]
        for action in actions:
            await self._execute_one(run, action)

    async def _execute_one(self, run: _Run, action: Action) -> None:
        did = run.did
        history = self.services.history
        if isinstance(action, PersistAuthority):
            state = action.record.state.value
            crash_point(f"{self._role(run)}:before_persist:{state}")
            await self._persist(run, action.record)
            crash_point(f"{self._role(run)}:after_persist:{state}")
            await run.send_events.send(Durable(action.record.version))
        elif isinstance(action, StopTicking):
            if did in self.parts.scheduler.agents:
                await self.parts.scheduler.quiesce(did)
        elif isinstance(action, StartTicking):
            await self._start_ticking(did, action.epoch, run)
        elif isinstance(action, CommitHandoffCheckpoint):
            payload = await self._commit_handoff_checkpoint(did, run.peer, run.full_lineage)
            history.emit(
                "handoff",
                agent=did,
                epoch=action.epoch,
                migration_id=self._mid(run),
                step="handoff_checkpoint",
                peer=run.peer,
                detail=payload.head_digest.hex(),
            )
            await run.send_events.send(HandoffCheckpointCommitted(payload))
        elif isinstance(action, OpenStream):
            assert run.nursery is not None
            run.nursery.start_soon(self._open_stream, run, action.peer)
        elif isinstance(action, Send):
            await self._send(run, action.message)
        elif isinstance(action, ArmTimer):
            assert run.nursery is not None
            run.nursery.start_soon(self._timer, run, action)
        elif isinstance(action, ValidateOffer):
            verdict = await self._validate(run, action.offer)
            await run.send_events.send(OfferChecked(verdict))
        elif isinstance(action, Close):
            if run.stream is not None:
                with trio.move_on_after(1):
                    await run.stream.close()
        elif isinstance(action, Done):
            run.outcome = action.outcome
        elif isinstance(action, LogRejected):
            log.info("rejected", agent=did, step=f"{action.reason.value}: {action.detail}")
            history.emit(
                "handoff",
                agent=did,
                epoch=run.port.machine.epoch,
                migration_id=self._mid(run),
                step="stale_rejected",
                peer=run.peer,
                detail=f"{action.reason.value}: {action.detail}",
            )
        elif isinstance(action, QueryStatus):
            if run.session is not None:
                # A session waiting on a peer that may be down must not keep the agent's lock
                # (that would shut out the retrying background resolver and every re-sent
                # COMMIT): end it; resolve_all settles the durable record idempotently.
                run.unresolved = True
                run.outcome = Outcome.HALTED
                return
            assert run.nursery is not None
            run.nursery.start_soon(self._query_and_resolve, run, action.peer)
        elif isinstance(action, CheckClaims):
            await run.send_events.send(ClaimsChecked(await self._highest_claim(did)))
        elif isinstance(action, PublishClaim | RecordFence | DiscardPending):
            return
        elif isinstance(action, EnterRecovery):
            log.warning("recovery required", agent=did, step=f"{action.reason}: {action.detail}")
            if did in self.parts.scheduler.agents:
                await self.parts.scheduler.quiesce(did)
                agent = self.parts.scheduler.remove(did)
                if agent is not None:
                    agent.close()
        else:
            msg = message_for(action, agent=did, sender=self.self_peer, machine=run.port.machine)
            if msg is not None:
                await self._send(run, msg)

    @staticmethod
    def _role(run: _Run) -> str:
        if isinstance(run.session, SourceSession):
            return "source"
        if isinstance(run.session, TargetSession):
            return "target"
        return "resolver"

    @staticmethod
    def _mid(run: _Run) -> str:
        ctx = run.port.machine.migration
        return ctx.migration_id.hex() if ctx else ""

    async def _start_ticking(self, did: str, epoch: int, run: _Run) -> None:
        scheduler = self.parts.scheduler
        if did in scheduler.agents:
            agent = scheduler.agents[did]
            row, _ = await self._row(did)
            assert row is not None
            agent.committed(row, None)
            scheduler.unpause(did)
            return
        try:
            copy = _verified_copy(run)
            agent = None
            if copy is not None:
                # This node verified every entry (check_offer, the transfer checker) and wrote
                # them itself: check the durable record against that copy, read no blobs.
                try:
                    agent = await resume_verified(self.services, did, copy, ResumeReason.MIGRATED)
                except LineageRejected as exc:
                    log.warning("verified copy not usable: %s", exc, agent=did)
            if agent is None:
                # The lineage was fully verified when the offer arrived (check_offer).
                agent = await resume(
                    self.services, did, ResumeReason.MIGRATED, trust_signatures=True
                )
        except IgorError as exc:
            log.error("cannot start ticking", agent=did, epoch=epoch, step=str(exc))
            return
        self.node.host_agent(agent)

    async def _commit_handoff_checkpoint(
        self, did: str, target: str, full_lineage: bool
    ) -> HandoffPayload:
        scheduler = self.parts.scheduler
        agent = scheduler.agents[did]
        target_key = public_key_from_peer_id(target)

        def held(store: Store) -> tuple[StoreRecord | None, list[LineageRow], bytes | None]:
            # The record, the stored rows the target is not known to hold (found from the
            # agent's transfer records) and the manifest, in one worker hop.
            row = store.authority(did)
            start = 0
            if not full_lineage:
                transfers = store.lineage_rows_of_kind(did, "TRANSFER")
                start = _target_holds_until(transfers, target_key)
                start = transfers[start - 1].seq + 1 if start else 0
            manifest = store.manifest(row.manifest_hash) if row is not None else None
            return row, store.lineage_rows(did, since_seq=start), manifest

        # The agent is quiesced and this session holds its lock, so nothing else appends to
        # its chain: the rows read are the chain up to the record's head, which the commit
        # below extends (the store refuses the commit if the head moved).
        row, rows, manifest = await self.services.committer.read(held)
        checkpoint = await scheduler.checkpoint_now(did, CheckpointKind.HANDOFF)
        assert row is not None and manifest is not None
        ops, record = append_ops(row, [checkpoint], previous_tick=agent.head.tick)
        await self.services.committer.commit(ops)
        agent.committed(record, checkpoint)
        lineage = (*(r.blob for r in rows), checkpoint.encode())
        return HandoffPayload(
            checkpoint=checkpoint.encode(),
            head_digest=checkpoint.digest(),
            lineage=tuple(lineage),
            wasm_hash=row.wasm_hash,
            manifest=manifest,
            wasm=None,
        )

    async def _send(self, run: _Run, message: Message) -> None:
        if run.stream is None:
            log.debug("no stream to send %s", message.TYPE, agent=run.did)
            return
        frame = encode(message)
        kind = message.TYPE.value
        crash_point(f"{self._role(run)}:before_send:{kind}")
        try:
            await write_frame(
                run.stream,
                frame,
                timeout_s=IO_TIMEOUT_S,
                gate=self.node.faults,
                peer=run.peer,
                protocol=MIGRATE_PROTOCOL,
            )
        except (NetError, IgorError) as exc:
            log.info("send failed: %s", exc, agent=run.did, peer=run.peer)
            return
        crash_point(f"{self._role(run)}:after_send:{kind}")
        self.services.history.emit(
            "handoff",
            agent=run.did,
            epoch=run.port.machine.epoch,
            migration_id=self._mid(run),
            step=f"{message.TYPE.value.lower()}_sent",
            peer=run.peer,
            detail="",
        )

    async def _reader(self, run: _Run) -> None:
        assert run.stream is not None
        while True:
            try:
                frame = await read_frame(run.stream, max_size=MAX_FRAME_BYTES, timeout_s=3600)
                message = decode(frame)
            except InvalidInput as exc:
                log.info("bad frame: %s", exc, agent=run.did, peer=run.peer)
                return
            except (NetError, IgorError):
                return
            self.services.history.emit(
                "handoff",
                agent=run.did,
                epoch=run.port.machine.epoch,
                migration_id=self._mid(run),
                step=f"{message.TYPE.value.lower()}_received",
                peer=run.peer,
                detail="",
            )
            await run.send_events.send(MessageReceived(message))

    async def _open_stream(self, run: _Run, peer: str) -> None:
        try:
            with trio.fail_after(IO_TIMEOUT_S):
                stream = await self._new_stream(peer, MIGRATE_PROTOCOL)
        except Exception as exc:
            log.info("cannot open migrate stream: %s", exc, agent=run.did, peer=peer)
            return
        run.stream = stream
        assert run.nursery is not None
        run.nursery.start_soon(self._reader, run)
        await run.send_events.send(StreamOpened())

    async def _new_stream(self, peer: str, protocol: str) -> INetStream:
        return await self.parts.host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])

    async def _timer(self, run: _Run, action: ArmTimer) -> None:
        await trio.sleep(self.node.config.handoff_timeout_s)
        await run.send_events.send(Timeout(action.kind))

    async def _pump(
        self, run: _Run, receive: trio.MemoryReceiveChannel[Any], first: list[Action]
    ) -> None:
        """Feed events to the session until it is done (or the node stops)."""
        await self._execute(run, first)
        while run.outcome is None:
            event = await receive.receive()
            if isinstance(event, SessionEvent) and run.session is not None:
                actions = run.session.handle(event)
            elif isinstance(event, Durable):
                actions = run.port.durable(event.version)
                actions = [self._as_send(run, a) for a in actions]
            else:
                actions = [self._as_send(run, a) for a in run.port.handle(event)]  # type: ignore[arg-type]
            await self._execute(run, actions)

    def _as_send(self, run: _Run, action: Action) -> Action:
        msg = message_for(action, agent=run.did, sender=self.self_peer, machine=run.port.machine)
        return Send(msg) if msg is not None else action

    # ------------------------------------------------------------ source side

    async def migrate(self, did: str, target: str) -> Outcome:
        """Move ``did`` (ticking here) to ``target`` (a peer ID). Returns the outcome.

        The first attempt offers only the lineage the target is not known to hold (everything
        after the last transfer record naming it); if that attempt aborts, one more attempt
        offers the whole lineage (the target may have lost its copy).
        """
        outcome = await self._migrate_once(did, target, full_lineage=False)
        if outcome is Outcome.ABORTED and did in self.parts.scheduler.agents:
            outcome = await self._migrate_once(did, target, full_lineage=True)
        return outcome

    async def _migrate_once(self, did: str, target: str, *, full_lineage: bool) -> Outcome:
        if target == self.self_peer:
            raise MigrationFailed("the target is this node")
        public_key_from_peer_id(target)  # typed error for a malformed peer ID
        if did not in self.parts.scheduler.agents:
            raise NotOwner(did, AuthorityState.RETIRED, "not ticking on this node")
        lock = self.lock(did)
        if lock.locked():
            raise AgentBusy(f"{did} has a handoff in progress")
        async with lock:
            port = await self._port(did)
            mid = os.urandom(16)
            config = SourceConfig(
                agent=did,
                self_peer=self.self_peer,
                target=target,
                migration_id=mid,
                sign_transfer=self._signer(did, target, mid),
            )
            session = SourceSession(config, port)
            send, receive = trio.open_memory_channel[Any](256)
            run = _Run(
                did=did,
                port=port,
                session=session,
                peer=target,
                send_events=send,
                full_lineage=full_lineage,
            )
            started = time.monotonic()
            self.services.history.emit(
                "handoff",
                agent=did,
                epoch=port.machine.epoch,
                migration_id=mid.hex(),
                step="begin",
                peer=target,
                detail="",
            )
            async with trio.open_nursery() as nursery:
                run.nursery = nursery
                await self._pump(run, receive, session.start())
                nursery.cancel_scope.cancel()
            outcome = run.outcome or Outcome.HALTED
            await self._after_source(run, outcome)
        if run.unresolved:
            outcome = await self._await_resolution(did)
        log.info(
            "migration finished",
            agent=did,
            peer=target,
            step=f"{outcome.value} in {time.monotonic() - started:.3f}s",
        )
        return outcome

    async def _await_resolution(self, did: str) -> Outcome:
        """Source after Timeout(CONFIRM): wait until the recover exchange settles the record."""
        while True:
            row, _ = await self._row(did)
            if row is None or row.state is not AuthorityState.RETIRED:
                return Outcome.HALTED
            if row.confirmed:
                return Outcome.TRANSFERRED
            await trio.sleep(self.node.config.recover_interval_s)

    def _signer(
        self, did: str, target: str, mid: bytes
    ) -> Callable[[TransferTerms], SignedTransfer]:
        key = self.services.key

        def sign(terms: TransferTerms) -> SignedTransfer:
            record = UnsignedTransferRecord(
                agent=did,
                from_epoch=terms.epoch,
                to_epoch=terms.epoch + 1,
                from_node=key.public_key,
                to_node=public_key_from_peer_id(target),
                prev=terms.head_digest,
                migration_id=mid,
                wall_ns=self.services.clock.wall_ns(),
            ).sign(key)
            return SignedTransfer(record.encode(), record.digest())

        return sign

    async def _after_source(self, run: _Run, outcome: Outcome) -> None:
        scheduler = self.parts.scheduler
        state = run.port.machine.durable_record.state
        if state is AuthorityState.RETIRED and run.did in scheduler.agents:
            agent = scheduler.remove(run.did)
            if agent is not None:
                agent.close()
        elif state is AuthorityState.ACTIVE_OWNER and run.did in scheduler.agents:
            agent = scheduler.agents[run.did]
            if agent.paused:
                row, _ = await self._row(run.did)
                if row is not None:
                    agent.committed(row, None)
                scheduler.unpause(run.did)

    # ------------------------------------------------------------ target side

    async def _serve_migrate(self, stream: INetStream) -> None:
        peer = str(stream.muxed_conn.peer_id)
        frame = await read_frame(stream, max_size=MAX_FRAME_BYTES, timeout_s=IO_TIMEOUT_S)
        message = decode(frame)
        if not isinstance(message, Offer):
            # A late COMMIT/ABORT on a fresh stream, or garbage: answer through the machine.
            await self._late_message(stream, peer, message)
            return
        did = message.agent
        if message.sender != peer:
            # The sender must be the Noise-authenticated peer. Refuse before taking the
            # agent's lock: a session for a forged OFFER would wait forever and hold it.
            from igor_p2p.authority.table import RejectCode
            from igor_p2p.handoff.messages import Reject

            self.services.history.emit(
                "handoff",
                agent=did,
                epoch=message.epoch,
                migration_id=message.migration_id.hex(),
                step="stale_rejected",
                peer=peer,
                detail=f"OFFER claims sender {message.sender}",
            )
            with trio.move_on_after(IO_TIMEOUT_S):
                await write_frame(
                    stream,
                    encode(
                        Reject(self.self_peer, did, message.migration_id, RejectCode.WRONG_SENDER)
                    ),
                    timeout_s=IO_TIMEOUT_S,
                )
                await stream.close()
            return
        lock = self.lock(did)
        if lock.locked():
            from igor_p2p.authority.table import RejectCode
            from igor_p2p.handoff.messages import Reject

            await write_frame(
                stream,
                encode(Reject(self.self_peer, did, message.migration_id, RejectCode.BUSY)),
                timeout_s=IO_TIMEOUT_S,
            )
            await stream.close()
            return
        async with lock:
            port = await self._port(did)
            config = TargetConfig(
                agent=did,
                self_peer=self.self_peer,
                source=peer,
                migration_id=message.migration_id,
                verify_transfer=self._transfer_checker(did),
            )
            session = TargetSession(config, port)
            send, receive = trio.open_memory_channel[Any](256)
            run = _Run(
                did=did, port=port, session=session, peer=peer, send_events=send, stream=stream
            )
            self.services.history.emit(
                "handoff",
                agent=did,
                epoch=message.epoch,
                migration_id=message.migration_id.hex(),
                step="offer_received",
                peer=peer,
                detail="",
            )
            async with trio.open_nursery() as nursery:
                run.nursery = nursery
                nursery.start_soon(self._reader, run)
                first = session.handle(MessageReceived(message))
                await self._pump(run, receive, first)
                nursery.cancel_scope.cancel()

    async def _late_message(self, stream: INetStream, peer: str, message: Message) -> None:
        did = getattr(message, "agent", None)
        if not isinstance(did, str) or isinstance(message, StatusQuery | StatusReply):
            await stream.reset()
            return
        lock = self.lock(did)
        if lock.locked():
            await stream.close()
            return
        async with lock:
            port = await self._port(did)
            ctx = port.machine.migration
            send, receive = trio.open_memory_channel[Any](64)
            run = _Run(did=did, port=port, session=None, peer=peer, send_events=send, stream=stream)
            if ctx is None or ctx.peer != peer:
                # A message no migration of ours with this peer expects (a replay, or a sender
                # that is not the Noise-authenticated peer): log why, change nothing.
                self.services.history.emit(
                    "handoff",
                    agent=did,
                    epoch=port.machine.epoch,
                    migration_id=getattr(message, "migration_id", b"").hex(),
                    step="stale_rejected",
                    peer=peer,
                    detail=f"{message.TYPE.value} from a peer with no migration of this agent here",
                )
                await stream.close()
                return
            session = TargetSession(
                TargetConfig(
                    agent=did,
                    self_peer=self.self_peer,
                    source=peer,
                    migration_id=ctx.migration_id,
                    verify_transfer=self._transfer_checker(did),
                ),
                port,
            )
            run.session = session
            async with trio.open_nursery() as nursery:
                run.nursery = nursery
                actions = session.handle(MessageReceived(message))
                await self._execute(run, actions)
                with trio.move_on_after(IO_TIMEOUT_S):
                    while port.waiting_for is not None:
                        event = await receive.receive()
                        if isinstance(event, Durable):
                            await self._execute(run, session.handle(event))
                nursery.cancel_scope.cancel()
            await stream.close()

    def _transfer_checker(self, did: str) -> Callable[[bytes, MigrationContext], bool]:
        me = self.services.key.public_key

        def check(record: bytes, ctx: MigrationContext) -> bool:
            try:
                entry = decode_entry(record)
                if not isinstance(entry, TransferRecord):
                    return False
                entry.verify_signature()
            except IgorError:
                return False
            return (
                entry.agent == did
                and entry.migration_id == ctx.migration_id
                and entry.from_epoch == ctx.offer_epoch
                and entry.to_epoch == ctx.offer_epoch + 1
                and entry.to_node == me
                and entry.from_node == public_key_from_peer_id(ctx.peer)
                and (ctx.head_digest is None or entry.prev == ctx.head_digest)
            )

        return check

    async def _validate(self, run: _Run, offer: Offer) -> OfferVerdict:
        from igor_p2p.authority.table import RejectCode

        limits = TargetLimits(
            price=self.node.config.price,
            capacity=self.node.config.capacity,
            hosted=len(self.parts.scheduler.agents),
        )

        def module_then_check(store: Store) -> PreparedCopy | None:
            # One worker hop: the module from the offer or the store, then the whole check.
            wasm = offer.wasm if offer.wasm is not None else store.module(offer.wasm_hash)
            if wasm is None:
                return None  # fetched from a peer below, then checked
            return check_offer(store, offer, run.peer, wasm, limits)

        try:
            prepared = await self.services.committer.read(module_then_check)
            if prepared is None:
                fetched = await self.fetch_module(offer.wasm_hash, [run.peer])
                prepared = await self.services.committer.read(
                    lambda s: check_offer(s, offer, run.peer, fetched, limits)
                )
            if prepared.wasm is not None:
                await trio.to_thread.run_sync(self.services.sandbox.compile, prepared.wasm)
        except OfferRefused as exc:
            log.info("offer refused", agent=run.did, peer=run.peer, step=str(exc))
            self.services.history.emit(
                "handoff",
                agent=run.did,
                epoch=offer.epoch,
                migration_id=offer.migration_id.hex(),
                step="rejected",
                peer=run.peer,
                detail=str(exc),
            )
            return OfferVerdict(False, bytes(32), exc.code)
        except IgorError as exc:
            return OfferVerdict(
                False,
                bytes(32),
                RejectCode.MALFORMED if isinstance(exc, InvalidInput) else RejectCode.HASH_MISMATCH,
            )
        run.prepared = prepared
        return OfferVerdict(True, prepared.checkpoint.digest())

    # ------------------------------------------------------------ modules

    async def _serve_module(self, stream: INetStream) -> None:
        request = await read_message(stream, max_size=4096, timeout_s=IO_TIMEOUT_S)
        digest = request.get("hash")
        wasm = None
        if isinstance(digest, bytes) and len(digest) == 32:
            wasm = await self.services.committer.read(lambda s: s.module(digest))
        await write_message(
            stream,
            {"type": "module", "wasm": wasm},
            timeout_s=IO_TIMEOUT_S,
        )
        await stream.close()

    async def fetch_module(self, wasm_hash: bytes, peers: list[str]) -> bytes | None:
        """Fetch a module by hash: from ``peers`` first, then DHT providers; verified."""
        candidates = list(peers)
        try:
            from igor_p2p.net.dht import find_module_providers

            with trio.move_on_after(3):
                for info in await find_module_providers(self.parts.dht, wasm_hash):
                    if str(info.peer_id) not in candidates:
                        candidates.append(str(info.peer_id))
        except Exception as exc:
            log.debug("provider lookup failed: %s", exc)
        for peer in candidates:
            if peer == self.self_peer:
                continue
            try:
                with trio.fail_after(IO_TIMEOUT_S):
                    stream = await self._new_stream(peer, MODULE_PROTOCOL)
                    await write_message(
                        stream, {"type": "get_module", "hash": wasm_hash}, timeout_s=IO_TIMEOUT_S
                    )
                    reply = await read_message(
                        stream, max_size=MAX_MODULE_FRAME, timeout_s=IO_TIMEOUT_S
                    )
                    await stream.close()
            except Exception as exc:
                log.debug("module fetch from %s failed: %s", peer, exc)
                continue
            wasm = reply.get("wasm")
            if isinstance(wasm, bytes) and hashlib.sha256(wasm).digest() == wasm_hash:
                return wasm
        return None

    # ------------------------------------------------------------ recover exchange

    async def _serve_recover(self, stream: INetStream) -> None:
        frame = await read_frame(stream, max_size=MAX_RECOVER_FRAME, timeout_s=IO_TIMEOUT_S)
        query = decode(frame)
        if not isinstance(query, StatusQuery):
            await stream.reset()
            return
        row, fence = await self._row(query.agent)
        record = to_machine(row, fence)
        reply = status_reply(record, agent=query.agent, sender=self.self_peer)
        await write_frame(stream, encode(reply), timeout_s=IO_TIMEOUT_S)
        await stream.close()

    async def query_status(self, did: str, peer: str, record: MachineRecord) -> StatusReply | None:
        query = status_query(record, agent=did, sender=self.self_peer)
        try:
            with trio.fail_after(IO_TIMEOUT_S):
                stream = await self._new_stream(peer, RECOVER_PROTOCOL)
                await write_frame(stream, encode(query), timeout_s=IO_TIMEOUT_S)
                frame = await read_frame(stream, max_size=MAX_RECOVER_FRAME, timeout_s=IO_TIMEOUT_S)
                await stream.close()
            reply = decode(frame)
        except Exception as exc:
            log.debug("status query to %s failed: %s", peer, exc, agent=did)
            return None
        if not isinstance(reply, StatusReply) or reply.sender != peer or reply.agent != did:
            return None
        return reply

    async def _query_and_resolve(self, run: _Run, peer: str) -> None:
        reply = await self.query_status(run.did, peer, run.port.machine.durable_record)
        if reply is None:
            return
        outcome = resolve(run.port.machine.durable_record, reply)
        if outcome is None or outcome.kind is ResolutionKind.WAIT:
            return
        await run.send_events.send(outcome)

    async def resolve_all(self) -> None:
        """Settle every unresolved handoff whose peer answers (idempotent)."""
        rows = await self.services.committer.read(lambda s: s.authorities())
        for row in rows:
            ctx_needed = row.state is AuthorityState.HANDOFF_PENDING or (
                row.state is AuthorityState.RETIRED
                and row.migration_id
                and not row.confirmed
                and row.peer
            )
            if not ctx_needed or self.lock(row.agent).locked():
                continue
            try:
                await self.resolve_agent(row.agent)
            except IgorError as exc:
                log.debug("resolution failed: %s", exc, agent=row.agent)

    async def resolve_agent(self, did: str) -> str:
        """Run the recover exchange for one agent now; returns what happened."""
        lock = self.lock(did)
        if lock.locked():
            raise AgentBusy(f"{did} has a handoff in progress")
        async with lock:
            port = await self._port(did)
            record = port.machine.durable_record
            ctx = record.migration
            if ctx is None or not ctx.peer:
                return "nothing to resolve"
            reply = await self.query_status(did, ctx.peer, record)
            if reply is None:
                return f"peer {ctx.peer} unreachable"
            outcome = resolve(record, reply)
            if outcome is None:
                return "nothing to resolve"
            if outcome.kind is ResolutionKind.WAIT:
                return "waiting for the peer's decision"
            send, receive = trio.open_memory_channel[Any](64)
            run = _Run(did=did, port=port, session=None, peer=ctx.peer, send_events=send)
            async with trio.open_nursery() as nursery:
                run.nursery = nursery
                if outcome.kind is ResolutionKind.RESEND_COMMIT:
                    with trio.move_on_after(IO_TIMEOUT_S):
                        run.stream = await self._new_stream(ctx.peer, MIGRATE_PROTOCOL)
                actions = [self._as_send(run, a) for a in port.handle(outcome)]
                await self._drain(run, receive, actions)
                if run.stream is not None:
                    with trio.move_on_after(2):
                        await run.stream.close()
                nursery.cancel_scope.cancel()
            self.services.history.emit(
                "handoff",
                agent=did,
                epoch=port.machine.epoch,
                migration_id=ctx.migration_id.hex(),
                step="resolved",
                peer=ctx.peer,
                detail=outcome.kind.value,
            )
            return f"resolved: {outcome.kind.value}"

    async def _drain(
        self, run: _Run, receive: trio.MemoryReceiveChannel[Any], actions: list[Action]
    ) -> None:
        await self._execute(run, actions)
        while run.port.waiting_for is not None:
            event = await receive.receive()
            if isinstance(event, Durable):
                await self._execute(
                    run, [self._as_send(run, a) for a in run.port.durable(event.version)]
                )

    async def _feed_authority_event(self, did: str, event: Event) -> list[Action]:
        """Apply one authority event (claims, operator) outside any session."""
        lock = self.lock(did)
        async with lock:
            port = await self._port(did)
            send, receive = trio.open_memory_channel[Any](64)
            run = _Run(did=did, port=port, session=None, peer="", send_events=send)
            try:
                actions = [self._as_send(run, a) for a in port.handle(event)]
            except IllegalTransition as exc:
                log.info("event not applicable: %s", exc, agent=did)
                return []
            async with trio.open_nursery() as nursery:
                run.nursery = nursery
                await self._drain(run, receive, actions)
                nursery.cancel_scope.cancel()
            return actions

    # ------------------------------------------------------------ claims and operators

    async def _highest_claim(self, did: str) -> int:
        claims = getattr(self.node, "claims", None)
        return claims.highest(did) if claims is not None else 0

    async def observe_epoch(self, did: str, epoch: int, owner: str, evidence: str) -> None:
        """A signed claim or location says ``owner`` holds ``epoch`` of ``did``."""
        if not self.fencing:
            return
        row, fence = await self._row(did)
        if row is None:
            if epoch > fence:
                await self.services.committer.commit([RaiseFence(did, epoch, evidence)])
            return
        if owner == self.self_peer:
            return
        if epoch > row.epoch and row.state in (
            AuthorityState.ACTIVE_OWNER,
            AuthorityState.HANDOFF_INITIATED,
        ):
            await self._stop_for(did, HigherEpochSeen(epoch, evidence))
        elif epoch == row.epoch and row.state is AuthorityState.ACTIVE_OWNER:
            await self._stop_for(did, ConflictingClaim(epoch, evidence))
        elif epoch > fence:
            await self.services.committer.commit([RaiseFence(did, epoch, evidence)])

    async def _stop_for(self, did: str, event: Event) -> None:
        scheduler = self.parts.scheduler
        if did in scheduler.agents:
            await scheduler.quiesce(did)
        actions = await self._feed_authority_event(did, event)
        row, _ = await self._row(did)
        if did in scheduler.agents:
            if row is not None and row.state is AuthorityState.ACTIVE_OWNER:
                agent = scheduler.agents[did]
                agent.committed(row, None)
                scheduler.unpause(did)
            else:
                agent = scheduler.remove(did)
                if agent is not None:
                    agent.close()
        if actions:
            log.warning("stopped by evidence", agent=did, step=type(event).__name__)

    async def force_recover(self, did: str, operator: str) -> dict[str, Any]:
        """Operator override: take authority here at a new epoch, recorded in the lineage."""
        row, fence = await self._row(did)
        if row is None or row.head is None:
            raise NotOwner(did, AuthorityState.RETIRED, "no lineage of this agent here")
        new_epoch = max(fence, row.epoch) + 1
        forced = UnsignedForcedRecovery(
            agent=did,
            from_epoch=row.epoch,
            to_epoch=new_epoch,
            node=self.services.key.public_key,
            prev=row.head,
            forced_by=operator,
            reason=f"forced recovery from {row.state.value}: {row.reason}",
            wall_ns=self.services.clock.wall_ns(),
        ).sign(self.services.key)
        held = await self.services.committer.read(lambda s: s.lineage_index(did))
        ops, _ = append_ops(
            row,
            [forced],
            previous_tick=held[-1].tick if held else 0,
            state=AuthorityState.ACTIVE_OWNER,
            epoch=new_epoch,
            owner=self.services.key.public_key,
            reason="",
            context=None,
        )
        await self.services.committer.commit(ops)
        port_event = ForceRecover(operator, new_epoch)
        _ = port_event
        self.services.history.emit(
            "authority",
            agent=did,
            epoch=new_epoch,
            from_state=row.state.value,
            to_state="ACTIVE_OWNER",
            reason=f"forced by {operator}",
        )
        agent = await resume(self.services, did, ResumeReason.RESTARTED)
        self.node.host_agent(agent)
        return {"agent": did, "state": "ACTIVE_OWNER", "epoch": new_epoch, "forced_by": operator}

    # ------------------------------------------------------------ restart

    async def _abort_interrupted_handoffs(self) -> None:
        """FS-1: a source that crashed before its decision aborts and resumes as owner."""
        rows = await self.services.committer.read(lambda s: s.authorities())
        for row in rows:
            if row.state is not AuthorityState.HANDOFF_INITIATED:
                continue
            port = await self._port(row.agent)
            send, receive = trio.open_memory_channel[Any](64)
            ctx = port.machine.migration
            run = _Run(
                did=row.agent,
                port=port,
                session=None,
                peer=ctx.peer if ctx else "",
                send_events=send,
            )
            async with self.lock(row.agent), trio.open_nursery() as nursery:
                run.nursery = nursery
                actions = [self._as_send(run, a) for a in port.handle(Restarted())]
                await self._drain(run, receive, actions)
                nursery.cancel_scope.cancel()


def _verified_copy(run: _Run) -> VerifiedCopy | None:
    """The chain a handoff target verified and persisted in this session, ending at the
    transfer record of the COMMIT it accepted (None when this run has no such copy)."""
    prepared = run.prepared
    ctx = run.port.machine.migration
    if prepared is None or ctx is None or not ctx.transfer_record:
        return None
    try:
        transfer = decode_entry(ctx.transfer_record)
    except IgorError:
        return None
    if not isinstance(transfer, TransferRecord):
        return None
    return VerifiedCopy(
        head=prepared.checkpoint, last=transfer, wasm=prepared.wasm, manifest=prepared.manifest
    )


def _target_holds_until(rows: list[Any], target_key: bytes) -> int:
    """Index of the first row the target is not known to hold.

    A node that gave the agent away holds the chain up to its transfer record; one that received
    it holds it up to the transfer record naming it. Nothing known: 0 (offer everything).
    """
    for index in range(len(rows) - 1, -1, -1):
        row = rows[index]
        if row.kind != "TRANSFER":
            continue
        try:
            record = decode_entry(row.blob)
        except IgorError:
            return 0
        if isinstance(record, TransferRecord) and target_key in (record.from_node, record.to_node):
            return index + 1
    return 0
