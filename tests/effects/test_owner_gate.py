"""Effects run only while this node owns the agent: an INTENT the store's owner fence refuses,
or an agent whose handoff or halt has begun (quiesced), gets NOT_OWNER and nothing is sent."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import pytest
import trio

from igor_p2p.agent.effect_policy import http_policy
from igor_p2p.agent.effects import HttpCode, HttpRequest, PayCode, PaymentRequest
from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.effects.journal import AgentEffects, EffectServices
from igor_p2p.effects.settlement import MockSettlement
from igor_p2p.lineage.entries import LineageEntry
from igor_p2p.lineage.identity import Keypair
from igor_p2p.store.errors import StoreRefused

from .agents import manifest
from .server import FeedServer, Route, http_server


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with http_server() as s:
        yield s


class FencedSink:
    def __init__(self, owner: bool) -> None:
        self.owner = owner
        self.appended: list[LineageEntry] = []

    async def append_owned(self, agent: str, epoch: int, entries: Sequence[LineageEntry]) -> None:
        if not self.owner:
            raise StoreRefused(f"{agent}: not the owner here")
        self.appended.extend(entries)


def journal(sink: FencedSink, *, paused: bool = False) -> tuple[AgentEffects, MockSettlement]:
    agent_key = Keypair.generate()
    agent = SimpleNamespace(
        did=agent_key.did,
        epoch=3,
        tip=bytes(32),
        tick=7,
        budget=10**9,
        paused=paused,
        instance=SimpleNamespace(call_deadline=time.monotonic() + 30),
        env=SimpleNamespace(budget=10**9),
        effect_charges=0,
        effects_pending=False,
    )
    settlement = MockSettlement()
    services = EffectServices(
        key=Keypair.generate(),
        sink=sink,
        settlement=settlement,
    )
    policy = http_policy(parse_manifest(manifest(http={"allowed_hosts": ["127.0.0.1"]})))
    effects = AgentEffects(
        agent,  # type: ignore[arg-type]
        services,
        http=policy,
        payment=None,
        custody=bytes(32),
    )
    return effects, settlement


def get(url: str) -> HttpRequest:
    return HttpRequest("GET", url, (), b"", 4096)


async def test_an_intent_the_owner_fence_refuses_means_no_request(server: FeedServer) -> None:
    server.routes["/x"] = Route(200, b"1")
    sink = FencedSink(owner=False)
    effects, _ = journal(sink)
    result = await trio.to_thread.run_sync(effects.http_request, get(f"{server.base}/x"))
    assert result.code == HttpCode.NOT_OWNER
    assert server.seen == [] and sink.appended == []


async def test_a_quiesced_agent_causes_no_effect(server: FeedServer) -> None:
    server.routes["/x"] = Route(200, b"1")
    sink = FencedSink(owner=True)
    effects, settlement = journal(sink, paused=True)
    result = await trio.to_thread.run_sync(effects.http_request, get(f"{server.base}/x"))
    paid = await trio.to_thread.run_sync(
        effects.wallet_pay, PaymentRequest(100, "shop", b"memo", 4096)
    )
    assert result.code == HttpCode.NOT_OWNER and paid.code == PayCode.NOT_OWNER
    assert server.seen == [] and sink.appended == [] and settlement.payments == {}


async def test_the_owner_records_intent_then_outcome_around_the_request(
    server: FeedServer,
) -> None:
    server.routes["/x"] = Route(200, b"1")
    sink = FencedSink(owner=True)
    effects, _ = journal(sink)
    result = await trio.to_thread.run_sync(effects.http_request, get(f"{server.base}/x"))
    assert result.code == 200
    intent, outcome = sink.appended
    assert outcome.prev == intent.digest()  # type: ignore[union-attr]
    assert server.requests("/x")[0].headers["idempotency-key"] == result.key.hex()
