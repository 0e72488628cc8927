"""Launching an agent for runtime tests the way a node does: through the authority gate.

:func:`launch_hosted` makes a genesis (``prepare_launch``), has an offline node core over the
open services persist it (``core.launched``: the gate writes the record, epoch 1, no witnesses)
and loads the running agent for epoch 1 (``load_hosted``), ready for a scheduler of the test's
own. :func:`store_scheduler` is a scheduler whose ticks go to the store's fenced append.
"""

from __future__ import annotations

from igor_p2p.agent.environment import ResumeReason
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.loader import LaunchRequest, load_hosted, prepare_launch
from igor_p2p.runtime.offline import core_over
from igor_p2p.runtime.scheduler import SchedulerConfig, SchedulerHooks, TickScheduler
from igor_p2p.runtime.services import NodeServices


async def launch_hosted(services: NodeServices, request: LaunchRequest) -> HostedAgent:
    """A new agent this node owns at epoch 1 (durably, through the gate), loaded to tick."""
    async with core_over(services) as offline:
        launch = await prepare_launch(services, request, ())
        await offline.core.launched(
            launch.did, launch.genesis.encode(), launch.witnesses, launch.wasm, launch.manifest
        )
    return await load_hosted(services, offline.store, launch.did, 1, ResumeReason.FRESH)


def store_scheduler(
    services: NodeServices, config: SchedulerConfig, hooks: SchedulerHooks | None = None
) -> TickScheduler:
    """A tick scheduler committing to the services' store (one fenced append per batch)."""
    return TickScheduler(services, services.tick_sink(), config, hooks)
