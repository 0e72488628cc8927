"""Replay on arrival, between two in-process nodes over loopback libp2p: a target whose policy
is to re-execute the last K ticks of incoming agents gets them in the OFFER (after one
REPLAY_REQUIRED), replays them before it acks, and refuses a copy whose recorded inputs do not
give the states its checkpoints hold — the source then ticks on as the owner, the target holds
nothing, and ``igor checkpoint verify`` on the target shows the evidence. With the policy off,
the OFFER carries nothing more than before."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from typer.testing import CliRunner

from igor_p2p.cli.main import app
from igor_p2p.effects.observations import Obs, decode_log, encode_log
from igor_p2p.lineage.entries import Checkpoint, decode_entry
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.inputs import TickInputs, UnsignedTickInputs
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.node import Node
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.wire.codec import Message, encode
from igor_p2p.wire.messages import Offer, Reject, RejectCode

from .agents import observer
from .lineage_rewrite import resigned_from

TICKS_BEFORE = 6
"""Ticks the agent runs on the source before it is moved (more than the 3 replayed)."""


def _manifest(replay_on_arrival: int = 0) -> bytes:
    caps = {name: {"version": 1, "options": {}} for name in ("clock", "rand")}
    caps["http"] = {"version": 1, "options": {"allowed_hosts": ["127.0.0.1"]}}
    root: dict[str, Any] = {"capabilities": caps}
    if replay_on_arrival:
        root["migration_policy"] = {"enabled": True, "replay_on_arrival": replay_on_arrival}
    return json.dumps(root).encode()


# Reads the clock and random bytes every tick (its state sums them); never reaches the URL.
AGENT = observer("http://127.0.0.1:9/never", every=10**9)


def _config(root: Path, name: str, boot: tuple[str, ...] = (), **extra: Any) -> NodeConfig:
    return NodeConfig(
        data_dir=root / name,
        name=name,
        listen=("/ip4/127.0.0.1/tcp/0",),
        bootstrap=boot,
        idle_interval_s=0.02,
        busy_interval_s=0.02,
        announce_interval_s=0.2,
        log_level="ERROR",
        **extra,
    )


@dataclasses.dataclass
class Pair:
    source: Any
    target: Any
    sent: list[Message]
    """Every request the source sent the target (as sent)."""
    replies: list[Message]


@asynccontextmanager
async def two_nodes(
    root: Path, replay_on_arrival: int, forge: Callable[[Offer], Offer] | None = None
) -> AsyncIterator[Pair]:
    async with trio.open_nursery() as nursery:
        source = await nursery.start(Node(_config(root, "a")).run)
        boot = ((await source.api.status())["addrs"][0],)
        target = await nursery.start(
            Node(_config(root, "b", boot, replay_on_arrival=replay_on_arrival)).run
        )
        with trio.fail_after(30):
            while not (source.api.peers.up_peers() and target.api.peers.up_peers()):
                await trio.sleep(0.05)
        pair = Pair(source, target, [], [])
        transport = source.running.core.ports.transport
        send = transport.request
        target_key = bytes(target.running.core.me)

        async def request(peer: bytes, message: Message, timeout: float) -> Message:
            if peer == target_key and isinstance(message, Offer):
                if forge is not None and message.replay is not None:
                    message = forge(message)
                pair.sent.append(message)
                reply = await send(peer, message, timeout)
                pair.replies.append(reply)
                return reply
            return await send(peer, message, timeout)

        transport.request = request
        try:
            yield pair
        finally:
            source.stop()
            target.stop()


async def _launch_and_tick(node: Any, manifest: bytes, ticks: int) -> str:
    launched = await node.api.launch(LaunchRequest(AGENT, manifest, 10**12))
    did = str(launched["agent"])
    await _ticked(node, did, ticks)
    return did


async def _ticked(node: Any, did: str, at_least: int) -> int:
    with trio.fail_after(60):
        while True:
            hosted = node.api.scheduler.agents.get(did)
            if hosted is not None and hosted.head.tick >= at_least:
                return int(hosted.head.tick)
            await trio.sleep(0.02)


def _runner(node: Any) -> Any:
    return node.running.core.ports.runner


async def test_with_replay_off_the_offer_carries_no_replay_window(tmp_path: Path) -> None:
    async with two_nodes(tmp_path, replay_on_arrival=0) as pair:
        did = await _launch_and_tick(pair.source, _manifest(), TICKS_BEFORE)
        outcome = await pair.source.running.core.migrate(did, bytes(pair.target.running.core.me))
        assert outcome.result.value == "TRANSFERRED", outcome
        assert _runner(pair.target).arrival_ticks_replayed == 0
    [offer] = pair.sent
    assert isinstance(offer, Offer) and offer.replay is None
    assert "replay" not in offer.to_wire()  # not even the key: the OFFER costs what it did
    plain = dataclasses.replace(offer, replay=())
    assert len(encode(offer)) < len(encode(plain))


async def test_a_target_that_replays_three_ticks_asks_for_them_replays_them_and_takes_the_agent(
    tmp_path: Path,
) -> None:
    async with two_nodes(tmp_path, replay_on_arrival=3) as pair:
        did = await _launch_and_tick(pair.source, _manifest(), TICKS_BEFORE)
        outcome = await pair.source.running.core.migrate(did, bytes(pair.target.running.core.me))
        assert outcome.result.value == "TRANSFERRED", outcome
        replayed = _runner(pair.target).arrival_ticks_replayed
        ticks_on_target = await _ticked(pair.target, did, TICKS_BEFORE + 1)
    assert replayed == 3
    first, second = pair.sent
    assert isinstance(first, Offer) and first.replay is None
    [asked, _ack] = pair.replies
    assert isinstance(asked, Reject) and asked.code is RejectCode.REPLAY_REQUIRED
    assert asked.replay_ticks == 3
    assert isinstance(second, Offer) and second.replay is not None
    window = [decode_entry(b) for b in second.replay]
    handoff = decode_entry(second.checkpoint)
    assert isinstance(window[0], Checkpoint) and isinstance(handoff, Checkpoint)
    assert handoff.tick - window[0].tick == 3
    assert any(isinstance(e, TickInputs) for e in window)
    assert ticks_on_target > TICKS_BEFORE


async def test_an_agent_whose_manifest_asks_for_replay_offers_its_ticks_at_once(
    tmp_path: Path,
) -> None:
    async with two_nodes(tmp_path, replay_on_arrival=0) as pair:
        did = await _launch_and_tick(pair.source, _manifest(replay_on_arrival=2), TICKS_BEFORE)
        outcome = await pair.source.running.core.migrate(did, bytes(pair.target.running.core.me))
        assert outcome.result.value == "TRANSFERRED", outcome
        replayed = _runner(pair.target).arrival_ticks_replayed
    [offer] = pair.sent
    assert isinstance(offer, Offer) and offer.replay is not None
    assert replayed == 2


def _forger(key: Keypair, changed: list[int]) -> Callable[[Offer], Offer]:
    """Changes one clock reading in the last tick-input record of the window, and re-signs
    everything after it (the HANDOFF checkpoint included) with the owner's key: every
    signature holds, only replay can tell."""

    def forge(offer: Offer) -> Offer:
        assert offer.replay is not None
        entries = [decode_entry(b) for b in offer.replay] + [decode_entry(offer.checkpoint)]
        index = max(i for i, e in enumerate(entries) if isinstance(e, TickInputs))
        inputs = entries[index]
        assert isinstance(inputs, TickInputs)
        log = decode_log(inputs.log)
        tick = max(log)
        log[tick] = [
            (kind, struct.pack("<q", 42) if kind is Obs.CLOCK else payload)
            for kind, payload in log[tick]
        ]
        changed.append(tick)
        fields = {f.name: getattr(inputs, f.name) for f in dataclasses.fields(inputs)}
        fields.pop("signature")
        fields["log"] = encode_log(sorted(log.items()))
        entries[index] = UnsignedTickInputs(**fields).sign(key)
        forged = resigned_from(entries, index, key)
        return dataclasses.replace(
            offer,
            replay=tuple(e.encode() for e in forged[:-1]),
            checkpoint=forged[-1].encode(),
        )

    return forge


async def test_a_tampered_recorded_input_is_refused_the_source_ticks_on_and_verify_shows_it(
    tmp_path: Path,
) -> None:
    changed: list[int] = []
    source_key = DataDir(tmp_path / "a").ensure().node_keypair()
    async with two_nodes(tmp_path, 3, forge=_forger(source_key, changed)) as pair:
        did = await _launch_and_tick(pair.source, _manifest(), TICKS_BEFORE)
        outcome = await pair.source.running.core.migrate(did, bytes(pair.target.running.core.me))
        assert outcome.result.value == "REJECTED", outcome
        assert outcome.code is RejectCode.REPLAY_MISMATCH
        before = pair.source.api.scheduler.agents[did].head.tick
        after = await _ticked(pair.source, did, before + 2)  # the source still owns and ticks
        record = await pair.target.api.store.record(did)
        held = await pair.target.api.store.lineage(did)
        mismatches = _runner(pair.target).arrival_mismatches
    assert after >= before + 2
    assert record is None or str(record.state) == "ABSENT"
    assert held == []
    assert mismatches == 1
    [tick] = changed
    result = CliRunner().invoke(
        app, ["checkpoint", "verify", did, "-d", str(tmp_path / "b"), "--json"]
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["valid"] is False
    [problem] = report["problems"]
    assert problem["code"] == "REPLAY_MISMATCH"
    assert f"ticks {tick}–{tick}" in problem["message"]


async def test_a_target_replays_only_as_much_as_its_cpu_limit_allows_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    # The incoming agent's ticks run on the target's CPU for nobody's budget: one arrival gets
    # at most ARRIVAL_REPLAY_FUEL, all of them REPLAY_FUEL_PER_S. A target at its limit says so
    # (POLICY_DENIED, in words) and the source keeps the agent ticking.
    async with two_nodes(tmp_path, replay_on_arrival=3) as pair:
        did = await _launch_and_tick(pair.source, _manifest(), TICKS_BEFORE)
        runner = _runner(pair.target)
        runner.replay_fuel.tokens = 0.0
        runner.replay_fuel.updated = trio.current_time()
        outcome = await pair.source.running.core.migrate(did, bytes(pair.target.running.core.me))
        assert outcome.result.value == "REJECTED", outcome
        assert "replaying other arrivals at its limit" in outcome.reason
        assert runner.arrival_replays_refused == 1 and runner.arrival_ticks_replayed == 0
        await _ticked(pair.source, did, TICKS_BEFORE + 2)  # still ticking at the source
