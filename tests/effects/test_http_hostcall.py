"""``igor.http_request`` end to end: an agent ticked by the local runtime against a server on
127.0.0.1 — Go Igor's response layout and codes, and each request recorded in the lineage as an
INTENT before it is sent and an OUTCOME after."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from igor_p2p.agent.effects import HttpCode
from igor_p2p.lineage.effect import EffectKind, EffectPhase, EffectRecord
from igor_p2p.lineage.entries import Checkpoint
from igor_p2p.lineage.inputs import TickInputs
from igor_p2p.lineage.verify import verify_lineage

from .agents import ProbeState, http_probe, lineage, manifest, run_agent
from .server import FeedServer, Route, http_server


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with http_server() as s:
        yield s


def allowed(**options: object) -> bytes:
    return manifest(http={"allowed_hosts": ["127.0.0.1"], **options})


async def probe(tmp_path: Path, wasm: bytes, manifest_bytes: bytes | None = None, ticks: int = 1):  # type: ignore[no-untyped-def]
    result = await run_agent(tmp_path, wasm, manifest_bytes or allowed(), ticks=ticks)
    entries = lineage(tmp_path, result.did)
    last = [e for e in entries if isinstance(e, Checkpoint)][-1]
    return ProbeState.of(last.state), entries


def effects(entries: list) -> list[EffectRecord]:  # type: ignore[type-arg]
    return [e for e in entries if isinstance(e, EffectRecord)]


async def test_the_status_is_returned_and_the_body_written_as_length_then_bytes(
    tmp_path: Path, server: FeedServer
) -> None:
    server.routes["/price"] = Route(200, b"1234")
    state, entries = await probe(tmp_path, http_probe(f"{server.base}/price"))
    assert state.first == 200
    assert state.buffer[:8] == struct.pack("<I", 4) + b"1234"
    intent, outcome = effects(entries)
    assert intent.phase is EffectPhase.INTENT and outcome.phase is EffectPhase.OUTCOME
    assert intent.effect is EffectKind.HTTP and intent.key == outcome.key
    assert (outcome.status, outcome.result) == (200, b"1234")
    assert server.requests("/price")[0].headers["idempotency-key"] == intent.key.hex()
    # INTENT, OUTCOME, then the tick's inputs and its checkpoint, one chain.
    kinds = [type(e).__name__ for e in entries]
    assert kinds[-4:] == ["EffectRecord", "EffectRecord", "TickInputs", "Checkpoint"]
    report = verify_lineage([e.encode() for e in entries], ordered=True)
    assert report.valid, report.problems
    assert (report.effects.intents, report.effects.outcomes, report.effects.unknown) == (1, 1, [])


async def test_a_post_sends_its_headers_and_body(tmp_path: Path, server: FeedServer) -> None:
    server.routes["/order"] = Route(201, b"")
    wasm = http_probe(
        f"{server.base}/order",
        method="POST",
        headers="Content-Type: application/json\nX-Agent: probe\nHost: evil.example\n",
        body=b'{"buy": 1}',
    )
    state, _ = await probe(tmp_path, wasm)
    assert state.first == 201
    seen = server.requests("/order")[0]
    assert (seen.method, seen.body) == ("POST", b'{"buy": 1}')
    assert seen.headers["x-agent"] == "probe" and seen.headers["content-type"] == "application/json"
    assert seen.headers["host"] == f"127.0.0.1:{server.port}"  # the agent cannot set Host


@pytest.mark.parametrize(
    "field", ["method", "url", "headers", "body"], ids=lambda f: f"{f}-too-long"
)
async def test_inputs_over_the_limits_are_too_long_and_nothing_is_sent(
    tmp_path: Path, server: FeedServer, field: str
) -> None:
    url = f"{server.base}/x"
    wasm = {
        "method": lambda: http_probe(url, method="G" * 17),
        "url": lambda: http_probe(url + "?" + "a" * 8192),
        "headers": lambda: http_probe(url, headers="X: " + "v" * (32 * 1024)),
        "body": lambda: http_probe(url, body=b"b" * (1024 * 1024 + 1)),
    }[field]()
    state, entries = await probe(tmp_path, wasm)
    assert state.first == HttpCode.TOO_LONG
    assert server.seen == [] and effects(entries) == []


async def test_a_pointer_outside_memory_is_a_memory_error(
    tmp_path: Path, server: FeedServer
) -> None:
    state, entries = await probe(tmp_path, http_probe(f"{server.base}/x", bad_pointer=True))
    assert state.first == HttpCode.NETWORK
    assert server.seen == [] and effects(entries) == []


async def test_a_host_not_allowed_records_nothing(tmp_path: Path, server: FeedServer) -> None:
    wasm = http_probe(f"{server.base}/x")
    state, entries = await probe(tmp_path, wasm, manifest(http={"allowed_hosts": ["10.0.0.1"]}))
    assert state.first == HttpCode.NOT_ALLOWED
    assert server.seen == [] and effects(entries) == []


async def test_a_response_bigger_than_the_buffer_gets_a_hint_and_the_retry_is_not_sent_again(
    tmp_path: Path, server: FeedServer
) -> None:
    server.routes["/big"] = Route(200, b"z" * 100)
    state, entries = await probe(tmp_path, http_probe(f"{server.base}/big", cap=16, retry_cap=512))
    assert state.first == HttpCode.TOO_BIG
    assert (state.second, state.buffer[:4]) == (200, struct.pack("<I", 100))
    assert len(server.requests("/big")) == 1  # Go's SDK retry got the recorded response
    assert len(effects(entries)) == 2


async def test_a_response_over_max_response_bytes_is_too_big_with_a_hint(
    tmp_path: Path, server: FeedServer
) -> None:
    server.routes["/big"] = Route(200, b"z" * 3000)
    state, entries = await probe(
        tmp_path, http_probe(f"{server.base}/big"), allowed(max_response_bytes=1000)
    )
    assert state.first == HttpCode.TOO_BIG
    assert state.buffer[:4] == struct.pack("<I", 3000)
    outcome = effects(entries)[-1]
    assert outcome.status == HttpCode.TOO_BIG and outcome.result == struct.pack("<I", 3000)


async def test_a_slow_server_times_out_and_the_outcome_says_so(
    tmp_path: Path, server: FeedServer
) -> None:
    release = threading.Event()
    server.routes["/slow"] = Route(200, b"late", hold=release)
    try:
        state, entries = await probe(
            tmp_path, http_probe(f"{server.base}/slow"), allowed(timeout_ms=300)
        )
    finally:
        release.set()
    assert state.first == HttpCode.TIMEOUT
    assert effects(entries)[-1].status == HttpCode.TIMEOUT


async def test_each_tick_with_a_request_is_checkpointed_with_its_inputs(
    tmp_path: Path, server: FeedServer
) -> None:
    server.routes["/price"] = Route(200, b"1")
    state, entries = await probe(tmp_path, http_probe(f"{server.base}/price"), ticks=3)
    assert state.ticks == 3
    inputs = [e for e in entries if isinstance(e, TickInputs)]
    assert [(i.first_tick, i.last_tick) for i in inputs] == [(1, 1), (2, 2), (3, 3)]
    assert len({e.key for e in effects(entries)}) == 3
