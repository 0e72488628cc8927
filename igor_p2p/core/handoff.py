"""The handoff: a source moving an agent to a target, and the target's side of it.

Source (:meth:`HandoffSource.migrate`), holding the agent's lock throughout:

0. While the agent still ticks: custody and manifest are read, and phase 1 of the claim runs —
   PREPARE for the next epoch to the current witnesses. A promise fixes nothing, so it needs no
   pause; without a quorum the agent is never stopped.
1. ``BeginHandoff`` stops ticking. The runner snapshots a HANDOFF checkpoint (in memory).
2. OFFER (custody + checkpoint) to the target, which verifies it, makes it durable and acks.
3. With an ACK for exactly that checkpoint (and the promises), the source signs the transfer
   record and sends ACCEPT (phase 2). Until that moment any failure aborts the handoff and the
   source ticks on: no record that could be chosen ever left it.
4. A joint quorum of ACCEPTED votes is the certificate: the source retires (durably, with the
   checkpoint, record and certificate) and sends COMMIT; the target persists ownership and only
   then ticks, and CONFIRMs.
   Without the certificate in time the decision stays open: the claimant keeps asking the
   witnesses in the background; the target settles on its own through them too.

Both sides note when each step happened (:class:`~igor_p2p.core.phases.PhaseTrace`, for the
bench and debugging).

Target (:class:`HandoffTarget`): validates an OFFER completely before persisting
HANDOFF_PENDING and acking; takes the epoch on a COMMIT whose record and certificate verify.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.authority.claim import Chosen, Claim, ClaimPhase, Failed, Stale
from igor_p2p.authority.custody import EpochStart, InvalidCustody, chain_after, next_start
from igor_p2p.authority.events import (
    AbortReason,
    AbortReceived,
    Action,
    BeginHandoff,
    ClaimResolved,
    ClaimStale,
    CommitReceived,
    HandoffAborted,
    OfferPrepared,
    OfferRefused,
    ReplyAck,
    ReplyConfirm,
    ReplyDone,
    ReplyReject,
)
from igor_p2p.authority.record import ABSENT, Phase
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.witness_choice import choose_witnesses
from igor_p2p.bounded import BoundedLRU
from igor_p2p.core.claims import Claimant, ClaimContext, drive
from igor_p2p.core.gate import AgentPort, Gate
from igor_p2p.core.offer_check import OfferInvalid, check_offer
from igor_p2p.core.phases import PhaseTrace
from igor_p2p.core.ports import AgentRunner, PeerUnreachable
from igor_p2p.effects.arrival import replay_ticks, replay_window
from igor_p2p.errors import IgorError
from igor_p2p.lineage.custody import UnsignedTransferRecord
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.logs import get_logger
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Abort,
    Ack,
    Commit,
    Confirm,
    Done,
    GetModule,
    Learn,
    Module,
    Offer,
    Refused,
    RefusedCode,
    Reject,
    RejectCode,
)

log = get_logger(__name__)

OFFER_LOCK_WAIT_S = 1.0
"""How long an OFFER waits for the agent's lock before the target answers BUSY."""
OFFER_LOCK_POLL_S = 0.02
REPLAY_ASKED_PEERS = 1024
"""Targets remembered with the ticks they replay of arrivals (replay on arrival)."""


class MigrationResult(enum.StrEnum):
    TRANSFERRED = "TRANSFERRED"
    """The target owns the next epoch (certified); it confirmed, or will settle on its own."""
    ABORTED = "ABORTED"
    """Nothing moved; the source ticks on (the reason says why: timeout, no quorum, …)."""
    REJECTED = "REJECTED"
    """The target refused the offer (its code says why); the source ticks on."""
    UNRESOLVED = "UNRESOLVED"
    """The transfer may be chosen but no certificate came in time; nobody ticks until the
    witnesses answer (the node keeps asking)."""
    SUPERSEDED = "SUPERSEDED"
    """The witnesses proved a later epoch: this node was not the owner any more."""


@dataclass(frozen=True)
class MigrationOutcome:
    result: MigrationResult
    reason: str = ""
    code: RejectCode | None = None
    epoch: int = 0
    confirmed: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "result": self.result.value,
            "reason": self.reason,
            "code": self.code.value if self.code else None,
            "epoch": self.epoch,
            "confirmed": self.confirmed,
        }


class NotOwnerHere(IgorError):
    """The agent is not ticking on this node, so it cannot be moved from here."""


class AgentBusy(IgorError):
    """Another handoff or claim of this agent is in progress here."""


class BadTarget(IgorError):
    """The target named is not a node the agent can move to."""


def replies(actions: Sequence[Action], me: bytes, agent: str) -> Message:
    """The one reply among a request's actions, as a wire message."""
    for action in actions:
        if isinstance(action, ReplyAck):
            return Ack(me, agent, action.migration_id, action.epoch, action.head)
        if isinstance(action, ReplyReject):
            return Reject(me, agent, action.migration_id, action.code, action.reason)
        if isinstance(action, ReplyConfirm):
            return Confirm(me, agent, action.migration_id, action.epoch)
        if isinstance(action, ReplyDone):
            return Done(me, agent)
    return Refused(me, RefusedCode.INTERNAL, "the request produced no reply")


def spawn(nursery: trio.Nursery | None, fn, *args) -> bool:  # type: ignore[no-untyped-def]
    """Start background work unless the node is shutting down (its nursery closed)."""
    if nursery is None:
        return False
    try:
        nursery.start_soon(fn, *args)
    except RuntimeError:  # "Nursery is closed to new arrivals": the node is stopping
        return False
    return True


class Messenger:
    """Best-effort messages the interpreter hands off: COMMIT, ABORT, LEARN (with retries)."""

    def __init__(self, ctx: ClaimContext) -> None:
        self.ctx = ctx
        self._nursery: trio.Nursery | None = None
        self.confirmed: dict[bytes, trio.Event] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def _spawn(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        spawn(self._nursery, fn, *args)

    def confirmation(self, migration_id: bytes) -> trio.Event:
        if len(self.confirmed) > 1024:
            self.confirmed.pop(next(iter(self.confirmed)))
        return self.confirmed.setdefault(migration_id, trio.Event())

    def send_commit(self, agent: str, target: bytes, mid: bytes, start: EpochStart) -> None:
        self.confirmation(mid)
        self._spawn(self._commit, agent, target, mid, start)

    def send_abort(self, agent: str, target: bytes, mid: bytes) -> None:
        self._spawn(self._abort, agent, target, mid)

    def learn(self, agent: str, start: EpochStart) -> None:
        self._spawn(self._learn, agent, start)

    async def _commit(self, agent: str, target: bytes, mid: bytes, start: EpochStart) -> None:
        ctx = self.ctx
        message = Commit(ctx.key.public_key, agent, mid, start.record, start.cert)
        reply: Message | None = None
        with trio.move_on_after(ctx.config.settle_after_s):  # then the target settles itself
            retries = ctx.backoff.retries()
            while reply is None:
                try:
                    reply = await ctx.transport.request(
                        target, message, ctx.config.request_timeout_s
                    )
                except PeerUnreachable:
                    await retries.wait()
                    continue
                if _commit_again_later(reply):  # not refused by the target's table: try again
                    log.info(
                        "commit not taken yet",
                        agent=agent,
                        peer=target.hex()[:16],
                        step=_why(reply),
                    )
                    reply = None
                    await retries.wait()
        if reply is not None and not isinstance(reply, Confirm):
            log.info("commit refused", agent=agent, peer=target.hex()[:16], step=_why(reply))
        if isinstance(reply, Confirm) and reply.migration_id == mid:
            self.confirmation(mid).set()
            ctx.env.history.emit(
                "handoff",
                agent=agent,
                epoch=start.epoch,
                migration_id=mid.hex(),
                step="confirmed",
                peer=target.hex(),
                detail="",
            )

    async def _abort(self, agent: str, target: bytes, mid: bytes) -> None:
        ctx = self.ctx
        message = Abort(ctx.key.public_key, agent, mid)
        for attempt in range(2):
            try:
                await ctx.transport.request(target, message, ctx.config.request_timeout_s)
                return
            except PeerUnreachable:
                await ctx.backoff.wait(attempt)

    async def _learn(self, agent: str, start: EpochStart) -> None:
        ctx = self.ctx
        await ctx.env.sleep(ctx.config.learn_delay_s)
        custody = await ctx.store.custody(agent)
        if not custody or custody[-1].epoch < start.epoch:
            custody = [*custody, start] if custody else []
        after, chain = chain_after(custody, max(0, start.epoch - 1))
        message = Learn(ctx.key.public_key, agent, after, chain)
        previous = custody[-2].witnesses if len(custody) >= 2 else ()
        nodes = sorted((set(previous) | set(start.witnesses)) - {ctx.key.public_key})

        async def tell(node: bytes) -> None:
            for attempt in range(ctx.config.learn_retries):
                try:
                    await ctx.transport.request(node, message, ctx.config.request_timeout_s)
                    return
                except PeerUnreachable:
                    await ctx.backoff.wait(attempt)

        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(tell, node)


@dataclass(frozen=True)
class _Ready:
    """What a source gathered before stopping the agent."""

    custody: list[EpochStart]
    manifest: bytes
    claim: Claim
    """Its phase 1 is done: promises (WAITING_VALUE), or an adopted record's outcome."""


class HandoffSource:
    """Moves agents this node owns to other nodes."""

    def __init__(
        self, ctx: ClaimContext, runner: AgentRunner, claimant: Claimant, messenger: Messenger
    ) -> None:
        self.ctx = ctx
        self.runner = runner
        self.claimant = claimant
        self.messenger = messenger
        self.trace = PhaseTrace(ctx.env.now)
        """When each step of recent migrations from here happened (bench, debugging)."""
        self.replay_asked: BoundedLRU[bytes, int] = BoundedLRU(REPLAY_ASKED_PEERS)
        """Targets that answered REPLAY_REQUIRED, and the ticks they replay (offered at once
        next time)."""

    @property
    def gate(self) -> Gate:
        return self.ctx.gate

    async def _replay_window(
        self, agent: str, checkpoint: Checkpoint, ticks: int
    ) -> tuple[bytes, ...] | None:
        """The entries a target needs to replay ``ticks`` ticks before ``checkpoint`` (None
        for none: nothing asked, or nothing stored that reaches back)."""
        if ticks <= 0:
            return None
        blobs = await self.ctx.store.lineage(agent)
        return replay_window(blobs, checkpoint, ticks) or None

    async def _offer(self, target: bytes, offer: Offer, checkpoint: Checkpoint) -> Message:
        """Send ``offer`` until the target answers it: a target that takes offers from this
        node at a bounded rate (REFUSED RATE_LIMITED) is asked again after a backoff, and one
        that replays arrivals (REJECT REPLAY_REQUIRED) gets the same offer once more with the
        ticks it asks for; an OFFER whose ACK has not come when the network changes (a heal:
        the ACK may be lost) is sent again at once, and one whose ACK is late is sent again
        beside it. The caller bounds the whole exchange (``handoff_deadline_s``)."""
        ctx = self.ctx
        retries = ctx.backoff.retries()
        while True:
            # The same OFFER again after a heal, or when its ACK is late: the target acks a
            # repeat again; a repeat that finds the target still busy with the first does not
            # end the wait for the first.
            reply = await ctx.backoff.request(
                ctx.transport,
                target,
                offer,
                ctx.config.offer_timeout_s,
                resend_after_s=ctx.config.offer_resend_after(_offer_bytes(offer)),
                settles=lambda r: not (isinstance(r, Reject) and r.code is RejectCode.BUSY),
            )
            if isinstance(reply, Refused) and reply.code is RefusedCode.RATE_LIMITED:
                await retries.wait()
                continue
            if (
                isinstance(reply, Reject)
                and reply.code is RejectCode.REPLAY_REQUIRED
                and reply.replay_ticks is not None
                and offer.replay is None
            ):
                self.replay_asked[target] = reply.replay_ticks
                window = await self._replay_window(offer.agent, checkpoint, reply.replay_ticks)
                if window is not None:
                    offer = dataclasses.replace(offer, replay=window)
                    continue
            return reply

    def _step(
        self, agent: str, epoch: int, mid: bytes, step: str, target: bytes, detail: str = ""
    ) -> None:
        self.ctx.env.history.emit(
            "handoff",
            agent=agent,
            epoch=epoch,
            migration_id=mid.hex(),
            step=step,
            peer=target.hex(),
            detail=detail,
        )

    async def migrate(self, agent: str, target: bytes) -> MigrationOutcome:
        ctx = self.ctx
        if target == ctx.key.public_key:
            raise BadTarget("the target is this node")
        if self.gate.busy(agent):
            raise AgentBusy(f"{agent} is busy here (a handoff or claim is in progress)")
        async with self.gate.agent(agent) as port:
            if not port.machine.may_tick:
                state = port.record.state
                raise NotOwnerHere(f"{agent} is not ticking on this node (it is {state})")
            epoch = port.record.epoch
            mid = ctx.env.token(16)
            self.trace.mark(mid, "prepare")
            ready = await self._before_pause(port, epoch, mid, target)
            if isinstance(ready, MigrationOutcome):
                # Nothing left this node that could be chosen, and the agent never stopped.
                self._step(agent, epoch, mid, ready.result.value.lower(), target, ready.reason)
                return ready
            self.trace.mark(mid, "begin")
            await port.handle(BeginHandoff(target, mid))
            self.trace.mark(mid, "stopped")
            self._step(agent, epoch, mid, "begin", target)
            try:
                outcome, pending = await self._handoff(port, epoch, mid, target, ready)
            except BaseException:
                # Abort (and tick on) only while no ACCEPT has left: after one, a witness may
                # hold the transfer and a later claim may choose it, so the agent must stay
                # stopped until a claim decides (the restart's, or the next one).
                if port.machine.run.phase is Phase.HANDING_OFF and not ready.claim.accept_sent:
                    with trio.CancelScope(shield=True):
                        await port.handle(HandoffAborted(mid, AbortReason.OPERATOR))
                raise
            if pending is not None:
                claim, checkpoint = pending
                self.claimant.continue_handoff(agent, claim, checkpoint)
            elif outcome.result in (MigrationResult.ABORTED, MigrationResult.REJECTED):
                reason = AbortReason.REJECTED if outcome.code else AbortReason.TIMEOUT
                await port.handle(HandoffAborted(mid, reason))
            self._step(agent, epoch, mid, outcome.result.value.lower(), target, outcome.reason)
            self.trace.mark(mid, "done")
        if outcome.result is MigrationResult.TRANSFERRED:
            with trio.move_on_after(ctx.config.request_timeout_s):
                await self.messenger.confirmation(mid).wait()
            return MigrationOutcome(
                outcome.result,
                outcome.reason,
                epoch=outcome.epoch,
                confirmed=self.messenger.confirmation(mid).is_set(),
            )
        return outcome

    async def _before_pause(
        self, port: AgentPort, epoch: int, mid: bytes, target: bytes
    ) -> _Ready | MigrationOutcome:
        """What needs the agent's lock but not the agent stopped: the custody, the manifest and
        phase 1 of the claim (a promise fixes nothing: until ACCEPT leaves, the handoff may still
        be dropped). A MigrationOutcome when there is no point stopping the agent at all."""
        ctx = self.ctx
        agent = port.agent
        custody = await ctx.store.custody(agent)
        if not custody or custody[-1].epoch != epoch:
            return MigrationOutcome(MigrationResult.ABORTED, "local copy incomplete")
        previous = custody[-1]
        genesis = decode_entry(custody[0].genesis)
        assert isinstance(genesis, Checkpoint)
        manifest = await ctx.store.manifest(genesis.manifest_hash)
        if manifest is None:
            return MigrationOutcome(MigrationResult.ABORTED, "local copy incomplete")
        claim = Claim(agent, epoch + 1, previous, custody, ctx.ballots.next())
        if previous.is_genesis:  # no claim was ever chosen: no witness holds the custody yet
            for node in previous.witnesses:
                if node != ctx.key.public_key:
                    claim.presume_behind(node)
        with trio.move_on_after(ctx.config.handoff_deadline_s):
            await drive(
                ctx.transport,
                claim,
                claim.start(),
                ctx.config.claim_round_s,
                full=ctx.full_witnesses,
            )
        self.trace.mark(mid, "promised")
        if (
            claim.outcome is None
            and not claim.accept_sent
            and claim.phase is not ClaimPhase.WAITING_VALUE
        ):
            return MigrationOutcome(
                MigrationResult.ABORTED, f"no witness quorum: {claim.missing()}"
            )
        if isinstance(claim.outcome, Failed) and not claim.accept_sent:
            reason = claim.missing() or claim.outcome.reason
            return MigrationOutcome(MigrationResult.ABORTED, f"no witness quorum: {reason}")
        return _Ready(custody, manifest, claim)

    async def transfer_offline(self, agent: str, target: bytes) -> MigrationOutcome:
        """Hand ``agent`` to ``target`` without talking to it (a bundle carries the copy): the
        same claim as a handoff, with no OFFER. The witness set stays as it is."""
        ctx = self.ctx
        if target == ctx.key.public_key:
            raise BadTarget("the target is this node")
        async with self.gate.agent(agent) as port:
            if not port.machine.may_tick:
                raise NotOwnerHere(
                    f"{agent} is not owned in this process (it is {port.record.state})"
                )
            epoch = port.record.epoch
            mid = ctx.env.token(16)
            await port.handle(BeginHandoff(target, mid))
            checkpoint = await self.runner.handoff_checkpoint(agent)
            custody = await ctx.store.custody(agent)
            previous = custody[-1]
            record = UnsignedTransferRecord(
                agent=agent,
                from_epoch=epoch,
                to_epoch=epoch + 1,
                from_node=ctx.key.public_key,
                to_node=target,
                prev=checkpoint.digest(),
                migration_id=mid,
                wall_ns=ctx.env.wall_ns(),
                witnesses=previous.witnesses,
            ).sign(ctx.key)
            claim = Claim(agent, epoch + 1, previous, custody, ctx.ballots.next(), record.encode())
            await drive(
                ctx.transport,
                claim,
                claim.start(),
                ctx.config.claim_round_s,
                full=ctx.full_witnesses,
            )
            outcome = claim.outcome
            if isinstance(outcome, Chosen):
                await port.handle(ClaimResolved(outcome.start, checkpoint.encode()))
                return MigrationOutcome(MigrationResult.TRANSFERRED, epoch=outcome.start.epoch)
            if isinstance(outcome, Stale):
                await port.handle(ClaimStale(outcome.latest))
                return MigrationOutcome(MigrationResult.SUPERSEDED, "a later epoch exists")
            if claim.accept_sent:
                self.claimant.continue_handoff(agent, claim, checkpoint.encode())
                return MigrationOutcome(MigrationResult.UNRESOLVED, claim.missing())
            await port.handle(HandoffAborted(mid, AbortReason.NO_QUORUM))
            return MigrationOutcome(MigrationResult.ABORTED, claim.missing() or "no quorum")

    async def _handoff(
        self, port: AgentPort, epoch: int, mid: bytes, target: bytes, ready: _Ready
    ) -> tuple[MigrationOutcome, tuple[Claim, bytes] | None]:
        """Everything between BeginHandoff and the outcome (the caller holds the lock)."""
        ctx = self.ctx
        agent = port.agent
        claim = ready.claim
        if isinstance(claim.outcome, Stale):  # phase 1 proved a later epoch
            await port.handle(ClaimStale(claim.outcome.latest))
            return MigrationOutcome(MigrationResult.SUPERSEDED, "a later epoch exists"), None
        checkpoint = await self.runner.handoff_checkpoint(agent)
        self.trace.mark(mid, "snapshot")
        blob = checkpoint.encode()
        after, chain = chain_after(ready.custody, 0)
        ticks = max(
            self.replay_asked.get(target, 0), replay_ticks(0, parse_manifest(ready.manifest))
        )
        offer = Offer(
            sender=ctx.key.public_key,
            agent=agent,
            migration_id=mid,
            epoch=epoch,
            chain_after=after,
            chain=chain,
            checkpoint=blob,
            wasm_hash=checkpoint.wasm_hash,
            manifest=ready.manifest,
            wasm=None,  # a target that lacks the module asks for it (GET_MODULE)
            replay=await self._replay_window(agent, checkpoint, ticks),
        )
        self.trace.mark(mid, "offer_built")
        reply: Message | None = None
        if claim.phase is ClaimPhase.WAITING_VALUE:
            with trio.move_on_after(ctx.config.handoff_deadline_s):
                try:
                    reply = await self._offer(target, offer, checkpoint)
                except PeerUnreachable as exc:
                    log.info("offer not answered", agent=agent, step=str(exc))
            self.trace.mark(mid, "offer_answered")
            if isinstance(reply, Reject):
                return (
                    MigrationOutcome(
                        MigrationResult.REJECTED, reply.reason or reply.code.value, reply.code
                    ),
                    None,
                )
            if not isinstance(reply, Ack):
                why = "the target did not answer" if reply is None else "the target answered oddly"
                return MigrationOutcome(MigrationResult.ABORTED, why), None
            if reply.prepared_digest != checkpoint.digest() or reply.migration_id != mid:
                return MigrationOutcome(
                    MigrationResult.ABORTED, "the target acked another copy"
                ), None
            self._step(agent, epoch, mid, "ack_received", target)
            record = UnsignedTransferRecord(
                agent=agent,
                from_epoch=epoch,
                to_epoch=epoch + 1,
                from_node=ctx.key.public_key,
                to_node=target,
                prev=checkpoint.digest(),
                migration_id=mid,
                wall_ns=ctx.env.wall_ns(),
                witnesses=choose_witnesses(
                    previous=claim.previous.witnesses,
                    new_owner=target,
                    candidates=ctx.membership.up_nodes(),
                    down=ctx.membership.down_nodes(),
                    rng=ctx.env.rng,
                    k=ctx.config.witnesses,
                    proposer=ctx.key.public_key,
                    avoid=ctx.full_witnesses.current(trio.current_time()),
                ),
            ).sign(ctx.key)
            witnessed = {w for start in ready.custody for w in start.witnesses}
            for node in set(record.witnesses) - witnessed:
                claim.presume_behind(node)
            sends = claim.provide_value(record.encode())
            self.trace.mark(mid, "accept_sent")
            if claim.phase is ClaimPhase.ACCEPTING:
                with trio.move_on_after(ctx.config.handoff_deadline_s):
                    await drive(
                        ctx.transport,
                        claim,
                        sends,
                        ctx.config.claim_round_s,
                        full=ctx.full_witnesses,
                    )
        outcome = claim.outcome
        if isinstance(outcome, Chosen):
            self.trace.mark(mid, "chosen")
            await port.handle(ClaimResolved(outcome.start, blob))
            self.trace.mark(mid, "retired")
            owner = outcome.start.owner
            if owner == target:
                return MigrationOutcome(
                    MigrationResult.TRANSFERRED, epoch=outcome.start.epoch
                ), None
            if owner == self.ctx.key.public_key:
                return MigrationOutcome(
                    MigrationResult.ABORTED,
                    "an earlier claim of this node won the epoch; it ticks on here",
                ), None
            return MigrationOutcome(
                MigrationResult.SUPERSEDED, "another record won the epoch"
            ), None
        if isinstance(outcome, Stale):
            await port.handle(ClaimStale(outcome.latest))
            return MigrationOutcome(MigrationResult.SUPERSEDED, "a later epoch exists"), None
        if claim.accept_sent:
            return (
                MigrationOutcome(
                    MigrationResult.UNRESOLVED,
                    "the witnesses did not decide in time "
                    f"({claim.missing() or getattr(outcome, 'reason', '')}); still asking",
                ),
                (claim, blob),
            )
        return MigrationOutcome(MigrationResult.ABORTED, claim.missing() or "no quorum"), None


class HandoffTarget:
    """Answers OFFER, COMMIT and ABORT."""

    def __init__(self, ctx: ClaimContext, runner: AgentRunner) -> None:
        self.ctx = ctx
        self.runner = runner
        self.trace = PhaseTrace(ctx.env.now)
        """When each step of recent migrations to here happened (bench, debugging)."""

    @property
    def me(self) -> bytes:
        return self.ctx.key.public_key

    async def on_offer(self, sender: bytes, offer: Offer) -> Message:
        ctx = self.ctx
        agent = offer.agent
        mid = offer.migration_id
        self.trace.mark(mid, "offer_received")
        if offer.sender != sender:
            return Reject(self.me, agent, offer.migration_id, RejectCode.WRONG_SENDER)
        # A brief hold (a persist, a learned successor) passes; a handoff or claim of this agent
        # here (which may wait on the sender: never block on it) gets BUSY.
        waited = 0.0
        while ctx.gate.busy(agent) and waited < OFFER_LOCK_WAIT_S:
            await ctx.env.sleep(OFFER_LOCK_POLL_S)
            waited += OFFER_LOCK_POLL_S
        if ctx.gate.busy(agent):
            return Reject(self.me, agent, offer.migration_id, RejectCode.BUSY, "busy here")
        async with ctx.gate.agent(agent) as port:
            held = await ctx.store.custody(agent) if port.record.state is not ABSENT else []
            try:
                copy = check_offer(offer, sender, held, stored=port.record.pending is None)
                self.trace.mark(mid, "offer_checked")
                if not held:  # verified from the genesis (a held prefix is trusted, not checked)
                    self.runner.custody_verified(copy.epoch_start)
                wasm = await self._module(offer, sender)
                self.trace.mark(mid, "module")
                size = sum(len(b) for b in copy.entries) + len(wasm) + len(offer.manifest)
                refusal = await self.runner.admit_offer(wasm, offer.manifest, size)
                self.trace.mark(mid, "admitted")
                if refusal is not None:
                    raise OfferInvalid(*refusal)
                await self.runner.replay_arrival(offer, copy.custody, copy.checkpoint, wasm)
                self.trace.mark(mid, "replayed")
            except OfferInvalid as exc:
                actions = await port.handle(OfferRefused(offer.migration_id, exc.code, exc.reason))
                reply = replies(actions, self.me, agent)
                if isinstance(reply, Reject) and reply.code is RejectCode.REPLAY_REQUIRED:
                    reply = dataclasses.replace(reply, replay_ticks=exc.replay_ticks)
                return reply
            await ctx.store.put_module(wasm, offer.manifest)
            self.trace.mark(mid, "module_stored")
            start = copy.epoch_start
            actions = await port.handle(
                OfferPrepared(
                    source=sender,
                    migration_id=offer.migration_id,
                    epoch=offer.epoch,
                    head=copy.checkpoint.digest(),
                    witnesses=start.witnesses,
                    entries=copy.entries,
                )
            )
            self.trace.mark(mid, "prepared")
            return replies(actions, self.me, agent)

    async def _module(self, offer: Offer, sender: bytes) -> bytes:
        ctx = self.ctx
        wasm = offer.wasm or await ctx.store.module(offer.wasm_hash)
        if wasm is None:
            try:
                reply = await ctx.transport.request(
                    sender, GetModule(self.me, offer.wasm_hash), ctx.config.offer_timeout_s
                )
            except PeerUnreachable:
                reply = None
            if isinstance(reply, Module):
                wasm = reply.wasm
        if wasm is None or hashlib.sha256(wasm).digest() != offer.wasm_hash:
            raise OfferInvalid(RejectCode.MODULE_UNAVAILABLE, "the module could not be fetched")
        return wasm

    async def on_commit(self, sender: bytes, commit: Commit) -> Message:
        ctx = self.ctx
        agent = commit.agent
        self.trace.mark(commit.migration_id, "commit_received")
        async with ctx.gate.agent(agent) as port:
            record = port.record
            start: EpochStart | None = None
            pending = record.pending
            if (
                record.state is AuthorityState.HANDOFF_PENDING
                and pending is not None
                and pending.migration_id == commit.migration_id
                and pending.source == sender
            ):
                custody = await ctx.store.custody(agent)
                try:
                    start = next_start(custody[-1], commit.record, commit.cert)
                except (InvalidCustody, IndexError) as exc:
                    return Reject(
                        self.me, agent, commit.migration_id, RejectCode.BAD_CUSTODY, str(exc)
                    )
            elif record.last_migration == commit.migration_id:
                custody = await ctx.store.custody(agent)
                start = custody[-1] if custody else None
            before = port.record.state
            actions = await port.handle(CommitReceived(commit.migration_id, start))
            self.trace.mark(commit.migration_id, "started")
            if before is AuthorityState.HANDOFF_PENDING and port.record.state is not before:
                ctx.env.history.emit(
                    "handoff",
                    agent=agent,
                    epoch=port.record.epoch,
                    migration_id=commit.migration_id.hex(),
                    step="committed",
                    peer=sender.hex(),
                    detail=str(port.record.state),
                )
            return replies(actions, self.me, agent)

    async def on_abort(self, sender: bytes, abort: Abort) -> Message:
        async with self.ctx.gate.agent(abort.agent) as port:
            pending = port.record.pending
            if pending is not None and pending.source != sender:
                return Done(self.me, abort.agent)
            actions = await port.handle(AbortReceived(abort.migration_id))
            return replies(actions, self.me, abort.agent)


def _offer_bytes(offer: Offer) -> int:
    """About how many bytes ``offer`` carries (its custody, checkpoint, manifest and window)."""
    replay = offer.replay or ()
    return (
        sum(len(b) for b in offer.chain)
        + len(offer.checkpoint)
        + len(offer.manifest)
        + sum(len(b) for b in replay)
        + len(offer.wasm or b"")
    )


def _commit_again_later(reply: Message) -> bool:
    """A reply to COMMIT that is no answer of the target's authority table (refused by its
    transport or limits, or busy with the agent): the same COMMIT is sent again."""
    return isinstance(reply, Refused) or (
        isinstance(reply, Reject) and reply.code is RejectCode.BUSY
    )


def _why(reply: Message) -> str:
    code = getattr(reply, "code", None)
    reason = getattr(reply, "reason", "") or ""
    return f"{reply.TYPE} {code.value if code is not None else ''} {reason}".strip()[:200]
