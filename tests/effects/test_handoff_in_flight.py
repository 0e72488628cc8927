"""A handoff (or halt) requested while an agent's HTTP request is in flight waits for the request
to finish (or time out) and for its tick to be committed, so the HANDOFF checkpoint a target gets
always comes after the effect's OUTCOME: never half-recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from igor_p2p.agent.effects import HttpCode
from igor_p2p.lineage.effect import EffectPhase, EffectRecord
from igor_p2p.lineage.entries import Checkpoint
from igor_p2p.lineage.envelope import CheckpointKind
from igor_p2p.lineage.inputs import TickInputs

from .agents import ProbeState, http_probe, lineage, local_node, manifest
from .server import FeedServer, Route, http_server


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with http_server() as s:
        yield s


async def _stop_during_request(
    tmp_path: Path, server: FeedServer, timeout_ms: int, release_after_stop: bool
) -> tuple[Checkpoint, list[object], bool]:
    release = threading.Event()
    server.routes["/slow"] = Route(200, b"42", hold=release)
    options = {"allowed_hosts": ["127.0.0.1"], "timeout_ms": timeout_ms}
    try:
        async with local_node(tmp_path) as node:
            did = await node.launch(http_probe(f"{server.base}/slow"), manifest(http=options))
            await trio.to_thread.run_sync(server.wait_for, "/slow")  # in flight: INTENT durable
            stopped = trio.Event()

            async def stop() -> None:
                await node.runner.stop(did)
                stopped.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop)
                with trio.move_on_after(0.3):
                    await stopped.wait()
                waited = not stopped.is_set()
                if release_after_stop:
                    release.set()
                with trio.fail_after(30):
                    await stopped.wait()
            handoff = await node.runner.handoff_checkpoint(did)
            entries = lineage(tmp_path, did)
    finally:
        release.set()
    return handoff, entries, waited


async def test_the_handoff_checkpoint_comes_after_the_outcome_of_the_request_in_flight(
    tmp_path: Path, server: FeedServer
) -> None:
    handoff, entries, waited = await _stop_during_request(tmp_path, server, 10_000, True)
    assert waited, "the stop returned while the request was still in flight"
    intent, outcome, inputs, tick = entries[-4:]
    assert isinstance(intent, EffectRecord) and intent.phase is EffectPhase.INTENT
    assert isinstance(outcome, EffectRecord) and outcome.status == 200
    assert isinstance(inputs, TickInputs) and isinstance(tick, Checkpoint)
    assert handoff.kind is CheckpointKind.HANDOFF and handoff.prev == tick.digest()
    assert ProbeState.of(handoff.state).first == 200
    assert len(server.requests("/slow")) == 1


async def test_a_request_that_does_not_finish_is_timed_out_before_the_handoff(
    tmp_path: Path, server: FeedServer
) -> None:
    handoff, entries, _ = await _stop_during_request(tmp_path, server, 500, False)
    outcome = entries[-3]
    assert isinstance(outcome, EffectRecord) and outcome.status == HttpCode.TIMEOUT
    assert ProbeState.of(handoff.state).first == HttpCode.TIMEOUT
    assert handoff.prev == entries[-1].digest()  # type: ignore[attr-defined]
