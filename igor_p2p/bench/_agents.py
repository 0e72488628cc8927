"""Bench helpers: agents launched on a node core with no network (as ``igor agent run`` does).

Every agent is launched through the authority gate (``Launched``), so its record in the store
says ACTIVE_OWNER at epoch 1 and the store's sink fence accepts its tick commits, exactly as on
a node. The scheduler given is not run here: a bench runs it (or another one) itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from igor_p2p.agent.examples import example_manifest_path
from igor_p2p.agent.source import load_agent_source
from igor_p2p.core.node_core import CorePorts, NodeCore
from igor_p2p.runtime.env import NodeEnv
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.loader import LaunchRequest, prepare_launch
from igor_p2p.runtime.local import Alone, LoopbackTransport
from igor_p2p.runtime.runner import SchedulerRunner
from igor_p2p.runtime.scheduler import SchedulerConfig, TickScheduler
from igor_p2p.runtime.services import NodeServices
from igor_p2p.store.adapter import SqliteAuthorityStore

BUDGET = 10**15
"""µ given to every benchmark agent: never exhausted during a run."""


@dataclass
class LocalCore:
    """A node core over the services' store with a loopback transport and no peers."""

    services: NodeServices
    store: SqliteAuthorityStore
    scheduler: TickScheduler
    core: NodeCore


def local_core(services: NodeServices, config: SchedulerConfig | None = None) -> LocalCore:
    store = SqliteAuthorityStore(services.store, services.committer)
    scheduler = TickScheduler(services, services.tick_sink(), config)
    runner = SchedulerRunner(services, store, scheduler)
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
    return LocalCore(services, store, scheduler, core)


async def launch_agents(
    local: LocalCore, example: str, count: int, *, budget: int = BUDGET, parallel: int = 16
) -> list[HostedAgent]:
    """Launch ``count`` agents of ``example`` (no witnesses: one node); returns them hosted
    (added to ``local.scheduler``, not ticking until it runs)."""
    wasm = load_agent_source(example)
    manifest = example_manifest_path(example).read_bytes()
    dids: list[str] = []
    limiter = trio.CapacityLimiter(parallel)

    async def one() -> None:
        async with limiter:
            launch = await prepare_launch(local.services, LaunchRequest(wasm, manifest, budget), ())
            await local.core.launched(
                launch.did, launch.genesis.encode(), (), launch.wasm, launch.manifest
            )
            dids.append(launch.did)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    agents = local.scheduler.agents
    return [agents[did] for did in dids]


@asynccontextmanager
async def hosted_agents(
    services: NodeServices, example: str, count: int, config: SchedulerConfig | None = None
) -> AsyncIterator[tuple[LocalCore, list[HostedAgent]]]:
    """``count`` launched agents; their instances are closed on exit."""
    local = local_core(services, config)
    agents = await launch_agents(local, example, count)
    try:
        yield local, agents
    finally:
        for agent in agents:
            local.scheduler.remove(agent.did)
            agent.close()
