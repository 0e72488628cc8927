"""Per-peer limits on authority requests (A3): offers, status queries and witness requests are
rate-limited per peer, and one agent cannot arrive here too often."""

from __future__ import annotations

from igor_p2p.lineage.cert import Ballot
from igor_p2p.net.ratelimit import HopLimiter, PeerRateLimiter
from igor_p2p.node.request_limits import LimitedTransport, RequestLimits
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Commit,
    Done,
    Offer,
    Prepare,
    Refused,
    RefusedCode,
    Reject,
    RejectCode,
    Status,
)

ME, PEER, OTHER = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
AGENT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def offer(agent: str = AGENT, mid: bytes = b"\x05" * 16) -> Offer:
    return Offer(PEER, agent, mid, 1, 0, (), b"ckpt", b"\x07" * 32, b"{}", None)


def test_offers_over_the_per_peer_rate_are_refused_and_others_pass() -> None:
    clock = Clock()
    limits = RequestLimits(ME, clock, offers=PeerRateLimiter(1.0, 2.0))
    assert limits.check(PEER, offer(mid=b"\x01" * 16)) is None
    assert limits.check(PEER, offer(mid=b"\x02" * 16)) is None
    refused = limits.check(PEER, offer(mid=b"\x03" * 16))
    assert isinstance(refused, Refused) and refused.code is RefusedCode.RATE_LIMITED
    assert limits.check(OTHER, offer(mid=b"\x04" * 16)) is None  # per peer
    clock.t += 1.0
    assert limits.check(PEER, offer(mid=b"\x06" * 16)) is None  # refilled
    assert limits.to_json()["offers_refused"] == 1


def test_an_agent_arriving_too_often_is_rejected_with_words() -> None:
    clock = Clock()
    limits = RequestLimits(ME, clock, arrivals=HopLimiter(2, 60.0))
    assert limits.check(PEER, offer()) is None
    clock.t += 1
    assert limits.check(OTHER, offer()) is None
    clock.t += 1
    answer = limits.check(PEER, offer())
    assert isinstance(answer, Reject) and answer.code is RejectCode.POLICY_DENIED
    assert "arrived here 2 times" in answer.reason
    clock.t += 60
    assert limits.check(PEER, offer()) is None


def test_status_and_witness_requests_have_their_own_buckets_and_commits_none() -> None:
    clock = Clock()
    limits = RequestLimits(
        ME,
        clock,
        status=PeerRateLimiter(1.0, 1.0),
        witness=PeerRateLimiter(1.0, 1.0),
    )
    status = Status(PEER, AGENT, 0)
    prepare = Prepare(PEER, AGENT, 2, Ballot(1, PEER, b"\x00" * 8), 0, ())
    assert limits.check(PEER, status) is None and limits.check(PEER, prepare) is None
    assert isinstance(limits.check(PEER, status), Refused)
    assert isinstance(limits.check(PEER, prepare), Refused)
    commit = Commit(PEER, AGENT, b"\x05" * 16, b"record", b"cert")
    for _ in range(10):
        assert limits.check(PEER, commit) is None


async def test_the_limited_transport_answers_refusals_without_calling_the_core() -> None:
    class Inner:
        me = ME

        def __init__(self) -> None:
            self.handler = None

        def serve(self, handler) -> None:  # type: ignore[no-untyped-def]
            self.handler = handler

        async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
            return Done(peer, AGENT)

    seen: list[Message] = []

    async def core(sender: bytes, message: Message) -> Message:
        seen.append(message)
        return Done(ME, AGENT)

    inner = Inner()
    limited = LimitedTransport(inner, RequestLimits(ME, Clock(), offers=PeerRateLimiter(1, 1)))
    limited.serve(core)
    assert limited.me == ME
    assert isinstance(await inner.handler(PEER, offer()), Done)  # type: ignore[misc]
    assert isinstance(await inner.handler(PEER, offer(mid=b"\x09" * 16)), Refused)  # type: ignore[misc]
    assert len(seen) == 1
