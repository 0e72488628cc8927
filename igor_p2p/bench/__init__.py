"""``python -m igor_p2p.bench``: performance figures, each a ratio against a same-run baseline.

Areas are pluggable: a module in this package that calls :func:`register` with a
:class:`BenchArea` is found by :func:`discover` (``foundation`` is the first one).
"""

from __future__ import annotations

from igor_p2p.bench.core import (
    BenchArea,
    BenchContext,
    BenchError,
    BenchRow,
    discover,
    make_row,
    register,
)
from igor_p2p.bench.runner import RunOptions, run_bench

__all__ = [
    "BenchArea",
    "BenchContext",
    "BenchError",
    "BenchRow",
    "RunOptions",
    "discover",
    "make_row",
    "register",
    "run_bench",
]
