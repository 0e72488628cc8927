"""The benchmark framework: rows, areas, the area registry, and the results file.

Every figure is reported as a ratio against a baseline measured in the same run, so a row
stays meaningful on a slow or busy machine. A missed target is reported, never raised.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pkgutil
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from igor_p2p.errors import IgorError


class BenchError(IgorError):
    """The benchmark harness was misused (unknown area, duplicate area name)."""


@dataclass(frozen=True)
class BenchRow:
    """One measured figure and the baseline it is compared with.

    ``ratio`` is ``value / baseline_value``. ``met`` is True/False when the row has a target
    that could be evaluated, None when it has none.
    """

    area: str
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float
    ratio: float
    target: str = ""
    met: bool | None = None
    details: dict[str, float | int | str] = field(default_factory=dict)


def make_row(
    area: str,
    name: str,
    value: float,
    unit: str,
    baseline_name: str,
    baseline_value: float,
    *,
    target: str = "",
    met: bool | None = None,
    details: dict[str, float | int | str] | None = None,
) -> BenchRow:
    """A row with ``ratio = value / baseline_value`` (``inf`` if the baseline is 0)."""
    ratio = value / baseline_value if baseline_value else float("inf")
    return BenchRow(
        area=area,
        name=name,
        value=float(value),
        unit=unit,
        baseline_name=baseline_name,
        baseline_value=float(baseline_value),
        ratio=ratio,
        target=target,
        met=met,
        details=dict(details or {}),
    )


@dataclass
class BenchContext:
    """What an area's ``run`` gets: a scratch directory and the size knobs."""

    workdir: Path
    """Scratch space for this area (deleted after the run)."""
    quick: bool = False
    """Small sizes and short windows (smoke test / CI)."""
    scale: float = 1.0
    """Multiplier for measurement windows; ``--quick`` uses a small one."""
    log: Callable[[str], None] = lambda _msg: None
    """Progress messages (printed to stderr by the CLI)."""

    def seconds(self, full: float, quick: float) -> float:
        return quick if self.quick else full * self.scale

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass(frozen=True)
class BenchArea:
    """A named group of benchmark rows; ``run`` returns the rows."""

    name: str
    run: Callable[[BenchContext], list[BenchRow]]
    description: str = ""
    opt_in: bool = False
    """Run only when named with ``--only`` (too long or too heavy for every ``make bench``)."""


_REGISTRY: dict[str, BenchArea] = {}


def register(area: BenchArea) -> BenchArea:
    """Add an area to the registry (a module-level call in the area's module)."""
    existing = _REGISTRY.get(area.name)
    if existing is not None and existing is not area:
        raise BenchError(f"bench area {area.name!r} is registered twice")
    _REGISTRY[area.name] = area
    return area


def discover() -> dict[str, BenchArea]:
    """Import every module of the ``igor_p2p.bench`` package so their areas register."""
    import igor_p2p.bench as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in ("core", "runner"):
            continue
        importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(_REGISTRY)


def git_commit(root: Path) -> str | None:
    """The checked-out commit of ``root`` (with ``+dirty`` when it has changes), or None."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def machine_info() -> dict[str, object]:
    info: dict[str, object] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_bytes"] = psutil.virtual_memory().total
        info["load_average"] = list(os.getloadavg())
    except (ImportError, OSError):
        pass
    for name in ("wasmtime", "trio", "libp2p"):
        try:
            from importlib.metadata import version

            info[name] = version(name)
        except Exception:
            info[name] = None
    import sqlite3

    info["sqlite"] = sqlite3.sqlite_version
    return info


def results_document(
    rows: list[BenchRow], *, areas: list[str], quick: bool, root: Path
) -> dict[str, object]:
    return {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "timestamp_ns": time.time_ns(),
        "git_commit": git_commit(root),
        "quick": quick,
        "areas": areas,
        "machine": machine_info(),
        "rows": [asdict(r) for r in rows],
    }


def _finite(value: object) -> object:
    """NaN/±inf become None so the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_results(document: dict[str, object], path: Path) -> None:
    """Write ``document`` as strict JSON (non-finite figures become null), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    text = json.dumps(_finite(document), indent=2, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)
