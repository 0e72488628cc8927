"""Bench area ``testnet``: the harness and the checker, each against a same-run baseline.

* ``testnet up -n 16`` (spawn → every peer table complete), against one node process's
  start-up (spawn → admin socket answers) measured just before.
* RSS per node process of that testnet, against a Python process that only imports the node
  code.
* Checker time per 10,000 history events (``bench_checker``), against merely merging the same
  histories (``testnet.history.merge``).
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from igor_p2p.bench.core import BenchArea, BenchContext, BenchRow, make_row, register

AREA = "testnet"
UP_TARGET_S = 30.0
RSS_TARGET_MB = 150.0
CHECK_TARGET_S = 1.0


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
        rss = [
            psutil.Process(info.pid).memory_info().rss / 1e6
            for info in tn.state.nodes
            if info.pid is not None
        ]
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
            target=f"< {UP_TARGET_S:g} s",
            met=up_s < UP_TARGET_S,
        )
    )
    mean_rss = sum(rss) / len(rss)
    rows.append(
        make_row(
            AREA,
            "RSS per node process",
            mean_rss,
            "MB",
            "python importing the node code",
            _import_only_rss_mb(),
            target=f"< {RSS_TARGET_MB:g} MB",
            met=mean_rss < RSS_TARGET_MB,
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


register(BenchArea(AREA, run, "testnet harness start-up, node RSS, checker speed"))
