"""The production :class:`~igor_p2p.core.ports.AgentRunner`: the wasmtime tick scheduler.

The authority gate tells it when: ``start`` loads and verifies the agent for the epoch the gate
certified and schedules it; ``stop`` quiesces it at a tick boundary (its instance stays, paused,
so a handoff or a halt can snapshot it); ``forget`` takes it off and closes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from igor_p2p.agent.environment import ResumeReason
from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.authority.custody import EpochStart
from igor_p2p.bounded import BoundedLRU
from igor_p2p.core.offer_check import OfferInvalid
from igor_p2p.core.ports import AuthorityStore
from igor_p2p.effects.arrival import (
    ArrivalRefused,
    Evidence,
    checked_window,
    keep_evidence,
    replay_ticks,
)
from igor_p2p.effects.replay import ReplayOverBudget, replay_lineage
from igor_p2p.errors import IgorError
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind
from igor_p2p.net.ratelimit import TokenBucket
from igor_p2p.runtime.capacity import ResourceCheck, admit_offer
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.loader import check_runnable, compile_module, load_hosted
from igor_p2p.runtime.scheduler import TickScheduler
from igor_p2p.runtime.services import NodeServices
from igor_p2p.wire.messages import Offer, RejectCode

ARRIVAL_REPLAY_FUEL = 2_000_000_000
"""Most fuel one arrival's replay may burn (about a second of one core): the incoming agent's
ticks run on this node's CPU for nobody's budget, so the node bounds them."""
REPLAY_FUEL_PER_S = 250_000_000
"""Replay fuel this node spends per second on all arrivals together, at most (about a quarter
of a core); an arrival asking for more while the bucket is low is refused POLICY_DENIED."""

KNOWN_RUNNABLE = 1024
"""Module/manifest pairs remembered as runnable here (the sandbox and its limits are fixed for
the process, so the verdict does not change)."""


class SchedulerRunner:
    def __init__(
        self,
        services: NodeServices,
        store: AuthorityStore,
        scheduler: TickScheduler,
        *,
        on_hosted: Callable[[HostedAgent], None] | None = None,
    ) -> None:
        self.services = services
        self.store = store
        self.scheduler = scheduler
        self.on_hosted = on_hosted
        self.tick_limit: int | None = None
        """Local runs: stop after this many ticks."""
        self.resources: Callable[[], Awaitable[ResourceCheck]] | None = None
        """The node's resource check (incoming agents beyond the budget get NO_CAPACITY)."""
        self._runnable: BoundedLRU[tuple[bytes, bytes], None] = BoundedLRU(KNOWN_RUNNABLE)
        """(module, manifest) hashes that compiled and instantiated here (checked once)."""
        self.arrival_ticks_replayed = 0
        """Ticks of incoming agents re-executed to identical states (replay on arrival)."""
        self.arrival_mismatches = 0
        """Offers refused because a replayed state differed (each kept as evidence)."""
        self.replay_fuel = TokenBucket(REPLAY_FUEL_PER_S, 2 * ARRIVAL_REPLAY_FUEL)
        """The node-wide replay fuel (a node replays for someone else on its own CPU)."""
        self.arrival_replays_refused = 0
        """Offers refused because their replay would cost more than the node spends."""

    def ticking(self) -> list[str]:
        return sorted(self.scheduler.agents)

    def charged_without_tick(self, final_digest: bytes) -> int | None:
        return self.scheduler.final_charges.get(final_digest)

    async def start(self, agent: str, epoch: int) -> None:
        held = self.scheduler.held(agent)
        if held is not None and held.epoch == epoch and agent in self.scheduler.agents:
            self.scheduler.unpause(agent)
            return
        if held is not None:
            self.scheduler.remove(agent)
            held.close()
        reason = ResumeReason.MIGRATED if epoch > 1 else ResumeReason.RESTARTED
        hosted = await load_hosted(self.services, self.store, agent, epoch, reason)
        self.scheduler.add(hosted, tick_limit=self.tick_limit)
        if self.on_hosted is not None:
            self.on_hosted(hosted)

    async def stop(self, agent: str) -> None:
        try:
            await self.scheduler.quiesce(agent)
        except KeyError:
            return

    async def forget(self, agent: str) -> None:
        await self.stop(agent)
        hosted = self.scheduler.remove(agent)
        if hosted is not None:
            hosted.close()

    async def handoff_checkpoint(self, agent: str) -> Checkpoint:
        return await self.scheduler.checkpoint_now(agent, CheckpointKind.HANDOFF)

    async def final_checkpoint(self, agent: str) -> bytes | None:
        if self.scheduler.held(agent) is None:
            return None
        checkpoint = await self.scheduler.checkpoint_now(agent, CheckpointKind.FINAL)
        return checkpoint.encode()

    async def admit_offer(
        self, wasm: bytes, manifest: bytes, incoming_bytes: int
    ) -> tuple[RejectCode, str] | None:
        known = (hashlib.sha256(wasm).digest(), hashlib.sha256(manifest).digest())
        if known not in self._runnable:
            try:
                await check_runnable(self.services, wasm, manifest)
            except IgorError as exc:
                return RejectCode.CAPABILITY_MISSING, str(exc)
            self._runnable[known] = None
        if self.resources is not None:
            verdict = admit_offer(await self.resources(), parse_manifest(manifest), incoming_bytes)
            if not verdict.admitted:
                return RejectCode.NO_CAPACITY, verdict.reason
        return None

    def custody_verified(self, start: EpochStart) -> None:
        self.services.verified_custody.remember(start)

    async def replay_arrival(
        self, offer: Offer, custody: Sequence[EpochStart], checkpoint: Checkpoint, wasm: bytes
    ) -> None:
        services = self.services
        manifest = parse_manifest(offer.manifest)
        ticks = replay_ticks(services.config.replay_on_arrival, manifest)
        if ticks == 0:
            return
        try:
            entries = checked_window(offer, checkpoint, custody, ticks)
        except ArrivalRefused as exc:
            raise OfferInvalid(exc.code, exc.reason, exc.replay_ticks) from None
        compiled = await compile_module(services, wasm)
        now = trio.current_time()
        allowed = int(min(ARRIVAL_REPLAY_FUEL, self.replay_fuel.available(now)))
        if allowed < ARRIVAL_REPLAY_FUEL // 4:
            self.arrival_replays_refused += 1
            raise OfferInvalid(
                RejectCode.POLICY_DENIED,
                "this node is replaying other arrivals at its limit; offer again later",
            )
        # Off the trio thread, as ticks are; each tick under MAX_TICK_FUEL and the watchdog,
        # all of them together under the fuel this node allows one arrival.
        replay = partial(
            replay_lineage,
            [*entries, checkpoint],
            compiled,
            manifest,
            services.sandbox,
            fuel_budget=allowed,
        )
        try:
            report = await trio.to_thread.run_sync(replay)
        except ReplayOverBudget as exc:
            self.replay_fuel.spend(trio.current_time(), allowed)
            self.arrival_replays_refused += 1
            raise OfferInvalid(
                RejectCode.POLICY_DENIED,
                f"replaying {ticks} ticks of this agent takes more than the {allowed:,} fuel "
                f"this node spends on one arrival ({exc})",
            ) from None
        self.replay_fuel.spend(trio.current_time(), report.fuel_used)
        self.arrival_ticks_replayed += report.ticks_verified
        if report.ok:
            return
        self.arrival_mismatches += 1
        found = [Evidence.of(offer, i, services.clock.wall_ns()) for i in report.mismatches]
        await trio.to_thread.run_sync(keep_evidence, services.data.root, found)
        for evidence in found:
            services.history.emit("replay_mismatch", **evidence.to_json())
        first = report.mismatches[0]
        raise OfferInvalid(
            RejectCode.REPLAY_MISMATCH,
            f"replaying ticks {first.first_tick}–{first.last_tick} gave a state other than "
            f"the checkpoint's ({first.detail}); kept as evidence",
        )
