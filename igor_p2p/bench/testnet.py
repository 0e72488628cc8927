"""Bench areas ``testnet`` and ``testnet-large``: the harness and the checker, each against a
same-run baseline.

``testnet``:

* ``testnet up -n 16`` (spawn → every peer table complete; nodes forked from the preloaded
  fork server, :mod:`testnet.zygote`), against one node process's start-up (spawn → admin
  socket answers) measured just before.
* RSS per node process of that testnet, against a Python process that only imports the node
  code.
* Checker time per 10,000 history events (``bench_checker``), against merely merging the same
  histories (``testnet.history.merge``).

``testnet-large`` (opt-in: ``python -m igor_p2p.bench --only testnet-large``; about two
minutes and all of a 2-core machine): ``testnet up -n 64`` to connected against one start,
connections per node against the high watermark, and idle CPU per node over 30 s, measured
30 s after connected (start-up's table syncs and extra announcements are over by then).
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from igor_p2p.bench.core import BenchArea, BenchContext, BenchRow, make_row, register

AREA = "testnet"
LARGE_AREA = "testnet-large"
UP_RATIO = 10.0
RSS_RATIO = 1.2
CHECK_TARGET_S = 1.0
LARGE_NODES = 64
LARGE_UP_TARGET_S = 60.0
IDLE_CPU_TARGET_PCT = 1.0
IDLE_WINDOW_S = 30.0
SETTLE_S = 30.0


def _one_node_start_s(root: Path) -> float:
    from testnet.harness import Testnet

    tn = Testnet(root / "single")
    try:
        return tn.up(1)
    finally:
        tn.down()


def _import_only_rss_mb() -> float:
    """RSS of a Python process once it has imported the node code (it says when)."""
    from igor_p2p.bench.node import _import_floor_rss_mb

    return _import_floor_rss_mb()


def _node_processes(tn) -> list[psutil.Process]:  # type: ignore[no-untyped-def]
    out = []
    for info in tn.state.nodes:
        if info.pid is not None:
            try:
                out.append(psutil.Process(info.pid))
            except psutil.Error:
                continue
    return out


def idle_cpu_pct(procs: list[psutil.Process], window_s: float) -> list[float]:
    """Each process's CPU over ``window_s``, in % of one core."""
    before = {}
    for p in procs:
        try:
            before[p.pid] = sum(p.cpu_times()[:2])
        except psutil.Error:
            continue
    time.sleep(window_s)
    out = []
    for p in procs:
        try:
            out.append((sum(p.cpu_times()[:2]) - before[p.pid]) / window_s * 100)
        except (psutil.Error, KeyError):
            continue
    return out


def run(ctx: BenchContext) -> list[BenchRow]:
    from testnet.checker import bench_checker
    from testnet.harness import Testnet
    from testnet.history import merge
    from testnet.synthetic import SyntheticSpec, synthesize

    n = ctx.size(16, 3)
    rows = []
    ctx.log(f"testnet: one node start-up, then up -n {n}")
    single = _one_node_start_s(ctx.workdir)
    tn = Testnet(ctx.workdir / "tn")
    try:
        up_s = tn.up(n)
        rss = [p.memory_info().rss / 1e6 for p in _node_processes(tn)]
    finally:
        tn.down()
    rows.append(
        make_row(
            AREA,
            f"up -n {n} to connected",
            up_s,
            "s",
            "one node start-up",
            single,
            target=f"≤ {UP_RATIO:g}× one start",
            met=up_s <= UP_RATIO * single,
            details={"start": "fork server (imports paid once)"},
        )
    )
    mean_rss = sum(rss) / len(rss)
    floor = _import_only_rss_mb()
    rows.append(
        make_row(
            AREA,
            "RSS per node process",
            mean_rss,
            "MB",
            "python importing the node code",
            floor,
            target=f"≤ {RSS_RATIO:g}× the import baseline",
            met=mean_rss <= RSS_RATIO * floor,
            details={"max_mb": round(max(rss), 1), "nodes": len(rss)},
        )
    )
    figures = bench_checker(10_000)
    per_10k = figures["seconds"] * 10_000 / figures["events"]
    spec = SyntheticSpec(agents=10, ticks_per_epoch=(45,) * 10)
    per_node = synthesize(spec)
    started = time.perf_counter()
    merged = merge(per_node.values())
    merge_s = (time.perf_counter() - started) * 10_000 / max(1, len(merged.events))
    rows.append(
        make_row(
            AREA,
            "checker per 10,000 events",
            per_10k,
            "s",
            "merge per 10,000 events",
            merge_s,
            target=f"< {CHECK_TARGET_S:g} s",
            met=per_10k < CHECK_TARGET_S,
            details={"events": figures["events"], "ok": str(figures["ok"])},
        )
    )
    return rows


def run_large(ctx: BenchContext) -> list[BenchRow]:
    from igor_p2p.node.config import NodeConfig
    from testnet.harness import Testnet

    n = ctx.size(LARGE_NODES, 8)
    high = NodeConfig().connections_high
    ctx.log(f"testnet-large: one node start-up, then up -n {n}")
    single = _one_node_start_s(ctx.workdir)
    tn = Testnet(ctx.workdir / "tn")
    try:
        up_s = tn.up(n, deadline_s=180.0)
        statuses = tn.admin_many(tn.names, "status", timeout_s=10.0)
        connections = [s["connections"] for s in statuses.values() if isinstance(s, dict)]
        ctx.log(f"testnet-large: connected in {up_s:.1f} s; settling {SETTLE_S:g} s")
        time.sleep(ctx.seconds(SETTLE_S, 5.0))  # start-up's table syncs and extra announcements
        ctx.log(f"testnet-large: idle CPU over {IDLE_WINDOW_S:g} s")
        cpu = idle_cpu_pct(_node_processes(tn), ctx.seconds(IDLE_WINDOW_S, 5.0))
    finally:
        tn.down()
    mean_cpu = sum(cpu) / len(cpu) if cpu else float("nan")
    return [
        make_row(
            LARGE_AREA,
            f"up -n {n} to connected",
            up_s,
            "s",
            "one node start-up",
            single,
            target=f"≤ {LARGE_UP_TARGET_S:g} s",
            met=up_s <= LARGE_UP_TARGET_S,
        ),
        make_row(
            LARGE_AREA,
            "connections per node (max)",
            max(connections),
            "connections",
            "high watermark",
            high,
            target=f"≤ {high}",
            met=max(connections) <= high,
            details={
                "min": min(connections),
                "mean": round(sum(connections) / len(connections), 1),
            },
        ),
        make_row(
            LARGE_AREA,
            "idle CPU per node (mean)",
            mean_cpu,
            "% of a core",
            "one core",
            100.0,
            target=f"≤ {IDLE_CPU_TARGET_PCT:g} %",
            met=mean_cpu <= IDLE_CPU_TARGET_PCT,
            details={"max_pct": round(max(cpu), 2) if cpu else 0.0, "window_s": IDLE_WINDOW_S},
        ),
    ]


register(BenchArea(AREA, run, "testnet harness start-up, node RSS, checker speed"))
register(
    BenchArea(
        LARGE_AREA,
        run_large,
        "64 node processes: up time, connections per node, idle CPU (opt-in: --only)",
        opt_in=True,
    )
)
