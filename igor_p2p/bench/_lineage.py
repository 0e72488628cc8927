"""Bench helper: agents with long lineages, built fast by signing entries directly.

Running 100,000 ticks through wasmtime, one fsync each, takes minutes; the bench needs only the
lineage a node holds after them. :func:`build_agents` makes, in a node's data directory before
the node starts, what ``agent launch`` and that many ticks would have left: each agent is
launched through a node core's authority gate (a genesis signed by a fresh agent key, the
``Launched`` event: module, manifest, an ACTIVE_OWNER record of epoch 1), then ``ticks`` TICK
checkpoints signed by the node key are committed through the tick path's own sink
(:class:`~igor_p2p.runtime.ticksink.StoreTickSink`, fenced on that record), so the default
retention compacts the lineage exactly as it would on a node. Every checkpoint carries a real
snapshot of the example agent (taken once from a real instance). When the node starts, it claims
a new epoch for each agent (a restart) and ticks it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from igor_p2p.agent.examples import example_manifest_path
from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.agent.sandbox import Sandbox
from igor_p2p.agent.source import load_agent_source
from igor_p2p.bench._agents import BUDGET, LocalCore, local_core
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.runtime.clock import NodeClock
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.hosted import AgentEnvironment
from igor_p2p.runtime.metering import DEFAULT_PRICE
from igor_p2p.runtime.services import open_services
from igor_p2p.runtime.ticksink import COMPACT_EVERY, StoreTickSink

TICKS_PER_BATCH = COMPACT_EVERY
"""Checkpoints per tick-sink call: one compaction interval, so retention keeps up with them as
it does with a node's batches."""


@dataclass(frozen=True)
class BuiltAgent:
    did: str
    ticks: int
    state_bytes: int
    wasm_bytes: int
    manifest_bytes: int
    checkpoint_bytes: int
    """Size of one of its checkpoints."""


def real_state(example: str) -> bytes:
    """A snapshot of the example agent after one tick (what its checkpoints carry)."""
    key = Keypair.generate()
    with Sandbox() as sandbox:
        compiled = sandbox.compile(load_agent_source(example))
        manifest = parse_manifest(example_manifest_path(example).read_bytes())
        env = AgentEnvironment(did=key.did, clock=NodeClock(), budget=BUDGET)
        instance = sandbox.instantiate(compiled, manifest, env)
        try:
            instance.tick(10_000_000)
            return instance.snapshot()
        finally:
            instance.close()


async def build_agents(
    data: DataDir,
    example: str,
    ticks: Sequence[int],
    witnesses: tuple[bytes, ...] | None = None,
) -> list[BuiltAgent]:
    """One agent per entry of ``ticks``, owned by the data directory's node at epoch 1."""
    data.ensure()
    node = data.node_keypair()
    wasm = load_agent_source(example)
    manifest = parse_manifest(example_manifest_path(example).read_bytes()).canonical_bytes
    state = await trio.to_thread.run_sync(real_state, example)
    named = tuple(sorted(witnesses if witnesses is not None else (node.public_key,)))
    built: list[BuiltAgent] = []
    async with open_services(data) as services:
        local = local_core(services)
        sink = services.tick_sink()
        try:
            for count in ticks:
                built.append(
                    await _build_one(local, sink, node, wasm, manifest, state, count, named)
                )
        finally:
            for did, agent in list(local.scheduler.agents.items()):
                local.scheduler.remove(did)
                agent.close()
    return built


async def _build_one(
    local: LocalCore,
    sink: StoreTickSink,
    node: Keypair,
    wasm: bytes,
    manifest: bytes,
    state: bytes,
    ticks: int,
    witnesses: tuple[bytes, ...],
) -> BuiltAgent:
    agent_key = Keypair.generate()
    did = agent_key.did
    wall = time.time_ns() - ticks * 1_000_000
    genesis = UnsignedCheckpoint(
        agent=did, epoch=1, tick=0, prev=ZERO_HASH, kind=CheckpointKind.GENESIS,
        wasm_hash=hashlib.sha256(wasm).digest(), manifest_hash=hashlib.sha256(manifest).digest(),
        budget=BUDGET, price=DEFAULT_PRICE, wall_ns=wall, state=b"", owner=node.public_key,
        witnesses=witnesses,
    ).sign(agent_key)  # fmt: skip
    await local.core.launched(did, genesis.encode(), witnesses, wasm, manifest)
    prev = genesis.digest()
    last: Checkpoint = genesis
    tick = 0
    while tick < ticks:
        batch = min(TICKS_PER_BATCH, ticks - tick)

        def sign_batch(
            start: int = tick, count: int = batch, head: bytes = prev
        ) -> list[Checkpoint]:
            out = []
            for n in range(start + 1, start + count + 1):
                checkpoint = UnsignedCheckpoint(
                    agent=did, epoch=1, tick=n, prev=head, kind=CheckpointKind.TICK,
                    wasm_hash=genesis.wasm_hash, manifest_hash=genesis.manifest_hash,
                    budget=BUDGET - n, price=DEFAULT_PRICE, wall_ns=wall + n * 1_000_000,
                    state=state, owner=node.public_key,
                ).sign(node)  # fmt: skip
                out.append(checkpoint)
                head = checkpoint.digest()
            return out

        checkpoints = await trio.to_thread.run_sync(sign_batch)
        errors = await sink.commit_ticks([(did, 1, ck, None) for ck in checkpoints])
        refused = [e for e in errors if e is not None]
        if refused:
            raise refused[0]
        last = checkpoints[-1]
        prev = last.digest()
        tick += batch
    return BuiltAgent(
        did=did,
        ticks=ticks,
        state_bytes=len(state),
        wasm_bytes=len(wasm),
        manifest_bytes=len(manifest),
        checkpoint_bytes=len(last.encode()),
    )
