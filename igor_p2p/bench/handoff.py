"""Handoff benchmarks: pause, cold migration, migrations/s, against the protocol's lower bound.

Two nodes run in this process on 127.0.0.1. The pause is read from the nodes' event histories:
the end of the agent's last tick on the source to the start of its first tick on the target.
The baseline measured in the same run is the protocol's lower bound on this machine: three
framed round trips over the same warm libp2p connection plus two fsyncs (target prepared,
source retired).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from igor_p2p.bench.core import BenchArea, BenchContext, BenchRow, make_row, register

AREA = "handoff"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _pauses(histories: list[Path], did: str) -> list[float]:
    """Seconds between the last tick of epoch e and the first tick of epoch e+1."""
    ticks: list[tuple[int, int, int]] = []  # (epoch, start, end)
    for path in histories:
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "tick" and event.get("agent") == did:
                ticks.append((event["epoch"], event["start_ns"], event["end_ns"]))
    by_epoch: dict[int, tuple[int, int]] = {}
    for epoch, start, end in ticks:
        first, last = by_epoch.get(epoch, (start, end))
        by_epoch[epoch] = (min(first, start), max(last, end))
    out = []
    for epoch in sorted(by_epoch):
        if epoch + 1 in by_epoch:
            out.append((by_epoch[epoch + 1][0] - by_epoch[epoch][1]) / 1e9)
    return out


async def _lower_bound(node_a: Any, node_b: Any, workdir: Path, rounds: int) -> float:
    """Median of (3 framed round trips on the warm connection + 2 fsyncs), seconds."""
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID

    from igor_p2p.net.framing import read_frame, write_frame

    proto = "/igor/bench-echo/1.0.0"

    async def echo(stream: Any) -> None:
        try:
            for _ in range(3):
                frame = await read_frame(stream, max_size=1 << 20, timeout_s=5)
                await write_frame(stream, frame, timeout_s=5)
        finally:
            await stream.close()

    node_b.running.host.set_stream_handler(TProtocol(proto), echo)
    peer = ID.from_base58(node_b.running.services.peer_id)
    path = workdir / "fsync-probe"
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        stream = await node_a.running.host.new_stream(peer, [TProtocol(proto)])
        for _ in range(3):
            await write_frame(stream, b"x" * 64, timeout_s=5)
            await read_frame(stream, max_size=1 << 20, timeout_s=5)
        await stream.close()
        for _ in range(2):
            with path.open("ab") as f:
                f.write(b"x" * 512)
                f.flush()
                os.fsync(f.fileno())
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def _two_nodes(workdir: Path, nursery: trio.Nursery, **config: Any) -> tuple[Any, Any]:
    from igor_p2p.node.config import NodeConfig
    from igor_p2p.node.node import Node

    base = dict(
        listen=("/ip4/127.0.0.1/tcp/0",),
        idle_interval_s=0.005,
        busy_interval_s=0.005,
        checkpoint_every=100_000,
        **config,
    )
    a = await nursery.start(Node(NodeConfig(data_dir=workdir / "a", name="a", **base)).run)
    boot = ((await a.status())["addrs"][0],)
    b = await nursery.start(
        Node(NodeConfig(data_dir=workdir / "b", name="b", bootstrap=boot, **base)).run
    )
    return a, b


async def _launch(node: Any, example: str, budget: int = 10**15) -> str:
    from igor_p2p.agent.source import load_agent_manifest, load_agent_source
    from igor_p2p.runtime.loader import LaunchRequest

    agent = await node.launch(
        LaunchRequest(
            wasm=load_agent_source(example),
            manifest=load_agent_manifest(example).canonical_bytes,
            budget=budget,
        )
    )
    return str(agent.did)


async def _ping_pong(nodes: tuple[Any, Any], did: str, hops: int) -> list[float]:
    """Migrate back and forth; wall seconds per migrate call."""
    durations = []
    for hop in range(hops):
        src, dst = nodes[hop % 2], nodes[(hop + 1) % 2]
        with trio.fail_after(30):
            while did not in src.running.scheduler.agents:
                await trio.sleep(0.001)
        start = time.perf_counter()
        await src.handoff.migrate(did, dst.running.services.peer_id)
        durations.append(time.perf_counter() - start)
    return durations


async def _measure(ctx: BenchContext) -> list[BenchRow]:
    rows: list[BenchRow] = []
    hops = ctx.size(40, 6)
    with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
        workdir = Path(tmp)
        async with trio.open_nursery() as nursery:
            a, b = await _two_nodes(workdir, nursery)
            bound = await _lower_bound(a, b, workdir, ctx.size(50, 10))
            rows.append(
                make_row(
                    AREA,
                    "lower bound: 3 round trips + 2 fsyncs",
                    bound * 1e3,
                    "ms",
                    "itself",
                    bound * 1e3,
                )
            )
            for example, label, p50_target in (
                ("bigstate_64k", "64 KiB", 0.015),
                ("bigstate_1m", "1 MiB", 0.040),
            ):
                ctx.log(f"handoff pause, {label} state")
                did = await _launch(a, example)
                await trio.sleep(0.05)
                await _ping_pong((a, b), did, hops)
                with trio.fail_after(30):
                    while (
                        did not in a.running.scheduler.agents
                        and did not in b.running.scheduler.agents
                    ):
                        await trio.sleep(0.001)
                await trio.sleep(0.05)
                pauses = _pauses(
                    [workdir / "a" / "history.jsonl", workdir / "b" / "history.jsonl"], did
                )
                p50, p99 = _pct(pauses, 0.5), _pct(pauses, 0.99)
                rows.append(
                    make_row(
                        AREA,
                        f"handoff pause p50, {label} state (warm)",
                        p50 * 1e3,
                        "ms",
                        "lower bound",
                        bound * 1e3,
                        target=f"≤ {p50_target * 1e3:.0f} ms",
                        met=p50 <= p50_target,
                        details={"hops": len(pauses)},
                    )
                )
                if label == "64 KiB":
                    rows.append(
                        make_row(
                            AREA,
                            f"handoff pause p99, {label} state (warm)",
                            p99 * 1e3,
                            "ms",
                            "lower bound",
                            bound * 1e3,
                            target="≤ 50 ms",
                            met=p99 <= 0.050,
                        )
                    )
                owner = a if did in a.running.scheduler.agents else b
                await owner.halt(did, "benchmark done")

            ctx.log("cold migration (dial included)")
            did = await _launch(a, "counter")
            cold = []
            for hop in range(ctx.size(10, 3)):
                src, dst = (a, b) if hop % 2 == 0 else (b, a)
                with trio.fail_after(30):
                    while did not in src.running.scheduler.agents:
                        await trio.sleep(0.001)
                from libp2p.peer.id import ID

                await src.running.host.disconnect(ID.from_base58(dst.running.services.peer_id))
                start = time.perf_counter()
                await src.handoff.migrate(did, dst.running.services.peer_id)
                cold.append(time.perf_counter() - start)
            cold_p50 = _pct(cold, 0.5)
            rows.append(
                make_row(
                    AREA,
                    "cold migration p50 (dial + full handoff)",
                    cold_p50 * 1e3,
                    "ms",
                    "lower bound",
                    bound * 1e3,
                    target="≤ 60 ms",
                    met=cold_p50 <= 0.060,
                )
            )

            count = ctx.size(100, 10)
            ctx.log(f"migrations/s with {count} agents")
            dids = [await _launch(a, "counter") for _ in range(count)]
            await trio.sleep(0.1)
            start = time.perf_counter()
            async with trio.open_nursery() as wave:
                for d in dids:
                    wave.start_soon(a.handoff.migrate, d, b.running.services.peer_id)
            elapsed = time.perf_counter() - start
            rate = count / elapsed
            rows.append(
                make_row(
                    AREA,
                    f"migrations/s between two nodes ({count} agents)",
                    rate,
                    "1/s",
                    "1 / lower bound",
                    1 / bound,
                )
            )
            a.stop()
            b.stop()
    return rows


def run(ctx: BenchContext) -> list[BenchRow]:
    return trio.run(_measure, ctx)


register(BenchArea(AREA, run, "handoff pause, cold migration, migrations/s vs the lower bound"))
