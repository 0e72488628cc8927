"""A retry of the authority protocols (a claim without a quorum, a COMMIT, ABORT or LEARN not
answered, an OFFER refused for rate) waits out a growing backoff, but a network change (a peer
came back, a partition healed) ends the wait at once: liveness after heal does not depend on how
long the partition lasted."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from igor_p2p.core.backoff import AFTER_CHANGE_ATTEMPT, MAX_ATTEMPTS, Backoff
from igor_p2p.core.config import CoreConfig
from igor_p2p.core.handoff import Messenger
from igor_p2p.core.ports import PeerUnreachable
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import Commit, Confirm, Refused, RefusedCode


def _backoff() -> Backoff:
    env: Any = SimpleNamespace(rng=random.Random(1))
    return Backoff(CoreConfig(), env)


async def test_a_network_change_ends_a_long_backoff_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = _backoff()
    ended: list[float] = []

    async def wait() -> None:
        await backoff.wait(attempt=10)  # 15 to 30 s after a long partition
        ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(2.0)
        assert ended == []
        backoff.network_changed()
    assert ended == [2.0]


async def test_without_a_change_the_backoff_runs_its_course(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = _backoff()
    start = trio.current_time()
    await backoff.wait(attempt=10)
    assert 15.0 <= trio.current_time() - start <= 30.0
    backoff.network_changed()  # a change after the wait wakes nothing later
    start = trio.current_time()
    await backoff.wait(attempt=0)
    assert 0.1 <= trio.current_time() - start <= 0.2


async def test_after_a_network_change_the_retries_go_on_from_a_short_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A heal comes link by link: the first retry after it may still meet a cut link, and the
    # next one must not wait out the long backoff the partition had grown.
    backoff = _backoff()
    retries = backoff.retries()
    for _ in range(8):
        await retries.wait()
    assert retries.attempt == 8  # the next wait would be 12.8 to 25.6 s
    async with trio.open_nursery() as nursery:
        nursery.start_soon(retries.wait)
        await trio.sleep(1.0)
        backoff.network_changed()  # ends that wait, and shortens the series
    assert retries.attempt == AFTER_CHANGE_ATTEMPT
    start = trio.current_time()
    await retries.wait()
    assert 0.8 <= trio.current_time() - start <= 1.6  # attempt 3: 0.2 s * 2**3, jittered
    backoff.network_changed()  # a change between two waits counts as well
    await retries.wait()
    assert retries.attempt == AFTER_CHANGE_ATTEMPT + 1


class CutTarget:
    """A target behind a partition until ``heal``; it confirms every COMMIT after that."""

    me = b"\x01" * 32

    def __init__(self) -> None:
        self.cut = True
        self.commits: list[float] = []

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        if self.cut:
            raise PeerUnreachable("partitioned")
        assert isinstance(message, Commit)
        self.commits.append(trio.current_time())
        return Confirm(peer, message.agent, message.migration_id, epoch=2)


async def test_a_commit_waiting_out_its_backoff_is_sent_as_soon_as_the_partition_heals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = _backoff()
    target = CutTarget()
    history: Any = SimpleNamespace(emit=lambda *args, **kwargs: None)
    ctx: Any = SimpleNamespace(
        key=SimpleNamespace(public_key=b"\x02" * 32),
        transport=target,
        config=CoreConfig(),
        env=SimpleNamespace(rng=random.Random(1), history=history),
        backoff=backoff,
    )
    messenger = Messenger(ctx)
    start: Any = SimpleNamespace(record=b"record", cert=b"cert", epoch=2)
    mid = b"\x07" * 16
    async with trio.open_nursery() as nursery:
        nursery.start_soon(messenger._commit, "agent", target.me, mid, start)
        await trio.sleep(2.9)  # four failed attempts: the next wait is 1.6 to 3.2 s long
        target.cut = False
        healed = trio.current_time()
        backoff.network_changed()
    assert target.commits == [healed]
    assert messenger.confirmation(mid).is_set()


class LostFirstReply:
    """A peer whose reply to the first request is lost (the requester would wait the whole
    timeout for it); it answers every later one."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        self.sent.append(trio.current_time())
        if len(self.sent) == 1:
            await trio.sleep(timeout)
            raise PeerUnreachable("no reply within the timeout")
        return message


async def test_a_request_waiting_for_a_lost_reply_is_sent_again_when_the_network_heals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = _backoff()
    peer = LostFirstReply()
    commit = Commit(b"\x02" * 32, "agent", b"\x07" * 16, b"record", b"cert")
    answers: list[Message] = []

    async def offer() -> None:
        answers.append(await backoff.request(peer, b"\x01" * 32, commit, timeout=20.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(offer)
        await trio.sleep(3.0)  # the reply is lost; without a change it would wait 17 s more
        backoff.network_changed()
    assert answers == [commit] and peer.sent == [0.0, 3.0]


async def test_a_request_whose_reply_is_late_is_sent_again_beside_the_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The reply was lost on the peer's side of the network: no change this node can see.
    backoff = _backoff()
    peer = LostFirstReply()
    commit = Commit(b"\x02" * 32, "agent", b"\x07" * 16, b"record", b"cert")
    answer = await backoff.request(peer, b"\x01" * 32, commit, 20.0, resend_after_s=1.5)
    assert answer == commit and peer.sent == [0.0, 1.5]
    assert trio.current_time() == 1.5  # not the 20 s timeout of the first


class BusyWithTheFirst:
    """A peer that answers the first request after ``work_s`` and refuses every repeat that
    comes while it is still at it."""

    def __init__(self, answer: Message, busy: Message, work_s: float) -> None:
        self.answer, self.busy, self.work_s = answer, busy, work_s
        self.sent: list[float] = []

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        self.sent.append(trio.current_time())
        if len(self.sent) == 1:
            await trio.sleep(self.work_s)
            return self.answer
        return self.busy


async def test_a_repeat_the_peer_refuses_as_busy_does_not_end_the_wait_for_the_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = _backoff()
    commit = Commit(b"\x02" * 32, "agent", b"\x07" * 16, b"record", b"cert")
    busy = Confirm(b"\x03" * 32, "agent", b"\x07" * 16, 2)
    peer = BusyWithTheFirst(commit, busy, work_s=5.0)
    answer = await backoff.request(
        peer, b"\x01" * 32, commit, 20.0, resend_after_s=1.0, settles=lambda r: r is not busy
    )
    assert answer is commit and trio.current_time() == 5.0
    assert peer.sent == [0.0, 1.0, 3.0]  # repeats after 1 s, then 2 s more
    # When the only answers are refusals, the last one is the answer.
    only_busy = BusyWithTheFirst(busy, busy, work_s=0.5)
    assert (
        await backoff.request(
            only_busy, b"\x01" * 32, commit, 20.0, resend_after_s=1.0, settles=lambda r: False
        )
        is busy
    )


class NeverAnswers:
    def __init__(self) -> None:
        self.sent: list[float] = []

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        self.sent.append(trio.current_time())
        await trio.sleep(timeout)
        raise PeerUnreachable("no reply within the timeout")


async def test_a_request_never_has_more_than_a_few_attempts_waiting_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = _backoff()
    peer = NeverAnswers()
    commit = Commit(b"\x02" * 32, "agent", b"\x07" * 16, b"record", b"cert")
    with pytest.raises(PeerUnreachable):
        await backoff.request(peer, b"\x01" * 32, commit, 100.0, resend_after_s=1.0)
    assert peer.sent == [0.0, 1.0, 3.0, 7.0]  # MAX_ATTEMPTS, each as long as the first
    assert len(peer.sent) == MAX_ATTEMPTS and trio.current_time() == 107.0


def test_an_offers_resend_wait_grows_with_what_it_carries() -> None:
    config = CoreConfig()
    assert config.offer_resend_after(0) == config.offer_resend_s
    assert config.offer_resend_after(64 << 20) == config.offer_resend_s + 8.0


class RefusingFirst:
    """A target whose transport refuses the first COMMIT (rate, a full queue, …) and whose
    table confirms the next one."""

    me = b"\x01" * 32

    def __init__(self) -> None:
        self.commits: list[float] = []

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        assert isinstance(message, Commit)
        self.commits.append(trio.current_time())
        if len(self.commits) == 1:
            return Refused(peer, RefusedCode.RATE_LIMITED, "slow down")
        return Confirm(peer, message.agent, message.migration_id, epoch=2)


async def test_a_commit_the_targets_transport_refused_is_sent_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Only an answer of the target's table ends the COMMIT's retries: a refusal of its
    # transport would leave the target waiting for its own settlement (15 s).
    target = RefusingFirst()
    history: Any = SimpleNamespace(emit=lambda *args, **kwargs: None)
    ctx: Any = SimpleNamespace(
        key=SimpleNamespace(public_key=b"\x02" * 32),
        transport=target,
        config=CoreConfig(),
        env=SimpleNamespace(rng=random.Random(1), history=history),
        backoff=_backoff(),
    )
    messenger = Messenger(ctx)
    start: Any = SimpleNamespace(record=b"record", cert=b"cert", epoch=2)
    mid = b"\x07" * 16
    await messenger._commit("agent", target.me, mid, start)
    assert len(target.commits) == 2 and target.commits[1] < 1.0
    assert messenger.confirmation(mid).is_set()
