"""The node-scoped services every runtime piece needs, bundled so no call takes a long list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from igor_p2p.agent.sandbox import Sandbox, SandboxConfig
from igor_p2p.effects.http import Resolver, system_resolve
from igor_p2p.effects.settlement import MockSettlement, Settlement
from igor_p2p.history import HistoryWriter
from igor_p2p.lineage.identity import Keypair
from igor_p2p.runtime.agent_logs import AgentLogBook
from igor_p2p.runtime.capacity import NodeBudget
from igor_p2p.runtime.clock import NodeClock
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.lock import DataDirLock
from igor_p2p.runtime.metering import DEFAULT_PRICE
from igor_p2p.runtime.ticksink import StoreTickSink
from igor_p2p.runtime.verified_custody import VerifiedCustody
from igor_p2p.store.committer import GroupCommitter
from igor_p2p.store.retention import Retention
from igor_p2p.store.sqlite import Store

SETTLEMENT_LEDGER = "settlement.jsonl"
"""The mock settlement's ledger in DATA_DIR (one JSON line per settled payment)."""


@dataclass(frozen=True)
class RuntimeConfig:
    """Node-wide runtime settings."""

    price: int = DEFAULT_PRICE
    """µ per 1,000 fuel charged to agents this node hosts."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    node_name: str = ""
    """Name used in history and logs (e.g. ``n1``); the peer ID when empty."""
    resources: NodeBudget = field(default_factory=NodeBudget)
    """The node-wide memory and disk budget and the per-agent storage cap."""
    retention: Retention = field(default_factory=Retention)
    """Which checkpoints the store keeps (the last N plus custody; or all)."""
    replay_on_arrival: int = 0
    """Ticks of an incoming agent re-executed before it is taken (0: off; a manifest may ask
    for more, up to ``MAX_REPLAY_TICKS``)."""


@dataclass
class NodeServices:
    """Store, sandbox, key, clock and history of one node (or one local CLI run)."""

    data: DataDir
    key: Keypair
    store: Store
    committer: GroupCommitter
    sandbox: Sandbox
    history: HistoryWriter
    clock: NodeClock
    config: RuntimeConfig
    peer_id: str
    on_migration_request: Callable[[str, bytes], None] | None = None
    agent_logs: AgentLogBook = field(default_factory=AgentLogBook)
    """What hosted agents printed (bounded): ``igor agent logs`` and ``igor agent run``."""
    settlement: Settlement = field(default_factory=MockSettlement)
    """Where agents' payments go (``igor.wallet_pay``); the mock settles locally."""
    resolve: Resolver = system_resolve
    """How agents' HTTP requests resolve host names (tests give their own)."""
    verified_custody: VerifiedCustody = field(default_factory=VerifiedCustody)
    """The custody each agent's last load in this process verified (bounded, not persisted)."""

    @property
    def price(self) -> int:
        return self.config.price

    def tick_sink(self) -> StoreTickSink:
        """The scheduler's durable sink on this store, under this runtime's retention."""
        return StoreTickSink(self.committer, self.config.retention)

    @property
    def owned_append(self) -> StoreTickSink:
        """The owner-fenced append the effect journals write through."""
        return self.tick_sink()


def default_peer_id(key: Keypair) -> str:
    """The libp2p peer ID of a node key (the same seed is the node's libp2p identity)."""
    from igor_p2p.net.peerid import peer_id_from_public_key

    return peer_id_from_public_key(key.public_key)


@asynccontextmanager
async def open_services(
    data: DataDir, config: RuntimeConfig | None = None, *, lock: bool = True
) -> AsyncIterator[NodeServices]:
    """Open a data directory for running agents: lock, key, store, committer, sandbox, history.

    The directory lock makes sure one process at a time runs agents from it.
    """
    config = config or RuntimeConfig()
    data.ensure()
    with DataDirLock(data.root) if lock else _null_lock():
        key = data.node_keypair()
        peer_id = default_peer_id(key)
        store = await trio.to_thread.run_sync(Store.open, data.database)
        sandbox = Sandbox(config.sandbox)
        clock = NodeClock()
        history = HistoryWriter(
            data.history, node=config.node_name or peer_id, peer_id=peer_id, clock=clock
        )
        committer = GroupCommitter(store)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(committer.run)
                try:
                    yield NodeServices(
                        data=data,
                        key=key,
                        store=store,
                        committer=committer,
                        sandbox=sandbox,
                        history=history,
                        clock=clock,
                        config=config,
                        peer_id=peer_id,
                        settlement=MockSettlement(data.root / SETTLEMENT_LEDGER),
                    )
                finally:
                    with trio.CancelScope(shield=True):
                        await committer.aclose()
                    nursery.cancel_scope.cancel()
        finally:
            sandbox.close()
            history.close()
            store.close()


class _null_lock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
