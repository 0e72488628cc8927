"""Group commit: merging, isolation of a bad submission, cancellation, draining."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
import trio
import trio.testing

from igor_p2p.store import (
    AppendEntries,
    ChainBreak,
    CommitterClosed,
    CommitterConfig,
    GroupCommitter,
    RaiseFence,
    Store,
)

from .helpers import ZERO, chain, entry, launch


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "igor.db")
    yield s
    s.close()


async def test_many_concurrent_commits_share_few_transactions(store: Store) -> None:
    committer = GroupCommitter(store, CommitterConfig())
    agents = [f"did:key:z6Mk{i:03d}" for i in range(50)]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)

        async def one_agent(agent: str) -> None:
            prev = ZERO
            for i in range(10):
                e = entry(prev, f"{agent}:{i}".encode())
                await committer.commit([AppendEntries(agent, [e])])
                prev = e.digest

        async with trio.open_nursery() as agents_nursery:
            for agent in agents:
                agents_nursery.start_soon(one_agent, agent)
        await committer.aclose()
    assert committer.stats.submissions == 500
    assert store.transactions_committed < 100  # 500 commits, far fewer transactions
    assert all(len(store.lineage(a)) == 10 for a in agents)
    assert store.check_integrity() == []


async def test_bad_submission_fails_alone(store: Store) -> None:
    committer = GroupCommitter(store)
    results: dict[int, BaseException | None] = {}
    good = [AppendEntries(f"did:key:z6Mk{i}", chain(2, tag=b"%d" % i)) for i in range(8)]
    bad = AppendEntries("did:key:z6MkBad", [entry(ZERO, b"a"), entry(ZERO, b"b")])
    submissions = [*good[:4], bad, *good[4:]]

    async def submit(i: int, op: AppendEntries) -> None:
        try:
            await committer.commit([op])
            results[i] = None
        except ChainBreak as e:
            results[i] = e

    async with trio.open_nursery() as nursery:
        # queue all before the worker starts so they are merged into one batch
        for i, op in enumerate(submissions):
            nursery.start_soon(submit, i, op)
        await trio.testing.wait_all_tasks_blocked()
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        await committer.aclose()
    assert isinstance(results.pop(4), ChainBreak)
    assert all(r is None for r in results.values())
    assert committer.stats.split_batches == 1
    assert store.lineage("did:key:z6MkBad") == []
    assert all(len(store.lineage(op.agent)) == 2 for op in good)


async def test_commit_returns_only_after_the_transaction(store: Store) -> None:
    committer = GroupCommitter(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await committer.commit([RaiseFence("did:key:z6MkA", 3, "e")])
        # the data is visible through a fresh connection: it is committed, not just queued
        other = Store.open(store.path, check_on_open=False)
        assert other.fence("did:key:z6MkA") == 3
        other.close()
        assert await committer.read(lambda s: s.fence("did:key:z6MkA")) == 3
        await committer.aclose()


async def test_cancelled_before_taken_is_withdrawn(store: Store) -> None:
    committer = GroupCommitter(store)  # not running yet: the submission stays queued
    with trio.move_on_after(0.01) as scope:
        await committer.commit([RaiseFence("did:key:z6MkA", 3, "e")])
    assert scope.cancelled_caught
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await committer.aclose()
    assert store.fence("did:key:z6MkA") == 0


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
                await committer.commit([RaiseFence("did:key:z6MkA", 3, "e")])
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
    assert store.fence("did:key:z6MkA") == 3


async def test_aclose_drains_pending_and_refuses_new(store: Store) -> None:
    committer = GroupCommitter(store)
    ops, _ = launch("did:key:z6MkA", 3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.commit, ops)
        await trio.testing.wait_all_tasks_blocked()
        await nursery.start(committer.run)
        await committer.aclose()
        with pytest.raises(CommitterClosed):
            await committer.commit([RaiseFence("did:key:z6MkA", 9, "e")])
    assert len(store.lineage("did:key:z6MkA")) == 3
    assert store.fence("did:key:z6MkA") == 1


async def test_run_cancelled_fails_queued_commits_with_committer_closed(store: Store) -> None:
    committer = GroupCommitter(store)
    errors: list[BaseException] = []

    async def submit() -> None:
        try:
            await committer.commit([RaiseFence("did:key:z6MkA", 3, "e")])
        except CommitterClosed as e:
            errors.append(e)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit)
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await committer.run()  # cancelled before it takes the queued submission
    assert len(errors) == 1
    assert store.fence("did:key:z6MkA") == 0
    with pytest.raises(CommitterClosed):
        await committer.commit([RaiseFence("did:key:z6MkA", 3, "e")])


async def test_commit_groups_share_one_transaction_and_isolate_a_bad_group(store: Store) -> None:
    committer = GroupCommitter(store)
    good = [[AppendEntries(f"did:key:z6MkG{i}", chain(2, tag=b"%d" % i))] for i in range(6)]
    bad = [AppendEntries("did:key:z6MkBad", [entry(ZERO, b"a"), entry(ZERO, b"b")])]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        results = await committer.commit_groups([*good[:3], bad, [], *good[3:]])
        await committer.aclose()
    assert [r is None for r in results] == [True, True, True, False, True, True, True, True]
    assert isinstance(results[3], ChainBreak)
    assert all(len(store.lineage(f"did:key:z6MkG{i}")) == 2 for i in range(6))
    assert store.lineage("did:key:z6MkBad") == []
    assert committer.stats.batches == 1 and committer.stats.split_batches == 1


async def test_commit_groups_in_one_merged_transaction(store: Store) -> None:
    committer = GroupCommitter(store)
    groups = [[AppendEntries(f"did:key:z6MkH{i}", chain(1, tag=b"%d" % i))] for i in range(20)]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        before = store.transactions_committed
        results = await committer.commit_groups(groups)
        assert store.transactions_committed == before + 1
        await committer.aclose()
    assert results == [None] * 20


async def test_commit_groups_cancelled_while_queued_are_not_applied(store: Store) -> None:
    committer = GroupCommitter(store)  # run() never started: the groups stay queued
    groups = [[AppendEntries(f"did:key:z6MkC{i}", chain(1, tag=b"%d" % i))] for i in range(3)]
    with trio.move_on_after(0.05) as scope:
        await committer.commit_groups(groups)
    assert scope.cancelled_caught
    assert committer._pending == deque()
    await committer.aclose()
    assert all(store.lineage(f"did:key:z6MkC{i}") == [] for i in range(3))


async def test_commit_groups_on_a_closed_committer_are_refused(store: Store) -> None:
    committer = GroupCommitter(store)
    await committer.aclose()
    with pytest.raises(CommitterClosed):
        await committer.commit_groups([[RaiseFence("did:key:z6MkX", 3, "e")]])
    assert store.fence("did:key:z6MkX") == 0


async def test_read_inline_waits_for_a_running_transaction(store: Store) -> None:
    committer = GroupCommitter(store)
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        async with committer._limiter:  # as the worker holds it during a transaction

            async def reader() -> None:
                order.append(await committer.read_inline(lambda s: f"fence {s.fence('x')}"))

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            order.append("transaction done")
        await trio.testing.wait_all_tasks_blocked()
        await committer.aclose()
    assert order == ["transaction done", "fence 0"]
