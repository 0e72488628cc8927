"""The simulator's :class:`~igor_p2p.core.ports.AgentRunner`: agents as pure functions.

A tick turns the state into ``sha256(state || tick)``, costs one unit of budget and takes
``tick_time`` of virtual time; every tick is committed as a real, signed checkpoint through the
store's fenced ``append_ticks`` (so the sink check of the real store is exercised too). No
threads, no wasm: every tick is a deterministic function of the seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.events import BudgetExhausted
from igor_p2p.core.offer_check import OfferInvalid
from igor_p2p.core.ports import StoreRefused
from igor_p2p.effects.arrival import ArrivalRefused, checked_window
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.sim.disk import SimStore
from igor_p2p.wire.messages import Offer, RejectCode

TICK_COST = 1


@dataclass
class _Hosted:
    agent: str
    epoch: int
    tick: int
    budget: int
    state: bytes
    head: bytes
    wasm_hash: bytes
    manifest_hash: bytes
    scope: trio.CancelScope | None = None
    running: trio.Event | None = None
    stopped: bool = True


class FakeRunner:
    def __init__(
        self,
        *,
        key: Keypair,
        store: SimStore,
        record: Callable[..., None],
        now_ns: Callable[[], int],
        wall_ns: Callable[[], int],
        tick_time: float,
        report: Callable[[str, BudgetExhausted], None],
        capacity: int | None = None,
        replay_on_arrival: int = 0,
        cover: Callable[[str], None] = lambda _probe: None,
    ) -> None:
        self.cover = cover
        self.capacity = capacity
        """Offers beyond this many held agents are refused NO_CAPACITY (None: no limit)."""
        self.replay_on_arrival = replay_on_arrival
        """The node policy of replay on arrival: an offer must carry a window of this many
        ticks, checked as the real runner checks it (chain, owners' signatures, reach); the
        simulator runs no agent code, so the ticks themselves are not re-executed."""
        self.key = key
        self.store = store
        self.record = record
        self.now_ns = now_ns
        self.wall_ns = wall_ns
        self.tick_time = tick_time
        self.report = report
        self.nursery: trio.Nursery | None = None
        self.hosted: dict[str, _Hosted] = {}
        self.offered: dict[str, Checkpoint] = {}

    def ticking(self) -> list[str]:
        return sorted(a for a, h in self.hosted.items() if not h.stopped)

    def charged_without_tick(self, final_digest: bytes) -> int | None:
        return None  # its ticks never fail

    async def start(self, agent: str, epoch: int) -> None:
        last = await self.store.last_checkpoint(agent)
        head = await self.store.head(agent)
        assert last is not None and head is not None
        hosted = _Hosted(
            agent=agent,
            epoch=epoch,
            tick=last.tick,
            budget=last.budget,
            state=last.state,
            head=head,
            wasm_hash=last.wasm_hash,
            manifest_hash=last.manifest_hash,
        )
        old = self.hosted.get(agent)
        if old is not None and old.scope is not None:
            old.scope.cancel()
        self.hosted[agent] = hosted
        hosted.stopped = False
        assert self.nursery is not None
        try:
            self.nursery.start_soon(self._loop, hosted)
        except RuntimeError:  # the node is going down
            hosted.stopped = True

    async def _loop(self, hosted: _Hosted) -> None:
        with trio.CancelScope() as scope:
            hosted.scope = scope
            while not hosted.stopped and hosted.budget > 0:
                hosted.running = trio.Event()
                try:
                    await self._tick(hosted)
                finally:
                    hosted.running.set()
                    hosted.running = None
            if hosted.budget <= 0 and not hosted.stopped:
                final = self._checkpoint(hosted, CheckpointKind.FINAL)
                hosted.stopped = True
                self.report(hosted.agent, BudgetExhausted(final.encode()))

    async def _tick(self, hosted: _Hosted) -> None:
        start = self.now_ns()
        tick = hosted.tick + 1
        state = hashlib.sha256(hosted.state + tick.to_bytes(8, "big")).digest()
        await trio.sleep(self.tick_time)  # the tick runs; ticks follow one another
        end = self.now_ns()
        if hosted.stopped:
            return
        self.record(
            "tick",
            agent=hosted.agent,
            epoch=hosted.epoch,
            tick=tick,
            start_ns=start,
            end_ns=end,
            fuel=1,
            cost=TICK_COST,
        )
        draft = _Hosted(**{**hosted.__dict__, "tick": tick, "state": state})
        draft.budget = hosted.budget - TICK_COST
        ck = self._checkpoint(draft, CheckpointKind.TICK)
        try:
            await self.store.append_ticks(hosted.agent, hosted.epoch, [ck])
        except StoreRefused:
            hosted.stopped = True  # the sink fence: this node no longer owns the epoch
            return
        hosted.tick, hosted.state, hosted.budget, hosted.head = (
            tick,
            state,
            draft.budget,
            ck.digest(),
        )
        self.record(
            "commit",
            agent=hosted.agent,
            epoch=hosted.epoch,
            tick=tick,
            kind="TICK",
            digest=ck.digest(),
            prev=ck.prev,
            budget=ck.budget,
        )

    def _checkpoint(self, hosted: _Hosted, kind: CheckpointKind) -> Checkpoint:
        return UnsignedCheckpoint(
            agent=hosted.agent,
            epoch=hosted.epoch,
            tick=hosted.tick,
            prev=hosted.head,
            kind=kind,
            wasm_hash=hosted.wasm_hash,
            manifest_hash=hosted.manifest_hash,
            budget=hosted.budget,
            price=1,
            wall_ns=self.wall_ns(),
            state=hosted.state,
            owner=self.key.public_key,
        ).sign(self.key)

    async def stop(self, agent: str) -> None:
        hosted = self.hosted.get(agent)
        if hosted is None:
            return
        hosted.stopped = True
        if hosted.running is not None:
            await hosted.running.wait()
        if hosted.scope is not None:
            hosted.scope.cancel()

    async def forget(self, agent: str) -> None:
        await self.stop(agent)
        self.hosted.pop(agent, None)

    async def handoff_checkpoint(self, agent: str) -> Checkpoint:
        hosted = self.hosted[agent]
        o = self.offered.get(agent)
        if o is not None and (o.epoch, o.tick, o.prev, o.budget, o.state) == (
            hosted.epoch,
            hosted.tick,
            hosted.head,
            hosted.budget,
            hosted.state,
        ):
            return o
        self.offered[agent] = self._checkpoint(hosted, CheckpointKind.HANDOFF)
        return self.offered[agent]

    async def final_checkpoint(self, agent: str) -> bytes | None:
        hosted = self.hosted.get(agent)
        return self._checkpoint(hosted, CheckpointKind.FINAL).encode() if hosted else None

    def custody_verified(self, start: EpochStart) -> None:
        self.cover("custody_verified")  # the simulated runner verifies nothing when it starts

    async def replay_arrival(
        self, offer: Offer, custody: Sequence[EpochStart], checkpoint: Checkpoint, wasm: bytes
    ) -> None:
        if self.replay_on_arrival == 0:
            return
        try:
            checked_window(offer, checkpoint, custody, self.replay_on_arrival)
        except ArrivalRefused as exc:
            self.cover(f"replay:{exc.code.value}")
            raise OfferInvalid(exc.code, exc.reason, exc.replay_ticks) from None
        self.cover("replay:window_checked")

    async def admit_offer(
        self, wasm: bytes, manifest: bytes, incoming_bytes: int
    ) -> tuple[RejectCode, str] | None:
        if self.capacity is not None and len(self.store_agents()) >= self.capacity:
            return RejectCode.NO_CAPACITY, f"this node holds {self.capacity} agents already"
        return None

    def store_agents(self) -> list[str]:
        """Agents this node holds any record of, other than retired ones."""
        state = self.store.disk.state
        return [a for a, r in state.records.items() if str(r.state) != "RETIRED"]
