"""Foundation area (issue 2): tick overhead, scheduler throughput, durable commits, big states.

Every row compares our path with a baseline measured in the same run:

- ``tick_overhead``: one tick through the scheduler's batch function (fuel allowance, tick,
  charge; no checkpoint) vs a bare wasmtime call of the same ``agent_tick`` export.
- ``scheduler_ticks_per_s`` / ``scheduler_durable_ticks_per_s``: ticks/s of N counter agents
  through :class:`TickScheduler` (history written, as on a node), without checkpoints and with a
  durable checkpoint every tick, vs bare wasmtime calls/s over N instances.
- ``durable_commits_per_s``: checkpoint commits/s of 4 KiB states, 100 agents each waiting for
  its own commit, through the :class:`GroupCommitter`, vs one raw SQLite batch insert of the
  same number of rows.
- ``snapshot_restore_1m`` / ``_16m``: snapshot, sign and encode the checkpoint, then decode,
  verify and resume it into a fresh instance, vs a plain copy of the same number of bytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio
from wasmtime import Engine, FuncType, Linker, Module, Store

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.agent.sandbox import AgentInstance, Sandbox
from igor_p2p.agent.source import load_agent_source
from igor_p2p.bench._agents import BUDGET, hosted_agents
from igor_p2p.bench.core import BenchArea, BenchContext, BenchRow, make_row, register
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.metering import fuel_allowance
from igor_p2p.runtime.scheduler import SchedulerConfig, TickScheduler, _tick_batch
from igor_p2p.runtime.services import NodeServices, open_services
from igor_p2p.store.benchmark import bench_checkpoint_commits, bench_raw_sqlite_batch_insert

AREA = "foundation"
NO_CHECKPOINT = 10**12
"""``checkpoint_every`` that means "never" within a run."""

TICK_OVERHEAD_TARGET = 3.0
TICKS_VS_BARE_TARGET = 1 / TICK_OVERHEAD_TARGET
"""Ticks/s without checkpoints: what a tick overhead of 3× allows."""
DURABLE_TICKS_VS_BARE_TARGET = 0.25
"""Issue 11: durable ticks (a checkpoint every tick) ≥ 0.25× bare calls."""
COMMITS_VS_RAW_TARGET = 0.40
"""Issue 11: durable commits/s ≥ 0.4× a raw batch insert."""


@dataclass(frozen=True)
class FoundationSizes:
    tick_agents: int
    """Agents ticked round-robin for the tick-overhead row."""
    tick_rounds: int
    scheduler_agents: int
    scheduler_window_s: float
    commit_agents: int
    commit_window_s: float
    bigstates: tuple[str, ...]
    bigstate_repeats: int


def sizes_for(ctx: BenchContext) -> FoundationSizes:
    if ctx.quick:
        return FoundationSizes(
            tick_agents=20,
            tick_rounds=50,
            scheduler_agents=50,
            scheduler_window_s=0.4,
            commit_agents=20,
            commit_window_s=0.4,
            bigstates=("bigstate_1m", "bigstate_16m"),
            bigstate_repeats=1,
        )
    return FoundationSizes(
        tick_agents=100,
        tick_rounds=200,
        scheduler_agents=1000,
        scheduler_window_s=3.0,
        commit_agents=100,
        commit_window_s=3.0,
        bigstates=("bigstate_1m", "bigstate_16m"),
        bigstate_repeats=5,
    )


# --------------------------------------------------------------------------- baselines


class BareCounters:
    """N plain wasmtime instances of an agent module: default engine, no fuel, no watchdog,
    hostcalls as no-ops. ``agent_tick`` is called directly."""

    def __init__(self, wasm: bytes, count: int) -> None:
        self.engine = Engine()
        module = Module(self.engine, wasm)
        self.calls: list[Callable[[], object]] = []
        for _ in range(count):
            store = Store(self.engine)
            linker = Linker(self.engine)
            for imp in module.imports:
                ty = imp.type
                assert isinstance(ty, FuncType)
                results = ty.results

                def stub(*_args: object, _n: int = len(results)) -> object:
                    return None if _n == 0 else 0

                linker.define_func(imp.module, imp.name or "", ty, stub)
            instance = linker.instantiate(store, module)
            exports = instance.exports(store)
            init = exports["agent_init"]
            tick = exports["agent_tick"]
            init(store)  # type: ignore[operator]
            self.calls.append(_bind(tick, store))

    def run_rounds(self, rounds: int) -> float:
        """Call every instance's ``agent_tick`` ``rounds`` times; returns seconds."""
        calls = self.calls
        start = time.perf_counter()
        for _ in range(rounds):
            for call in calls:
                call()
        return time.perf_counter() - start

    def calls_per_s(self, window_s: float) -> float:
        done = 0
        start = time.perf_counter()
        deadline = start + window_s
        while True:
            self.run_rounds(1)
            done += len(self.calls)
            now = time.perf_counter()
            if now >= deadline:
                return done / (now - start)


def _bind(func: object, store: Store) -> Callable[[], object]:
    def call() -> object:
        return func(store)  # type: ignore[operator]

    return call


def bytes_copy_seconds(size: int, repeats: int) -> float:
    """Median seconds of a plain copy of ``size`` bytes (bytes(bytearray) round trip)."""
    source = bytearray(size)
    source[::4096] = b"\x01" * len(source[::4096])
    times = []
    for _ in range(max(3, repeats)):
        start = time.perf_counter()
        copied = bytes(source)
        times.append(time.perf_counter() - start)
        del copied
    return _median(times)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# --------------------------------------------------------------------------- node set-up


def _example_manifest(name: str) -> bytes:
    from igor_p2p.agent.examples import example_manifest_path

    return example_manifest_path(name).read_bytes()


# --------------------------------------------------------------------------- rows


def tick_overhead_row(ctx: BenchContext, sizes: FoundationSizes) -> BenchRow:
    wasm = load_agent_source("counter")
    bare = BareCounters(wasm, sizes.tick_agents)
    bare.run_rounds(5)  # warm up
    bare_s = bare.run_rounds(sizes.tick_rounds)
    ticks = sizes.tick_agents * sizes.tick_rounds
    bare_us = bare_s / ticks * 1e6

    async def ours() -> tuple[float, int]:
        async with (
            open_services(DataDir(ctx.workdir / "tick-overhead")) as services,
            hosted_agents(services, "counter", sizes.tick_agents) as (_local, agents),
        ):

            def batch() -> None:
                items = [(a, fuel_allowance(a.budget, a.price)) for a in agents]
                _tick_batch(items, services, NO_CHECKPOINT)

            batch()
            batch()  # warm up
            start = time.perf_counter()
            for _ in range(sizes.tick_rounds):
                batch()
            return time.perf_counter() - start, sizes.tick_agents * sizes.tick_rounds

    ours_s, our_ticks = trio.run(ours)
    ours_us = ours_s / our_ticks * 1e6
    ratio = ours_us / bare_us
    ctx.log(f"tick: ours {ours_us:.1f} µs, bare {bare_us:.1f} µs ({ratio:.2f}×)")
    return make_row(
        AREA,
        "tick_overhead",
        ours_us,
        "µs/tick",
        "bare wasmtime agent_tick call",
        bare_us,
        target=f"≤ {TICK_OVERHEAD_TARGET:g}×",
        met=ratio <= TICK_OVERHEAD_TARGET,
        details={"agents": sizes.tick_agents, "ticks": our_ticks},
    )


async def _scheduler_rate(
    services: NodeServices, agents: list[HostedAgent], checkpoint_every: int, window_s: float
) -> tuple[float, int]:
    """Ticks/s of ``agents`` through a fresh TickScheduler over ``window_s`` (after warm-up)."""
    config = SchedulerConfig(
        idle_interval_s=0.0, busy_interval_s=0.0, checkpoint_every=checkpoint_every
    )
    scheduler = TickScheduler(services, services.tick_sink(), config)
    for agent in agents:
        scheduler.add(agent)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await trio.sleep(min(0.5, window_s / 3))  # warm-up: every agent has ticked
        ticks0, t0 = scheduler.ticks_total, time.perf_counter()
        await trio.sleep(window_s)
        ticks1, t1 = scheduler.ticks_total, time.perf_counter()
        nursery.cancel_scope.cancel()
    for agent in agents:
        scheduler.remove(agent.did)
    return (ticks1 - ticks0) / (t1 - t0), ticks1 - ticks0


def scheduler_rows(ctx: BenchContext, sizes: FoundationSizes) -> list[BenchRow]:
    n = sizes.scheduler_agents
    wasm = load_agent_source("counter")
    bare = BareCounters(wasm, n)
    bare.run_rounds(2)
    bare_rate = bare.calls_per_s(max(0.3, sizes.scheduler_window_s / 2))
    del bare

    async def ours() -> tuple[tuple[float, int], tuple[float, int], int]:
        async with open_services(DataDir(ctx.workdir / "scheduler")) as services:
            ctx.log(f"launching {n} counter agents")
            async with hosted_agents(services, "counter", n) as (_local, agents):
                fast = await _scheduler_rate(
                    services, agents, NO_CHECKPOINT, sizes.scheduler_window_s
                )
                tx0 = services.store.transactions_committed
                durable = await _scheduler_rate(services, agents, 1, sizes.scheduler_window_s)
                return fast, durable, services.store.transactions_committed - tx0

    (fast_rate, fast_ticks), (durable_rate, durable_ticks), transactions = trio.run(ours)
    ctx.log(
        f"scheduler: {fast_rate:,.0f} ticks/s, durable {durable_rate:,.0f} ticks/s, "
        f"bare {bare_rate:,.0f} calls/s"
    )
    baseline = f"bare wasmtime calls/s, {n} instances"
    return [
        make_row(
            AREA,
            "scheduler_ticks_per_s",
            fast_rate,
            "ticks/s",
            baseline,
            bare_rate,
            target=f"≥ {TICKS_VS_BARE_TARGET:.2g}× bare",
            met=fast_rate >= TICKS_VS_BARE_TARGET * bare_rate,
            details={"agents": n, "ticks": fast_ticks, "checkpoint_every": NO_CHECKPOINT},
        ),
        make_row(
            AREA,
            "scheduler_durable_ticks_per_s",
            durable_rate,
            "ticks/s",
            baseline,
            bare_rate,
            target=f"≥ {DURABLE_TICKS_VS_BARE_TARGET:g}× bare",
            met=durable_rate >= DURABLE_TICKS_VS_BARE_TARGET * bare_rate,
            details={
                "agents": n,
                "ticks": durable_ticks,
                "checkpoint_every": 1,
                "transactions": transactions,
            },
        ),
    ]


def commit_row(ctx: BenchContext, sizes: FoundationSizes) -> BenchRow:
    commits = bench_checkpoint_commits(
        ctx.workdir, agents=sizes.commit_agents, state_size=4096, seconds=sizes.commit_window_s
    )
    raw = bench_raw_sqlite_batch_insert(
        ctx.workdir, rows=max(1000, int(commits["commits"])), state_size=4096
    )
    rate = commits["commits_per_s"]
    ratio = rate / raw["rows_per_s"]
    ctx.log(
        f"commits: {rate:,.0f}/s ({commits['commits_per_transaction']:.0f}/txn), "
        f"raw {raw['rows_per_s']:,.0f} rows/s ({ratio:.0%})"
    )
    return make_row(
        AREA,
        "durable_commits_per_s",
        rate,
        "commits/s",
        "raw SQLite batch insert rows/s",
        raw["rows_per_s"],
        target=f"≥ {COMMITS_VS_RAW_TARGET:g}× raw",
        met=ratio >= COMMITS_VS_RAW_TARGET,
        details={
            "agents": sizes.commit_agents,
            "state_size": 4096,
            "commits": int(commits["commits"]),
            "transactions": int(commits["transactions"]),
            "commits_per_transaction": commits["commits_per_transaction"],
            "integrity_problems": int(commits["integrity_problems"]),
        },
    )


SNAPSHOT_STEPS = ("snapshot", "sign", "digest", "decode", "verify", "instantiate", "resume")
"""The steps of one snapshot + restore, timed one by one (where the time goes)."""
SNAPSHOT_TARGET = 10.0
"""Issue 11: snapshot + restore of 16 MiB ≤ 10× a plain copy of it."""


def _snapshot_restore_once(
    sandbox: Sandbox, key: Keypair, instance: AgentInstance
) -> tuple[dict[str, float], int]:
    """Seconds per step of a snapshot, signed checkpoint, digest, decode, signature check and
    resume into a fresh instance; and the state size."""
    from igor_p2p.runtime.clock import NodeClock
    from igor_p2p.runtime.hosted import AgentEnvironment

    compiled = instance.module
    manifest = instance.manifest
    marks = [time.perf_counter()]
    state = instance.snapshot()
    marks.append(time.perf_counter())
    checkpoint = UnsignedCheckpoint(
        agent=key.did,
        epoch=1,
        tick=1,
        prev=bytes(32),
        kind=CheckpointKind.TICK,
        wasm_hash=compiled.sha256,
        manifest_hash=manifest.hash,
        budget=BUDGET,
        price=1000,
        wall_ns=time.time_ns(),
        state=state,
        owner=key.public_key,
    ).sign(key)
    blob = checkpoint.encode()
    marks.append(time.perf_counter())
    checkpoint.digest()
    marks.append(time.perf_counter())
    decoded = Checkpoint.decode(blob)
    marks.append(time.perf_counter())
    decoded.verify_signature()
    marks.append(time.perf_counter())
    env = AgentEnvironment(did=key.did, clock=NodeClock(), budget=BUDGET)
    fresh = sandbox.instantiate(compiled, manifest, env)
    marks.append(time.perf_counter())
    try:
        fresh.resume(decoded.state)
    finally:
        marks.append(time.perf_counter())
        fresh.close()
    steps = {name: marks[i + 1] - marks[i] for i, name in enumerate(SNAPSHOT_STEPS)}
    return steps, len(state)


def snapshot_rows(ctx: BenchContext, sizes: FoundationSizes) -> list[BenchRow]:
    rows: list[BenchRow] = []
    key = Keypair.generate()
    from igor_p2p.runtime.clock import NodeClock
    from igor_p2p.runtime.hosted import AgentEnvironment

    with Sandbox() as sandbox:
        for name in sizes.bigstates:
            compiled = sandbox.compile(load_agent_source(name))
            manifest = parse_manifest(_example_manifest(name))
            env = AgentEnvironment(did=key.did, clock=NodeClock(), budget=BUDGET)
            instance = sandbox.instantiate(compiled, manifest, env)
            runs: list[dict[str, float]] = []
            size = 0
            try:
                instance.tick(10_000_000)
                for _ in range(max(1, sizes.bigstate_repeats)):
                    steps, size = _snapshot_restore_once(sandbox, key, instance)
                    runs.append(steps)
            finally:
                instance.close()
            medians = {step: _median([r[step] for r in runs]) for step in SNAPSHOT_STEPS}
            total_ms = sum(medians.values()) * 1e3
            copy_ms = bytes_copy_seconds(size, sizes.bigstate_repeats) * 1e3
            parts = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in medians.items())
            ctx.log(f"{name}: {total_ms:.1f} ms round trip ({parts}), copy {copy_ms:.2f} ms")
            big = name == "bigstate_16m"
            rows.append(
                make_row(
                    AREA,
                    f"snapshot_restore_{name.removeprefix('bigstate_')}",
                    total_ms,
                    "ms",
                    f"bytes copy of {_human(size)}",
                    copy_ms,
                    target=f"≤ {SNAPSHOT_TARGET:g}× copy" if big else "",
                    met=total_ms <= SNAPSHOT_TARGET * copy_ms if big else None,
                    details={
                        "state_bytes": size,
                        "repeats": len(runs),
                        **{f"{k}_ms": round(v * 1e3, 3) for k, v in medians.items()},
                    },
                )
            )
    return rows


def _human(size: int) -> str:
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


def run(ctx: BenchContext) -> list[BenchRow]:
    sizes = sizes_for(ctx)
    rows = [tick_overhead_row(ctx, sizes)]
    rows.extend(scheduler_rows(ctx, sizes))
    rows.append(commit_row(ctx, sizes))
    rows.extend(snapshot_rows(ctx, sizes))
    for row in rows:
        if not all(math.isfinite(v) for v in (row.value, row.baseline_value)):
            ctx.log(f"warning: {row.name} has a non-finite figure")
    return rows


register(
    BenchArea(
        AREA,
        run,
        "tick overhead, scheduler ticks/s, durable commits/s, snapshot+restore of big states",
    )
)
