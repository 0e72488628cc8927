"""The node core without a network or a tick loop, for the CLI's offline commands.

``igor checkpoint import/export`` change what a data directory holds about an agent while no
node runs on it. They still go through the authority gate (the table is the only writer): they
open the data directory, start a node core over a loopback transport and an
:class:`OfflineRunner` that never ticks, feed the event, and close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

from igor_p2p.authority.custody import EpochStart
from igor_p2p.core.node_core import CorePorts, NodeCore
from igor_p2p.errors import IgorError
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.env import NodeEnv
from igor_p2p.runtime.loader import check_runnable
from igor_p2p.runtime.local import Alone, LoopbackTransport
from igor_p2p.runtime.services import NodeServices, RuntimeConfig, open_services
from igor_p2p.store.adapter import SqliteAuthorityStore
from igor_p2p.wire.messages import Offer, RejectCode


class OfflineRunner:
    """An :class:`~igor_p2p.core.ports.AgentRunner` that never ticks: "ticking" an agent here
    only means this process holds a certificate for its epoch; a snapshot of it is its last
    committed checkpoint, re-signed."""

    def __init__(self, services: NodeServices, store: SqliteAuthorityStore) -> None:
        self.services = services
        self.store = store
        self.owned: dict[str, int] = {}

    def ticking(self) -> list[str]:
        return sorted(self.owned)

    def charged_without_tick(self, final_digest: bytes) -> int | None:
        return None  # it never ticks

    async def start(self, agent: str, epoch: int) -> None:
        self.owned[agent] = epoch

    async def stop(self, agent: str) -> None:
        return None

    async def forget(self, agent: str) -> None:
        self.owned.pop(agent, None)

    async def _resigned(self, agent: str, kind: CheckpointKind) -> Checkpoint:
        last = await self.store.last_checkpoint(agent)
        tip = await self.store.head(agent)
        if last is None or tip is None:
            raise IgorError(f"no checkpoint of {agent} is stored here")
        return UnsignedCheckpoint(
            agent=agent,
            epoch=self.owned.get(agent, last.epoch),
            tick=last.tick,
            prev=tip,
            kind=kind,
            wasm_hash=last.wasm_hash,
            manifest_hash=last.manifest_hash,
            budget=last.budget,
            price=last.price,
            wall_ns=self.services.clock.wall_ns(),
            state=last.state,
            owner=self.services.key.public_key,
        ).sign(self.services.key)

    async def handoff_checkpoint(self, agent: str) -> Checkpoint:
        return await self._resigned(agent, CheckpointKind.HANDOFF)

    async def final_checkpoint(self, agent: str) -> bytes | None:
        return (await self._resigned(agent, CheckpointKind.FINAL)).encode()

    def custody_verified(self, start: EpochStart) -> None:
        self.services.verified_custody.remember(start)

    async def replay_arrival(
        self, offer: Offer, custody: Sequence[EpochStart], checkpoint: Checkpoint, wasm: bytes
    ) -> None:
        return None  # an offline core takes no offers (its transport has no peers)

    async def admit_offer(
        self, wasm: bytes, manifest: bytes, incoming_bytes: int
    ) -> tuple[RejectCode, str] | None:
        try:
            await check_runnable(self.services, wasm, manifest)
        except IgorError as exc:
            return RejectCode.CAPABILITY_MISSING, str(exc)
        return None


@dataclass(frozen=True)
class OfflineCore:
    core: NodeCore
    services: NodeServices
    store: SqliteAuthorityStore
    runner: OfflineRunner


@asynccontextmanager
async def offline_core(data: DataDir, runtime: RuntimeConfig) -> AsyncIterator[OfflineCore]:
    async with open_services(data, runtime) as services, core_over(services) as offline:
        yield offline


@asynccontextmanager
async def core_over(services: NodeServices) -> AsyncIterator[OfflineCore]:
    """The offline node core over services already open (a data directory this process
    holds); closed again when the block ends."""
    store = SqliteAuthorityStore(services.store, services.committer)
    runner = OfflineRunner(services, store)
    me = services.key.public_key
    core = NodeCore(
        services.key,
        CorePorts(
            store=store,
            transport=LoopbackTransport(me),
            runner=runner,
            env=NodeEnv(services.clock, services.history),
            membership=Alone(me),
        ),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(core.run, restart=False))
        try:
            yield OfflineCore(core, services, store, runner)
        finally:
            nursery.cancel_scope.cancel()


async def claim_here(offline: OfflineCore, agent: str, timeout_s: float = 10.0) -> bool:
    """Prove ownership in this process: an ACTIVE_OWNER record claims its next epoch (for an
    agent with no witnesses, at once). True once this process holds the certificate."""
    from igor_p2p.authority.events import Restarted

    core = offline.core
    view = core.describe(agent)
    if view is None:
        record = await offline.store.record(agent)
        if record is None:
            return False
        await core.gate.feed(agent, Restarted())
    elif not view["ticking"]:
        await core.gate.feed(agent, Restarted())
    with trio.move_on_after(timeout_s):
        while True:
            view = core.describe(agent)
            if view is not None and view["ticking"]:
                return True
            if view is not None and view["state"] != "ACTIVE_OWNER":
                return False
            await trio.sleep(0.01)
    return False
