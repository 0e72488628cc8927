"""Trio group commit: many concurrent ``commit()`` calls share one durable transaction.

One background task (:meth:`GroupCommitter.run`) takes every submission waiting at that moment
(up to the configured limits), applies them as ONE ``Store.apply`` on a worker thread, and wakes
each submitter when the transaction is durable, with the results of its own ops. If the merged
transaction fails, the submissions are retried one by one, so a bad submission fails only its
own caller.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import outcome
import trio

from igor_p2p.store.errors import StoreError
from igor_p2p.store.ops import AppendEntries, AppendTicks, NewEntry, Op
from igor_p2p.store.sqlite import Store

T = TypeVar("T")


class CommitterClosed(StoreError):
    """The committer is closing or stopped; the submission was not applied."""


@dataclass(frozen=True)
class CommitterConfig:
    """Limits of one merged transaction (a single larger submission still goes alone)."""

    max_ops_per_transaction: int = 4096
    """Ops per transaction; an AppendEntries or AppendTicks counts as one op per entry."""
    max_bytes_per_transaction: int = 32 * 1024 * 1024
    """Sum of appended blob sizes per transaction."""


@dataclass
class CommitterStats:
    """Counters a test or benchmark can read."""

    transactions: int = 0
    """Transactions attempted by the worker (merged, single, and one-by-one retries)."""
    batches: int = 0
    """Merged batches taken from the queue."""
    submissions: int = 0
    """Submissions that got an outcome (success or error)."""
    split_batches: int = 0
    """Merged batches that failed and were retried one submission at a time."""


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class _GroupWaiter:
    """One task waiting for the outcomes of several submissions (``commit_each``)."""

    __slots__ = ("missing", "results", "task")

    def __init__(self, task: trio.lowlevel.Task, count: int) -> None:
        self.task = task
        self.results: list[list[object] | BaseException] = [[] for _ in range(count)]
        self.missing = count

    def deliver(self, index: int, result: outcome.Outcome[list[object]]) -> None:
        self.results[index] = result.error if isinstance(result, outcome.Error) else result.value
        self.missing -= 1
        if self.missing == 0:
            trio.lowlevel.reschedule(self.task, outcome.Value(None))


class _Submission:
    __slots__ = ("bytes", "index", "ops", "taken", "task", "waiter", "weight")

    def __init__(
        self,
        ops: tuple[Op, ...],
        task: trio.lowlevel.Task,
        waiter: _GroupWaiter | None = None,
        index: int = 0,
    ) -> None:
        self.ops = ops
        self.task = task
        self.waiter = waiter
        self.index = index
        self.taken = False
        weight = 0
        size = 0
        for op in ops:
            if isinstance(op, AppendEntries | AppendTicks):
                weight += max(1, len(op.entries))
                size += sum(len(e.blob if isinstance(e, NewEntry) else e) for e in op.entries)
            else:
                weight += 1
        self.weight = weight
        self.bytes = size


class GroupCommitter:
    """Serialises every store call onto one worker and merges concurrent commits."""

    def __init__(self, store: Store, config: CommitterConfig | None = None) -> None:
        self._store = store
        self._config = config or CommitterConfig()
        self._limiter = trio.CapacityLimiter(1)
        self._pending: deque[_Submission] = deque()
        self._wakeup: trio.Event | None = None
        self._state = _State.NEW
        self._closing = False
        self._stopped = trio.Event()
        self.stats = CommitterStats()

    # ------------------------------------------------------------------ public API

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The background task; returns after :meth:`aclose` once the queue is drained."""
        if self._state is not _State.NEW:
            raise CommitterClosed("run() may be started once")
        self._state = _State.RUNNING
        task_status.started()
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        return
                    wakeup = self._wakeup = trio.Event()
                    await wakeup.wait()
                    self._wakeup = None
                    continue
                await trio.lowlevel.checkpoint_if_cancelled()  # no new batch once cancelled
                await self._commit_batch(self._take_batch())
        finally:
            self._state = _State.CLOSED
            self._fail_pending()
            self._stopped.set()

    async def commit(self, ops: Sequence[Op]) -> list[object]:
        """Return once ``ops`` are durable (one transaction, all-or-nothing), with one result
        per op (what ``Store.apply`` returns for it).

        Raises the StoreError of THIS submission if it failed. If the caller is cancelled
        while the submission is still queued, it is withdrawn (never applied) and Cancelled
        propagates. Once it is in a transaction, cancellation is deferred: commit() waits for
        the durable outcome, returns it, and the cancellation hits the caller's next checkpoint.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closing or self._state is _State.CLOSED:
            raise CommitterClosed("committer is closed")
        submission = _Submission(tuple(ops), trio.lowlevel.current_task())
        if not submission.ops:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return []
        self._pending.append(submission)
        if self._wakeup is not None:
            self._wakeup.set()

        def abort(_: object) -> trio.lowlevel.Abort:
            if submission.taken:
                return trio.lowlevel.Abort.FAILED
            self._pending.remove(submission)
            return trio.lowlevel.Abort.SUCCEEDED

        results: list[object] = await trio.lowlevel.wait_task_rescheduled(abort)
        return results

    async def commit_groups(self, groups: Sequence[Sequence[Op]]) -> list[BaseException | None]:
        """Commit several independent op groups with one call; one outcome per group.

        Each group is a submission of its own, exactly as if ``commit(group)`` had been called
        for each in order (they share a transaction when the limits allow; a failing group
        fails alone), but only one task waits. Returns, per group, None when it is durable or
        the exception that refused it (a StoreError, or whatever ``commit`` would raise).
        Cancellation as for :meth:`commit`: withdrawn while every group is still queued
        (Cancelled propagates, nothing applied), otherwise deferred until every group has its
        outcome.
        """
        results = await self.commit_each(groups)
        return [r if isinstance(r, BaseException) else None for r in results]

    async def commit_each(
        self, groups: Sequence[Sequence[Op]]
    ) -> list[list[object] | BaseException]:
        """As :meth:`commit_groups`, but a durable group gives its ops' results (what
        :meth:`commit` would return for it) instead of None."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closing or self._state is _State.CLOSED:
            raise CommitterClosed("committer is closed")
        task = trio.lowlevel.current_task()
        waiter = _GroupWaiter(task, len(groups))
        submissions = []
        for index, group in enumerate(groups):
            ops = tuple(group)
            if ops:
                submissions.append(_Submission(ops, task, waiter, index))
            else:
                waiter.missing -= 1
        if not submissions:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return waiter.results
        self._pending.extend(submissions)
        if self._wakeup is not None:
            self._wakeup.set()

        def abort(_: object) -> trio.lowlevel.Abort:
            if any(s.taken for s in submissions):
                return trio.lowlevel.Abort.FAILED
            for submission in submissions:
                self._pending.remove(submission)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return waiter.results

    async def read(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the store worker, serialised with the commits."""
        return await trio.to_thread.run_sync(fn, self._store, limiter=self._limiter)

    async def read_inline(self, fn: Callable[[Store], T]) -> T:
        """Run a quick ``fn(store)`` (a few small rows) on the calling trio thread, serialised
        with the commits and reads by the same limiter. For such reads the thread hop of
        :meth:`read` costs more than the read; anything that reads blobs belongs in ``read``."""
        async with self._limiter:
            return fn(self._store)

    async def aclose(self) -> None:
        """Refuse new commits, wait until every queued submission has its outcome."""
        self._closing = True
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            self._fail_pending()
            self._stopped.set()
        if self._wakeup is not None:
            self._wakeup.set()
        await self._stopped.wait()

    # ------------------------------------------------------------------ worker side

    def _take_batch(self) -> list[_Submission]:
        cfg = self._config
        batch: list[_Submission] = []
        weight = 0
        size = 0
        pending = self._pending
        while pending:
            nxt = pending[0]
            if batch and (
                weight + nxt.weight > cfg.max_ops_per_transaction
                or size + nxt.bytes > cfg.max_bytes_per_transaction
            ):
                break
            pending.popleft()
            nxt.taken = True
            batch.append(nxt)
            weight += nxt.weight
            size += nxt.bytes
        return batch

    async def _commit_batch(self, batch: list[_Submission]) -> None:
        # Shielded: once taken, a batch is always applied and every submitter gets its real
        # outcome, even when run() is being cancelled (the cancel lands after the batch).
        with trio.CancelScope(shield=True):
            results = await trio.to_thread.run_sync(self._apply_batch, batch, limiter=self._limiter)
        self.stats.batches += 1
        for submission, result in zip(batch, results, strict=True):
            self.stats.submissions += 1
            _deliver(submission, result)

    def _apply_batch(self, batch: list[_Submission]) -> list[outcome.Outcome[list[object]]]:
        """Worker thread: one merged transaction, or one per submission if that fails."""
        store = self._store
        if len(batch) == 1:
            self.stats.transactions += 1
            return [outcome.capture(store.apply, batch[0].ops)]
        merged: list[Op] = []
        for submission in batch:
            merged.extend(submission.ops)
        self.stats.transactions += 1
        try:
            values = store.apply(merged)
        except Exception:
            self.stats.split_batches += 1
        else:
            out: list[outcome.Outcome[list[object]]] = []
            start = 0
            for submission in batch:
                out.append(outcome.Value(values[start : start + len(submission.ops)]))
                start += len(submission.ops)
            return out
        results: list[outcome.Outcome[list[object]]] = []
        for submission in batch:
            self.stats.transactions += 1
            results.append(outcome.capture(store.apply, submission.ops))
        return results

    def _fail_pending(self) -> None:
        while self._pending:
            submission = self._pending.popleft()
            submission.taken = True
            _deliver(submission, outcome.Error(CommitterClosed("committer stopped")))


def _deliver(submission: _Submission, result: outcome.Outcome[list[object]]) -> None:
    if submission.waiter is None:
        trio.lowlevel.reschedule(submission.task, result)
    else:
        submission.waiter.deliver(submission.index, result)
