"""Running the selected areas, printing the table and writing ``.bench/results.json``."""

from __future__ import annotations

import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from igor_p2p.bench.core import (
    BenchContext,
    BenchError,
    BenchRow,
    discover,
    results_document,
    write_results,
)

DEFAULT_RESULTS = Path(".bench") / "results.json"


@dataclass(frozen=True)
class RunOptions:
    only: Sequence[str] = ()
    """Area names to run (empty: all)."""
    quick: bool = False
    out: Path = DEFAULT_RESULTS
    root: Path = field(default_factory=Path.cwd)
    """Where the git commit is read from."""
    show_table: bool = True


def _fmt(value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(rows: Sequence[BenchRow], console: Console) -> None:
    table = Table(title="igor-p2p bench", show_lines=False)
    for column, justify in (
        ("area", "left"),
        ("row", "left"),
        ("value", "right"),
        ("unit", "left"),
        ("baseline", "left"),
        ("baseline value", "right"),
        ("ratio", "right"),
        ("target", "left"),
        ("met", "center"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        met = "—" if r.met is None else ("[green]yes[/]" if r.met else "[red]no[/]")
        table.add_row(
            r.area,
            r.name,
            _fmt(r.value),
            r.unit,
            r.baseline_name,
            _fmt(r.baseline_value),
            f"{r.ratio:.3g}×",
            r.target,
            met,
        )
    console.print(table)


def run_bench(options: RunOptions) -> dict[str, object]:
    """Run the areas, print the table (stdout), write the JSON; returns the document."""
    areas = discover()
    names = list(options.only) or sorted(n for n, a in areas.items() if not a.opt_in)
    unknown = [n for n in names if n not in areas]
    if unknown:
        raise BenchError(f"unknown bench area(s) {unknown}; known: {sorted(areas)}")
    err = Console(file=sys.stderr)
    rows: list[BenchRow] = []
    for name in names:
        err.print(f"[bold]bench area {name}[/]{' (quick)' if options.quick else ''}")
        with tempfile.TemporaryDirectory(prefix=f"igor-bench-{name}-") as tmp:
            ctx = BenchContext(
                workdir=Path(tmp),
                quick=options.quick,
                log=lambda msg: err.print(f"  {msg}"),
            )
            rows.extend(areas[name].run(ctx))
    document = results_document(rows, areas=names, quick=options.quick, root=options.root)
    write_results(document, options.out)
    if options.show_table:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
        render(rows, console)
        err.print(f"results written to {options.out}")
    return document
