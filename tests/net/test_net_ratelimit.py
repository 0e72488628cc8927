"""Token buckets per peer with bounded state, and the cap on how often an agent may arrive."""

from __future__ import annotations

import pytest

from igor_p2p.net.ratelimit import HopLimiter, PeerRateLimiter, TokenBucket


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=5.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.retry_after(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert bucket.take(100.0)  # refills, but never beyond the burst
    assert bucket.tokens == pytest.approx(4.0)


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=1.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (float("nan"), 1), (1, 0.5), (1, 1e400)])
def test_nonsense_limits_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_one_peer_flooding_does_not_limit_another() -> None:
    limiter = PeerRateLimiter(rate_per_s=1.0, burst=3.0)
    assert sum(limiter.allow("flooder", 0.0) for _ in range(100)) == 3
    assert all(limiter.allow("honest", 0.0) for _ in range(3))
    assert limiter.refused == 97


def test_per_peer_state_stays_bounded_under_invented_peer_ids() -> None:
    limiter = PeerRateLimiter(rate_per_s=1.0, burst=1.0, max_peers=100)
    for i in range(10_000):
        limiter.allow(f"peer-{i}", 0.0)
    assert len(limiter) == 100


def test_an_agent_bounced_too_often_is_refused_until_the_window_passes() -> None:
    hops = HopLimiter(max_arrivals=3, window_s=60.0)
    assert [hops.allow("did:a", t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert hops.allow("did:b", 3.0)  # another agent is not affected
    assert hops.allow("did:a", 60.5)  # the first arrival left the window
    assert hops.refused == 1
