"""One contract, two adapters: the SQLite store and the simulator's store behave the same.

Every test runs against ``SqliteAuthorityStore`` (a real file, the group committer) and against
``SimStore`` on a ``SimDisk`` (fsync latencies in MockClock time). ``restart`` drops the running
store and opens a new one over the same durable state, so "durable when the commit returns" is
part of every read-back.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.record import AuthorityRecord, PendingCopy, Successor
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.core.ports import AuthorityStore, StoreRefused, WitnessUsage, link_bytes
from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.cert import Ballot
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.sim.disk import SimDisk, SimStore
from igor_p2p.store import GroupCommitter, SqliteAuthorityStore, Store

from .builders import MANIFEST, MANIFEST_HASH, NODE_A, NODE_B, NODE_C, WASM, WASM_HASH, AgentLife

OWNER = AuthorityState.ACTIVE_OWNER


def owner(epoch: int = 1, version: int = 1) -> AuthorityRecord:
    return AuthorityRecord(state=OWNER, epoch=epoch, version=version)


@dataclass
class Harness:
    """One adapter under test, and a way to restart it over the same durable state."""

    kind: str
    tmp: Path
    nursery: trio.Nursery
    disk: SimDisk = field(default_factory=SimDisk)
    store: Any = None
    _sqlite: tuple[Store, GroupCommitter] | None = None

    async def open(self) -> None:
        if self.kind == "sim":
            self.store = SimStore(self.disk, (0.001, 0.02), random.Random(7).uniform)
            return
        db = Store.open(self.tmp / "igor.db")
        assert db.problems_at_open == []
        committer = GroupCommitter(db)
        await self.nursery.start(committer.run)
        self._sqlite = (db, committer)
        self.store = SqliteAuthorityStore(db, committer)

    async def close(self) -> None:
        if self.kind == "sim":
            self.store.alive = False
        elif self._sqlite is not None:
            db, committer = self._sqlite
            await committer.aclose()
            db.close()
            self._sqlite = None

    async def restart(self) -> AuthorityStore:
        await self.close()
        await self.open()
        store: AuthorityStore = self.store
        return store


@pytest.fixture(params=["sqlite", "sim"])
async def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
) -> AsyncIterator[Harness]:
    h = Harness(request.param, tmp_path, nursery)
    await h.open()
    yield h
    await h.close()


async def launched(store: AuthorityStore, life: AgentLife, ticks: int = 3) -> None:
    """A genesis and ``ticks`` tick checkpoints committed as the owner of epoch 1."""
    life.genesis()
    await store.commit_authority(life.agent, owner(), life.blobs())
    await store.append_ticks(life.agent, 1, life.ticks(ticks))


async def before_and_after_restart(
    harness: Harness, check: Callable[[AuthorityStore], Awaitable[None]]
) -> None:
    """Run ``check`` on the running store, then on a restarted one."""
    await check(harness.store)
    await check(await harness.restart())


def plain(starts: list[EpochStart]) -> list[tuple[object, ...]]:
    return [(s.epoch, s.owner, s.witnesses, s.digest, s.record, s.cert, s.forced) for s in starts]


# --------------------------------------------------------------------------- authority


async def test_a_committed_record_and_lineage_are_read_back_after_a_restart(
    harness: Harness,
) -> None:
    life = AgentLife()
    life.genesis()
    life.ticks(2)
    record = owner()
    appended = await harness.store.commit_authority(life.agent, record, life.blobs())
    assert appended == life.blobs()

    async def check(store: AuthorityStore) -> None:
        assert await store.record(life.agent) == record
        assert await store.records() == [(life.agent, record)]
        assert await store.lineage(life.agent) == life.blobs()
        assert await store.head(life.agent) == life.head
        assert await store.last_checkpoint(life.agent) == life.entries[-1]

    await before_and_after_restart(harness, check)


async def test_an_agent_never_held_has_nothing(harness: Harness) -> None:
    store = harness.store
    agent = AgentLife("stranger").agent
    assert await store.record(agent) is None
    assert await store.records() == []
    assert await store.head(agent) is None
    assert await store.lineage(agent) == []
    assert await store.custody(agent) == []
    assert await store.last_checkpoint(agent) is None
    assert await store.witness(agent) is None
    assert await store.witness_chain(agent, 0) == (0, ())


async def test_a_record_is_replaced_by_the_next_one(harness: Harness) -> None:
    life = AgentLife()
    await launched(harness.store, life)
    retired = AuthorityRecord(
        state=AuthorityState.RETIRED,
        epoch=1,
        successor=Successor(2, NODE_B.public_key),
        version=2,
    )
    assert await harness.store.commit_authority(life.agent, retired) == []
    store = await harness.restart()
    assert await store.record(life.agent) == retired
    assert (await store.record(life.agent)).fence == 2  # type: ignore[union-attr]
    assert await store.lineage(life.agent) == life.blobs()


async def test_entries_already_held_are_skipped_and_not_returned(harness: Harness) -> None:
    life = AgentLife()
    await launched(harness.store, life, ticks=2)
    held = life.blobs()
    life.handoff()
    new = life.blobs(len(held))
    appended = await harness.store.commit_authority(life.agent, owner(version=2), [*held, *new])
    assert appended == new
    assert await harness.store.commit_authority(life.agent, owner(version=3), life.blobs()) == []
    assert await (await harness.restart()).lineage(life.agent) == life.blobs()


async def test_a_commit_that_fails_leaves_neither_the_record_nor_any_entry(
    harness: Harness,
) -> None:
    life = AgentLife()
    await launched(harness.store, life)
    before = await harness.store.lineage(life.agent)
    life.ticks(1)
    good = life.blobs(len(before))
    with pytest.raises(InvalidInput):
        await harness.store.commit_authority(
            life.agent, owner(epoch=1, version=9), [*good, b"not an entry"]
        )
    store = await harness.restart()
    assert await store.record(life.agent) == owner()
    assert await store.lineage(life.agent) == before


async def test_entries_may_follow_a_compacted_gap(harness: Harness) -> None:
    life = AgentLife()
    life.genesis()
    life.ticks(5)
    life.migrate(NODE_B)
    life.ticks(2)
    # A target that receives the agent without ticks 2..4 of epoch 1 (compacted at the source).
    offered = [b for i, b in enumerate(life.blobs()) if i not in (2, 3, 4)]
    appended = await harness.store.commit_authority(life.agent, owner(epoch=2), offered)
    assert appended == offered
    store = await harness.restart()
    lineage = await store.lineage(life.agent)
    assert lineage == offered
    assert await store.head(life.agent) == life.head
    report = verify_lineage(lineage, expected_agent=life.agent, ordered=True)
    assert report.valid, report.problems
    assert len(report.compacted) == 1
    assert plain(await store.custody(life.agent)) == plain(life.starts)


async def test_discard_copy_drops_only_what_the_pending_copy_added(harness: Harness) -> None:
    """A node that held the agent up to epoch 1 prepares a copy of epoch 2, then drops it."""
    life = AgentLife()
    await launched(harness.store, life)
    life.handoff()
    life.transfer(NODE_B)
    life.certify()
    held = life.blobs()
    retired = AuthorityRecord(
        state=AuthorityState.RETIRED, epoch=1, successor=Successor(2, NODE_B.public_key), version=2
    )
    await harness.store.commit_authority(life.agent, retired, held)
    custody_held = plain(await harness.store.custody(life.agent))
    life.ticks(2)
    life.handoff()
    life.transfer(NODE_A)
    pending = AuthorityRecord(
        state=AuthorityState.HANDOFF_PENDING,
        epoch=2,
        pending=PendingCopy(bytes(16), NODE_B.public_key, life.entries[-2].digest()),
        version=3,
    )
    copy = life.blobs(len(held))
    assert await harness.store.commit_authority(life.agent, pending, copy[:2]) == copy[:2]
    # More of the same copy, still pending: the copy still starts where it started.
    assert await harness.store.commit_authority(life.agent, pending, copy) == copy[2:]
    assert len(await harness.store.custody(life.agent)) == 2
    back = AuthorityRecord(
        state=AuthorityState.RETIRED, epoch=1, successor=Successor(2, NODE_B.public_key), version=4
    )
    assert await harness.store.commit_authority(life.agent, back, discard_copy=True) == []
    store = await harness.restart()
    assert await store.lineage(life.agent) == held
    assert await store.head(life.agent) == life.entries[len(held) - 1].digest()
    assert plain(await store.custody(life.agent)) == custody_held
    assert await store.record(life.agent) == back


async def test_discarding_a_fresh_copy_leaves_no_lineage(harness: Harness) -> None:
    life = AgentLife()
    life.genesis()
    life.ticks(3)
    life.handoff()
    pending = AuthorityRecord(
        state=AuthorityState.HANDOFF_PENDING,
        epoch=1,
        pending=PendingCopy(bytes(16), NODE_A.public_key, life.head),
        version=1,
    )
    await harness.store.commit_authority(life.agent, pending, life.blobs())
    aborted = AuthorityRecord(state=AuthorityState.RETIRED, epoch=1, version=2)
    await harness.store.commit_authority(life.agent, aborted, discard_copy=True)
    store = await harness.restart()
    assert await store.lineage(life.agent) == []
    assert await store.head(life.agent) is None
    assert await store.custody(life.agent) == []
    assert await store.last_checkpoint(life.agent) is None


async def test_discard_copy_without_a_pending_copy_changes_no_entry(harness: Harness) -> None:
    life = AgentLife()
    await launched(harness.store, life)
    await harness.store.commit_authority(life.agent, owner(version=2), discard_copy=True)
    assert await (await harness.restart()).lineage(life.agent) == life.blobs()


# --------------------------------------------------------------------------- ticks


async def test_ticks_of_the_owned_epoch_are_committed(harness: Harness) -> None:
    life = AgentLife()
    await launched(harness.store, life, ticks=0)
    for _ in range(3):
        await harness.store.append_ticks(life.agent, 1, life.ticks(2))
    store = await harness.restart()
    assert await store.lineage(life.agent) == life.blobs()
    assert await store.head(life.agent) == life.head
    assert await store.last_checkpoint(life.agent) == life.entries[-1]


@pytest.mark.parametrize(
    "state", [AuthorityState.RETIRED, AuthorityState.HALTED, AuthorityState.HANDOFF_PENDING]
)
async def test_ticks_are_refused_unless_this_node_owns_the_agent(
    harness: Harness, state: AuthorityState
) -> None:
    life = AgentLife()
    await launched(harness.store, life)
    await harness.store.commit_authority(
        life.agent, AuthorityRecord(state=state, epoch=1, version=2)
    )
    before = await harness.store.lineage(life.agent)
    with pytest.raises(StoreRefused):
        await harness.store.append_ticks(life.agent, 1, life.ticks(1))
    assert await (await harness.restart()).lineage(life.agent) == before


async def test_ticks_of_another_epoch_are_refused(harness: Harness) -> None:
    life = AgentLife()
    await launched(harness.store, life)
    await harness.store.commit_authority(life.agent, owner(epoch=2, version=2))
    before = await harness.store.lineage(life.agent)
    with pytest.raises(StoreRefused):
        await harness.store.append_ticks(life.agent, 1, life.ticks(1))
    assert await (await harness.restart()).lineage(life.agent) == before


async def test_ticks_of_an_agent_never_held_are_refused(harness: Harness) -> None:
    life = AgentLife()
    life.genesis()
    with pytest.raises(StoreRefused):
        await harness.store.append_ticks(life.agent, 1, life.ticks(1))
    assert await (await harness.restart()).lineage(life.agent) == []


# --------------------------------------------------------------------------- custody


async def test_custody_is_the_genesis_then_each_certified_record(harness: Harness) -> None:
    life = AgentLife()
    await launched(harness.store, life)
    life.migrate(NODE_B)
    life.ticks(2)
    life.forced(NODE_C)
    life.certify()
    life.ticks(1)
    life.handoff()
    life.transfer(NODE_A)  # not certified yet: it starts no epoch
    await harness.store.commit_authority(life.agent, owner(epoch=3, version=2), life.blobs())
    assert [s.epoch for s in life.starts] == [1, 2, 3]
    assert [s.forced for s in life.starts] == [False, False, True]

    async def check(store: AuthorityStore) -> None:
        custody = await store.custody(life.agent)
        assert plain(custody) == plain(life.starts)
        assert custody[0].genesis == life.entries[0].encode()

    await before_and_after_restart(harness, check)


# --------------------------------------------------------------------------- witness


async def test_a_witness_record_and_its_chain_persist(harness: Harness) -> None:
    life = AgentLife()
    life.genesis()
    life.ticks(1)
    life.migrate(NODE_B)
    life.migrate(NODE_C)
    s1, s2, s3 = life.starts
    ballot = Ballot(3, NODE_A.public_key, bytes(8))
    record = WitnessRecord(
        agent=life.agent,
        chosen=s3,
        promised=ballot,
        accepted_ballot=ballot,
        accepted_record=life.entries[-2].encode(),
    )
    await harness.store.commit_witness(life.agent, record, [s1, s2])
    await harness.store.commit_witness(life.agent, None, [s2, s3])  # s2 again: skipped

    async def check(store: AuthorityStore) -> None:
        assert await store.witness(life.agent) == record
        assert await store.witness_chain(life.agent, 0) == (
            0,
            (*s1.links(), *s2.links(), *s3.links()),
        )
        assert await store.witness_chain(life.agent, 2) == (2, s3.links())
        assert await store.witness_chain(life.agent, 3) == (3, ())
        # What the witness quota counts: one agent, and every link stored once.
        assert await store.witness_usage() == WitnessUsage(
            1, sum(link_bytes(s) for s in (s1, s2, s3))
        )

    await before_and_after_restart(harness, check)


async def test_a_witness_chain_that_starts_late_is_served_from_where_it_starts(
    harness: Harness,
) -> None:
    life = AgentLife()
    life.genesis()
    life.migrate(NODE_B)
    life.migrate(NODE_C)
    _, s2, s3 = life.starts
    await harness.store.commit_witness(life.agent, WitnessRecord(life.agent, s3), [s2, s3])
    store = await harness.restart()
    assert await store.witness_chain(life.agent, 0) == (1, (*s2.links(), *s3.links()))


# --------------------------------------------------------------------------- modules


async def test_modules_and_manifests_are_stored_by_their_hash(harness: Harness) -> None:
    await harness.store.put_module(WASM, MANIFEST)
    await harness.store.put_module(WASM, MANIFEST)
    store = await harness.restart()
    assert await store.module(WASM_HASH) == WASM
    assert await store.manifest(MANIFEST_HASH) == MANIFEST
    assert await store.module(MANIFEST_HASH) is None
