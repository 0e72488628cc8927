"""Group commit: merging, isolation of a bad submission, cancellation, draining."""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path

import pytest
import trio
import trio.testing
from core.builders import AgentLife

from igor_p2p.store import (
    AppendEntries,
    AppendTicks,
    CommitterClosed,
    CommitterConfig,
    GroupCommitter,
    PutModule,
    PutRecord,
    Store,
    StoreRefused,
)

from .helpers import launch, owner

WASM = b"\0asm-committer-test"
WASM_HASH = hashlib.sha256(WASM).digest()


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "igor.db")
    yield s
    s.close()


async def test_many_concurrent_commits_share_few_transactions(store: Store) -> None:
    committer = GroupCommitter(store, CommitterConfig())
    lives = [launch(store, f"agent-{i}", ticks=0) for i in range(50)]
    for life in lives:
        life.ticks(10)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)

        async def one_agent(life: AgentLife) -> None:
            for ck in life.entries[1:]:
                await committer.commit([AppendTicks.of(life.agent, 1, [ck])])

        async with trio.open_nursery() as agents_nursery:
            for life in lives:
                agents_nursery.start_soon(one_agent, life)
        await committer.aclose()
    assert committer.stats.submissions == 500
    assert store.transactions_committed < 50 + 100  # 500 commits, far fewer transactions
    assert all(store.lineage(life.agent) == life.blobs() for life in lives)
    assert store.check_integrity() == []


def _ticks(store: Store, count: int) -> list[tuple[AgentLife, AppendTicks]]:
    """``count`` launched agents, each with one tick checkpoint to commit."""
    out = []
    for i in range(count):
        life = launch(store, f"agent-{i}", ticks=0)
        out.append((life, AppendTicks.of(life.agent, 1, life.ticks(1))))
    return out


async def test_bad_submission_fails_alone(store: Store) -> None:
    committer = GroupCommitter(store)
    results: dict[int, BaseException | None] = {}
    good = _ticks(store, 8)
    stranger = AgentLife("stranger")
    stranger.genesis()
    bad = AppendTicks.of(stranger.agent, 1, stranger.ticks(1))  # not owned here
    submissions = [*(op for _, op in good[:4]), bad, *(op for _, op in good[4:])]

    async def submit(i: int, op: AppendTicks) -> None:
        try:
            await committer.commit([op])
            results[i] = None
        except StoreRefused as e:
            results[i] = e

    async with trio.open_nursery() as nursery:
        # queue all before the worker starts so they are merged into one batch
        for i, op in enumerate(submissions):
            nursery.start_soon(submit, i, op)
        await trio.testing.wait_all_tasks_blocked()
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        await committer.aclose()
    assert isinstance(results.pop(4), StoreRefused)
    assert all(r is None for r in results.values())
    assert committer.stats.split_batches == 1
    assert store.lineage(stranger.agent) == []
    assert all(store.lineage(life.agent) == life.blobs() for life, _ in good)


async def test_each_submitter_gets_the_results_of_its_own_ops(store: Store) -> None:
    committer = GroupCommitter(store)
    lives = [AgentLife(f"agent-{i}") for i in range(4)]
    for life in lives:
        life.genesis()
    results: dict[str, list[object]] = {}

    async def submit(life: AgentLife) -> None:
        ops = [PutRecord(life.agent, owner()), AppendEntries(life.agent, life.blobs())]
        results[life.agent] = await committer.commit(ops)

    async with trio.open_nursery() as nursery:
        for life in lives:
            nursery.start_soon(submit, life)
        await trio.testing.wait_all_tasks_blocked()
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        await committer.aclose()
    assert committer.stats.batches == 1
    assert results == {life.agent: [None, life.blobs()] for life in lives}


async def test_commit_returns_only_after_the_transaction(store: Store) -> None:
    committer = GroupCommitter(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await committer.commit([PutModule(WASM)])
        # the data is visible through a fresh connection: it is committed, not just queued
        other = Store.open(store.path, check_on_open=False)
        assert other.module(WASM_HASH) == WASM
        other.close()
        assert await committer.read(lambda s: s.module(WASM_HASH)) == WASM
        await committer.aclose()


async def test_cancelled_before_taken_is_withdrawn(store: Store) -> None:
    committer = GroupCommitter(store)  # not running yet: the submission stays queued
    with trio.move_on_after(0.01) as scope:
        await committer.commit([PutModule(WASM)])
    assert scope.cancelled_caught
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await committer.aclose()
    assert store.module(WASM_HASH) is None


async def test_cancelled_after_taken_is_still_applied(store: Store) -> None:
    committer = GroupCommitter(store)
    in_worker = trio.Event()
    release = trio.Event()
    token = trio.lowlevel.current_trio_token()
    original_apply = store.apply

    def slow_apply(ops):  # runs on the worker thread
        trio.from_thread.run_sync(in_worker.set, trio_token=token)
        trio.from_thread.run(release.wait, trio_token=token)
        return original_apply(ops)

    store.apply = slow_apply  # type: ignore[method-assign]
    returned = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)

        async def caller(scope_box: list[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                scope_box.append(scope)
                await committer.commit([PutModule(WASM)])
                returned.set()  # reached: commit() returned despite the cancel
                await trio.lowlevel.checkpoint()  # the deferred cancel lands here
                raise AssertionError("cancel was not delivered")

        box: list[trio.CancelScope] = []
        nursery.start_soon(caller, box)
        await in_worker.wait()
        box[0].cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert not returned.is_set()
        release.set()
        await returned.wait()
        await committer.aclose()
    store.apply = original_apply  # type: ignore[method-assign]
    assert store.module(WASM_HASH) == WASM


async def test_aclose_drains_pending_and_refuses_new(store: Store) -> None:
    committer = GroupCommitter(store)
    life = AgentLife()
    life.genesis()
    ops = [PutRecord(life.agent, owner()), AppendEntries(life.agent, life.blobs())]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.commit, ops)
        await trio.testing.wait_all_tasks_blocked()
        await nursery.start(committer.run)
        await committer.aclose()
        with pytest.raises(CommitterClosed):
            await committer.commit([PutModule(WASM)])
    assert store.lineage(life.agent) == life.blobs()
    assert store.module(WASM_HASH) is None


async def test_run_cancelled_fails_queued_commits_with_committer_closed(store: Store) -> None:
    committer = GroupCommitter(store)
    errors: list[BaseException] = []

    async def submit() -> None:
        try:
            await committer.commit([PutModule(WASM)])
        except CommitterClosed as e:
            errors.append(e)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit)
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await committer.run()  # cancelled before it takes the queued submission
    assert len(errors) == 1
    assert store.module(WASM_HASH) is None
    with pytest.raises(CommitterClosed):
        await committer.commit([PutModule(WASM)])


async def test_commit_groups_share_one_transaction_and_isolate_a_bad_group(store: Store) -> None:
    committer = GroupCommitter(store)
    good = _ticks(store, 6)
    stranger = AgentLife("stranger")
    stranger.genesis()
    bad = [AppendTicks.of(stranger.agent, 1, stranger.ticks(1))]
    groups = [[op] for _, op in good]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        results = await committer.commit_groups([*groups[:3], bad, [], *groups[3:]])
        await committer.aclose()
    assert [r is None for r in results] == [True, True, True, False, True, True, True, True]
    assert isinstance(results[3], StoreRefused)
    assert all(store.lineage(life.agent) == life.blobs() for life, _ in good)
    assert store.lineage(stranger.agent) == []
    assert committer.stats.batches == 1 and committer.stats.split_batches == 1


async def test_commit_groups_in_one_merged_transaction(store: Store) -> None:
    committer = GroupCommitter(store)
    groups = [[op] for _, op in _ticks(store, 20)]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        before = store.transactions_committed
        results = await committer.commit_groups(groups)
        assert store.transactions_committed == before + 1
        await committer.aclose()
    assert results == [None] * 20


async def test_commit_groups_cancelled_while_queued_are_not_applied(store: Store) -> None:
    committer = GroupCommitter(store)  # run() never started: the groups stay queued
    ticks = _ticks(store, 3)
    with trio.move_on_after(0.05) as scope:
        await committer.commit_groups([[op] for _, op in ticks])
    assert scope.cancelled_caught
    assert committer._pending == deque()
    await committer.aclose()
    assert all(store.lineage(life.agent) == life.blobs(0, 1) for life, _ in ticks)


async def test_commit_groups_on_a_closed_committer_are_refused(store: Store) -> None:
    committer = GroupCommitter(store)
    await committer.aclose()
    with pytest.raises(CommitterClosed):
        await committer.commit_groups([[PutModule(WASM)]])
    assert store.module(WASM_HASH) is None


async def test_read_inline_waits_for_a_running_transaction(store: Store) -> None:
    committer = GroupCommitter(store)
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        async with committer._limiter:  # as the worker holds it during a transaction

            async def reader() -> None:
                order.append(await committer.read_inline(lambda s: f"head {s.head('x')}"))

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            order.append("transaction done")
        await trio.testing.wait_all_tasks_blocked()
        await committer.aclose()
    assert order == ["transaction done", "head None"]
