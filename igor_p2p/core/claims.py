"""Running claims: ballots over the transport, and the background claim loop.

:func:`drive` sends a :class:`~igor_p2p.authority.claim.Claim`'s requests, feeds every reply
back to it, and returns when the claim is done, waits for a value, or the round times out.

:class:`Claimant` runs the claims the authority table starts (``StartClaim``): a resume
(self-transfer), a forced recovery, a pending target's settlement, and a handoff whose decision
is still open. It retries with higher ballots and an exponential, jittered backoff, for as long as
the agent's machine is still making that claim, and feeds the result back through the gate:
:class:`~igor_p2p.authority.events.ClaimResolved` or
:class:`~igor_p2p.authority.events.ClaimStale`. Without a quorum it waits and says so
(``Run.waiting``); it never guesses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import trio

from igor_p2p.authority.claim import (
    Chosen,
    Claim,
    ClaimOutcome,
    ClaimPhase,
    Failed,
    SendTo,
    Stale,
)
from igor_p2p.authority.custody import EpochStart, InvalidCustody, read_chain
from igor_p2p.authority.events import ClaimResolved, ClaimStale, SourceAborted
from igor_p2p.authority.record import ClaimPurpose, Phase
from igor_p2p.authority.table import IllegalTransition
from igor_p2p.authority.witness_choice import choose_witnesses
from igor_p2p.core.backoff import Backoff
from igor_p2p.core.config import CoreConfig
from igor_p2p.core.full_witnesses import FullWitnesses
from igor_p2p.core.gate import Gate
from igor_p2p.core.ports import AuthorityStore, Env, Membership, PeerUnreachable, Transport
from igor_p2p.errors import IgorError
from igor_p2p.lineage.cert import BALLOT_NONCE_BYTES, Ballot
from igor_p2p.lineage.custody import UnsignedForcedRecovery, UnsignedTransferRecord
from igor_p2p.lineage.identity import Keypair
from igor_p2p.logs import get_logger
from igor_p2p.wire.messages import Holding, Status, StatusReply

log = get_logger(__name__)


async def drive(
    transport: Transport,
    claim: Claim,
    sends: Sequence[SendTo],
    timeout: float,
    *,
    full: FullWitnesses | None = None,
) -> None:
    """Run ``sends`` and every follow-up until the claim is done or waits for a value; the
    witnesses that refused as full are noted in ``full``."""
    done = trio.Event()
    retry_after = max(timeout / 3, 0.05)

    def settled() -> bool:
        return claim.phase in (ClaimPhase.DONE, ClaimPhase.WAITING_VALUE)

    async with trio.open_nursery() as nursery:

        def dispatch(more: Sequence[SendTo]) -> None:
            for send in more:
                nursery.start_soon(ask, send)
            if settled():
                done.set()

        async def ask(send: SendTo) -> None:
            # A lost request or reply is asked again until the round ends: a witness that
            # stays silent simply never counts.
            while True:
                try:
                    reply = await transport.request(send.node, send.message, retry_after)
                except PeerUnreachable:
                    await trio.sleep(retry_after / 4)
                    continue
                dispatch(claim.on_reply(send.node, reply))
                return

        dispatch(sends)
        with trio.move_on_after(timeout):
            await done.wait()
        nursery.cancel_scope.cancel()
    if full is not None and claim.full:
        full.note(claim.full, trio.current_time())


def _spawn(nursery: trio.Nursery | None, fn, *args) -> None:  # type: ignore[no-untyped-def]
    if nursery is None:
        return
    try:
        nursery.start_soon(fn, *args)
    except RuntimeError:  # the node is stopping
        return


class Ballots:
    """Ballot numbers of one node incarnation (memory only; a fresh nonce per incarnation)."""

    def __init__(self, me: bytes, nonce: bytes) -> None:
        if len(nonce) != BALLOT_NONCE_BYTES:
            raise ValueError("ballot nonce length")
        self.me = me
        self.nonce = nonce
        self._round = 0

    def next(self, above: int = 0) -> Ballot:
        self._round = max(self._round, above) + 1
        return Ballot(self._round, self.me, self.nonce)


@dataclass(frozen=True)
class ClaimContext:
    """What the claimant needs from the node (narrow dependencies, no node object)."""

    key: Keypair
    store: AuthorityStore
    transport: Transport
    gate: Gate
    env: Env
    config: CoreConfig
    membership: Membership
    ballots: Ballots
    backoff: Backoff
    """How retries wait (a network change ends every wait)."""
    full_witnesses: FullWitnesses
    """Witnesses that lately refused a new agent as full: new witness sets avoid them."""


class Claimant:
    """Runs background claims; start it with :meth:`run` in the node's nursery."""

    def __init__(self, ctx: ClaimContext) -> None:
        self.ctx = ctx
        self._nursery: trio.Nursery | None = None
        self._pending: list[tuple[str, ClaimPurpose, int, str]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for args in self._pending:
                nursery.start_soon(self._loop, *args)
            self._pending.clear()
            task_status.started()
            await trio.sleep_forever()

    def start(self, agent: str, purpose: ClaimPurpose, slot: int, operator: str = "") -> None:
        if self._nursery is None:
            self._pending.append((agent, purpose, slot, operator))
        else:
            _spawn(self._nursery, self._loop, agent, purpose, slot, operator)

    def continue_handoff(self, agent: str, claim: Claim, checkpoint: bytes) -> None:
        """A source's transfer may be chosen but the handoff ran out of time: keep asking the
        witnesses (higher ballots, adopting what they accepted) until the slot is decided."""
        _spawn(self._nursery, self._handoff_loop, agent, claim, checkpoint)

    async def _handoff_loop(self, agent: str, first: Claim, checkpoint: bytes) -> None:
        ctx = self.ctx
        retries = ctx.backoff.retries()
        above = first.highest_round
        while True:
            machine = ctx.gate.peek(agent)
            if machine is None or machine.run.phase is not Phase.HANDING_OFF:
                return
            claim = Claim(
                agent,
                first.slot,
                first.previous,
                first.custody,
                ctx.ballots.next(above),
                first.own_value,
            )
            await drive(
                ctx.transport,
                claim,
                claim.start(),
                ctx.config.claim_round_s,
                full=ctx.full_witnesses,
            )
            outcome = claim.outcome
            if isinstance(outcome, Chosen):
                await self._feed(agent, ClaimResolved(outcome.start, checkpoint))
                return
            if isinstance(outcome, Stale):
                await self._feed(agent, ClaimStale(outcome.latest))
                return
            above = max(above, claim.highest_round)
            self._set_waiting(agent, f"handing off: {claim.missing() or 'no quorum'}")
            await retries.wait()

    # ---------------------------------------------------------------- the loop

    def _still_claiming(self, agent: str, purpose: ClaimPurpose, slot: int) -> bool:
        """The agent's machine still makes this claim, for this slot (a claim for a later slot
        is another loop's)."""
        machine = self.ctx.gate.peek(agent)
        if machine is None:
            return False
        if purpose is ClaimPurpose.RESUME and machine.run.phase is Phase.HANDING_OFF:
            return False
        return (
            machine.run.phase is Phase.CLAIMING
            and machine.run.claim is purpose
            and machine.record.epoch + 1 == slot
        )

    def _set_waiting(self, agent: str, words: str) -> None:
        machine = self.ctx.gate.peek(agent)
        if machine is not None:
            machine.run.waiting = words

    async def _loop(self, agent: str, purpose: ClaimPurpose, slot: int, operator: str) -> None:
        ctx = self.ctx
        retries = ctx.backoff.retries()
        above = 0
        if purpose is ClaimPurpose.SETTLE:
            # The source is deciding; settle only if its COMMIT or ABORT does not come.
            await ctx.env.sleep(ctx.config.settle_after_s)
        while self._still_claiming(agent, purpose, slot):
            try:
                outcome = await self._attempt(agent, purpose, slot, operator, above)
            except IgorError as exc:
                outcome = Failed(str(exc), above)
            result: ClaimResolved | ClaimStale | SourceAborted | None = None
            if isinstance(outcome, Chosen):
                result = ClaimResolved(outcome.start)
            elif isinstance(outcome, Stale):
                result = ClaimStale(outcome.latest)
            elif isinstance(outcome, SourceAborted):
                result = outcome
            if result is not None:
                await self._feed(agent, result)
                if not self._still_claiming(agent, purpose, slot):
                    return
                # The table did not act on it (it proves nothing it can use): keep asking, or
                # the machine would wait in CLAIMING with nobody claiming.
                reason = f"{type(result).__name__} did not settle it"
            else:
                reason = outcome.reason if isinstance(outcome, Failed) else "no answer yet"
                above = max(above, outcome.highest_round if isinstance(outcome, Failed) else 0)
            self._set_waiting(agent, f"claiming epoch {slot}: {reason}")
            ctx.env.history.emit(
                "handoff",
                agent=agent,
                epoch=slot - 1,
                migration_id="",
                step="claim_retry",
                peer="",
                detail=f"{purpose.value}: {reason}",
            )
            await retries.wait()

    async def _feed(self, agent: str, event: ClaimResolved | ClaimStale | SourceAborted) -> None:
        try:
            await self.ctx.gate.feed(agent, event)
        except IllegalTransition as exc:
            log.info("claim result not applicable", agent=agent, step=str(exc))
        except IgorError as exc:
            log.warning("claim result failed", agent=agent, step=str(exc))

    async def _attempt(
        self, agent: str, purpose: ClaimPurpose, slot: int, operator: str, above: int
    ) -> ClaimOutcome | SourceAborted | None:
        ctx = self.ctx
        custody = await ctx.store.custody(agent)
        if not custody:
            raise InvalidCustody("no custody stored for the agent")
        previous = custody[-1]
        if previous.epoch >= slot:
            # The verified custody this node stores already goes past the slot (a stale
            # pending copy, say): the slot is decided, and later epochs are proven.
            return Stale((previous,))
        if previous.epoch != slot - 1:
            raise InvalidCustody(f"stored custody ends at epoch {previous.epoch}, not {slot - 1}")
        if purpose is ClaimPurpose.SETTLE:
            return await self._settle(agent, custody, above)
        value = None
        if purpose is ClaimPurpose.RESUME:
            value = await self._resume_record(agent, previous)
        elif purpose is ClaimPurpose.FORCE:
            value = await self._forced_record(agent, previous, operator)
        claim = Claim(agent, slot, previous, custody, ctx.ballots.next(above), value)
        await drive(
            ctx.transport,
            claim,
            claim.start(),
            ctx.config.claim_round_s,
            full=ctx.full_witnesses,
        )
        return claim.outcome if claim.outcome is not None else Failed(claim.missing(), above)

    def _witnesses_for(self, previous: EpochStart, new_owner: bytes) -> tuple[bytes, ...]:
        ctx = self.ctx
        return choose_witnesses(
            previous=previous.witnesses,
            new_owner=new_owner,
            candidates=ctx.membership.up_nodes(),
            down=ctx.membership.down_nodes(),
            rng=ctx.env.rng,
            k=ctx.config.witnesses,
            avoid=ctx.full_witnesses.current(trio.current_time()),
        )

    async def _resume_record(self, agent: str, previous: EpochStart) -> bytes:
        ctx = self.ctx
        head = await ctx.store.head(agent)
        assert head is not None
        me = ctx.key.public_key
        return (
            UnsignedTransferRecord(
                agent=agent,
                from_epoch=previous.epoch,
                to_epoch=previous.epoch + 1,
                from_node=me,
                to_node=me,
                prev=head,
                migration_id=ctx.env.token(16),
                wall_ns=ctx.env.wall_ns(),
                witnesses=self._witnesses_for(previous, me),
            )
            .sign(ctx.key)
            .encode()
        )

    async def _forced_record(self, agent: str, previous: EpochStart, operator: str) -> bytes:
        ctx = self.ctx
        head = await ctx.store.head(agent)
        assert head is not None
        me = ctx.key.public_key
        return (
            UnsignedForcedRecovery(
                agent=agent,
                from_epoch=previous.epoch,
                to_epoch=previous.epoch + 1,
                node=me,
                prev=head,
                forced_by=operator or "operator",
                reason="forced recovery",
                wall_ns=ctx.env.wall_ns(),
                witnesses=self._witnesses_for(previous, me),
            )
            .sign(ctx.key)
            .encode()
        )

    # ---------------------------------------------------------------- settlement

    async def _settle(
        self, agent: str, custody: list[EpochStart], above: int
    ) -> ClaimOutcome | SourceAborted | None:
        """A pending target: find out what the source's handoff came to."""
        ctx = self.ctx
        machine = ctx.gate.peek(agent)
        if machine is None or machine.record.pending is None:
            return Failed("no pending copy", above)
        pending = machine.record.pending
        previous = custody[-1]
        asked = sorted(set(previous.witnesses) | {pending.source})
        replies = await self._status_all(agent, asked, previous.epoch)
        proven: list[EpochStart] = []
        adoptable = False
        source_aborted = False
        for node, reply in replies:
            try:
                starts = read_chain(reply.chain_after, reply.chain, previous)
            except InvalidCustody:
                starts = []
            if starts:
                proven = max(proven, starts, key=lambda s: s[-1].epoch if s else 0)
            if reply.accepted_record is not None and reply.chosen == previous.epoch:
                adoptable = True
            if node == pending.source and reply.epoch == previous.epoch:
                # The source ticks the epoch again (it aborted our handoff before any ACCEPT
                # left: only then does it tick on), or a tick ended the agent there (it does so
                # only with no handoff in flight, testnet soak seed 1042): no witness accepted
                # our transfer, so it can never be chosen.
                ticks_on = (
                    reply.holding is Holding.OWNER and reply.migration_id != pending.migration_id
                )
                if ticks_on or reply.holding is Holding.BUDGET_EXHAUSTED:
                    source_aborted = True
        if proven:
            return Stale(tuple(proven))
        if adoptable:
            claim = Claim(agent, previous.epoch + 1, previous, custody, ctx.ballots.next(above))
            await drive(
                ctx.transport,
                claim,
                claim.start(),
                ctx.config.claim_round_s,
                full=ctx.full_witnesses,
            )
            if claim.outcome is not None:
                return claim.outcome
            return Failed(claim.missing() or "nothing accepted to complete", claim.highest_round)
        if source_aborted:
            return SourceAborted(pending.migration_id)
        return Failed("waiting for the source's decision", above)

    async def _status_all(
        self, agent: str, nodes: Sequence[bytes], known: int
    ) -> list[tuple[bytes, StatusReply]]:
        ctx = self.ctx
        me = ctx.key.public_key
        out: list[tuple[bytes, StatusReply]] = []

        async def ask(node: bytes) -> None:
            try:
                reply = await ctx.transport.request(
                    node, Status(sender=me, agent=agent, known=known), ctx.config.request_timeout_s
                )
            except PeerUnreachable:
                return
            if isinstance(reply, StatusReply) and reply.agent == agent:
                out.append((node, reply))

        async with trio.open_nursery() as nursery:
            for node in nodes:
                if node != me:
                    nursery.start_soon(ask, node)
        out.sort(key=lambda pair: pair[0])
        return out
