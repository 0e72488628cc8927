"""A full disk stops ticking gracefully: nothing half-written, the store intact, every agent still
owned at its last committed checkpoint, and ticking resumes by itself once there is room."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.states import AuthorityState
from igor_p2p.runtime import scheduler as scheduler_module
from igor_p2p.runtime.capacity import NodeBudget
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.runtime.scheduler import SchedulerConfig
from igor_p2p.runtime.services import NodeServices, RuntimeConfig, open_services
from igor_p2p.store.sqlite import Store

from .hosting import launch_hosted, store_scheduler

FAST = SchedulerConfig(idle_interval_s=0.001, busy_interval_s=0.001)


async def _until(condition: Callable[[], bool], deadline_s: float = 20.0) -> None:
    with trio.fail_after(deadline_s):
        while not condition():
            await trio.sleep(0.01)


async def _cap_database(services: NodeServices, extra_pages: int | None) -> None:
    """The fault-injection seam: SQLite's max_page_count makes the database file 'full' (SQLite
    answers SQLITE_FULL exactly as on ENOSPC, and rolls the transaction back)."""

    def cap(store: Store) -> None:
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        limit = 1_073_741_823 if extra_pages is None else pages + extra_pages
        store._conn.execute(f"PRAGMA max_page_count = {limit}")

    await services.committer.read(cap)


@pytest.fixture(autouse=True)
def quick_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_module, "DISK_RECHECK_S", 0.05)


async def test_sqlite_full_suspends_ticking_with_the_store_intact_then_resumes(
    tmp_path: Path,
) -> None:
    name = "bigstate_64k"
    request = LaunchRequest(
        load_agent_source(name), load_agent_manifest(name).canonical_bytes, 10**12
    )
    async with open_services(DataDir(tmp_path)) as services:
        agent = await launch_hosted(services, request)
        sched = store_scheduler(services, FAST)
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            sched.add(agent)
            await _until(lambda: agent.head.tick >= 2)
            await _cap_database(services, extra_pages=1)  # the next 64 KiB checkpoint won't fit
            await _until(lambda: sched.suspended is not None)
            frozen = agent.head.tick
            rows = await services.committer.read(lambda s: len(s.lineage_rows(agent.did)))

            # Suspended: the agent is still owned, nothing more is written, the store is sound.
            record = await services.committer.read(lambda s: s.record(agent.did))
            assert record is not None and record.state is AuthorityState.ACTIVE_OWNER
            assert await services.committer.read(lambda s: s.check_integrity()) == []
            assert "disk full" in (sched.suspended or "")

            await _cap_database(services, extra_pages=None)  # space is back
            await _until(lambda: sched.suspended is None and agent.head.tick > frozen + 1)
            more = await services.committer.read(lambda s: len(s.lineage_rows(agent.did)))
            assert more > rows
            nursery.cancel_scope.cancel()


async def test_a_node_over_its_disk_budget_stores_nothing_until_the_budget_allows(
    tmp_path: Path,
) -> None:
    name = "counter"
    request = LaunchRequest(
        load_agent_source(name), load_agent_manifest(name).canonical_bytes, 10**12
    )
    tight = RuntimeConfig(resources=NodeBudget(disk_bytes=1))
    async with open_services(DataDir(tmp_path), tight) as services:
        agent = await launch_hosted(services, request)
        sched = store_scheduler(services, FAST)
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            sched.add(agent)
            await _until(lambda: sched.suspended is not None)
            assert agent.head.tick == 0  # the genesis only: no checkpoint was stored
            assert "disk budget" in (sched.suspended or "")

            services.config = dataclasses.replace(services.config, resources=NodeBudget())
            await _until(lambda: agent.head.tick >= 2)
            nursery.cancel_scope.cancel()
