"""A peer that keeps sending bad bytes is logged once per interval, without a traceback."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from igor_p2p.logs import LogThrottle
from igor_p2p.net.errors import MalformedMessage
from igor_p2p.net.handlers import GuardedHandler, HandlerCounters, PeerStreamLimiter

LOG = logging.getLogger("tests.net.failure_logs")


class FakeStream:
    def __init__(self, peer: str) -> None:
        self.muxed_conn = SimpleNamespace(peer_id=peer)
        self.resets = 0

    async def reset(self) -> None:
        self.resets += 1


def _guard(handler: Any, clock: list[float]) -> GuardedHandler:
    return GuardedHandler(
        handler,
        protocol="/igor-test/1",
        log=LOG,
        limiter=PeerStreamLimiter(),
        counters=HandlerCounters(),
        throttle=LogThrottle(60.0, clock=lambda: clock[0]),
    )


async def _malformed(stream: Any) -> None:
    raise MalformedMessage("bad header")


async def _bug(stream: Any) -> None:
    raise ValueError("our bug")


async def test_malformed_streams_from_one_peer_are_logged_once_per_interval_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0.0]
    guard = _guard(_malformed, clock)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        for _ in range(500):
            await guard(FakeStream("peerA"))
        await guard(FakeStream("peerB"))
        clock[0] = 61.0
        await guard(FakeStream("peerA"))
    records = [r for r in caplog.records if r.name == LOG.name]
    assert guard.counters.failed["/igor-test/1"] == 502  # every failure is still counted
    assert [r.getMessage().count("peerA") for r in records] == [1, 0, 1]
    assert all(r.exc_info is None for r in records)
    assert "499 more failures" in records[2].getMessage()


async def test_an_unexpected_exception_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = _guard(_bug, [0.0])
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        await guard(FakeStream("peerC"))
    (record,) = [r for r in caplog.records if r.name == LOG.name]
    assert record.exc_info is not None
