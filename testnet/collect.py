"""Collect a testnet directory's histories and stores, check them, write the report.

Stores are opened read-only (``file:…?mode=ro``), so this works while nodes still run: SQLite
WAL readers see the last committed transaction and never block the writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from igor_p2p.errors import IgorError
from igor_p2p.lineage.effect import EffectPhase, EffectRecord
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.store.records import LineageRow
from igor_p2p.store.sqlite import Store
from testnet.checker import AgentStore, CheckConfig, CheckResult, StoreEntry, StoreSnapshot, check
from testnet.history import Histories, merge, read_histories
from testnet.report import load_context, render_report

DB_FILE = "igor.db"
REPORT_FILE = "report.html"


class CollectError(IgorError):
    """A store could not be read."""


def _open_read_only(path: Path) -> Store:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise CollectError(f"cannot open {path} read-only: {exc}") from exc
    return Store(conn, path)


def _entries(rows: list[LineageRow]) -> tuple[StoreEntry, ...]:
    """Store rows as the checker sees them; the budget comes from the decoded checkpoint
    (custody records carry none: 0, and the checker uses budgets of checkpoints only); an
    EFFECT row's charge from the decoded record (an OUTCOME's, less its INTENT's reserve)."""
    out: list[StoreEntry] = []
    reserved: dict[bytes, int] = {}
    for row in rows:
        budget = charge = 0
        try:
            decoded = decode_entry(row.blob)
        except IgorError:
            decoded = None
        if isinstance(decoded, Checkpoint):
            budget = decoded.budget
        elif isinstance(decoded, EffectRecord):
            if decoded.phase is EffectPhase.INTENT:
                charge = reserved[decoded.key] = decoded.charge
            else:
                charge = decoded.charge - reserved.pop(decoded.key, 0)
        out.append(
            StoreEntry(
                row.digest.hex(), row.prev.hex(), row.epoch, row.tick, row.kind, budget, charge
            )
        )
    return tuple(out)


def snapshot_store(node: str, data_dir: Path) -> StoreSnapshot | None:
    """What ``data_dir/igor.db`` holds now, per agent; ``None`` if there is no store."""
    path = Path(data_dir) / DB_FILE
    if not path.exists():
        return None
    store = _open_read_only(path)
    try:
        agents: dict[str, AgentStore] = {}
        try:
            for agent, record in store.records():
                rows = store.lineage_rows(agent)
                agents[agent] = AgentStore(
                    _entries(rows),
                    str(record.state),
                    record.detail or (record.reason.value if record.reason else None),
                )
        except sqlite3.Error as exc:
            raise CollectError(f"cannot read {path}: {exc}") from exc
        return StoreSnapshot(node, agents)
    finally:
        store.close()


def node_dirs(root: Path) -> dict[str, Path]:
    """Node name → data dir: each directory below ``root`` holding a ``history.jsonl``."""
    return {p.parent.name: p.parent for p in sorted(Path(root).glob("*/history.jsonl"))}


def collect(root: str | Path) -> tuple[Histories, dict[str, StoreSnapshot]]:
    """Every node's history (plus the nemesis log) merged, and every node's store."""
    root = Path(root)
    histories = merge(read_histories(root))
    stores: dict[str, StoreSnapshot] = {}
    for name, data in node_dirs(root).items():
        snap = snapshot_store(name, data)
        if snap is not None:
            stores[name] = snap
    return histories, stores


@dataclass(frozen=True)
class Checked:
    history: Histories
    result: CheckResult
    report: Path


def check_dir(
    root: str | Path,
    *,
    config: CheckConfig | None = None,
    title: str | None = None,
    freeze: Callable[[], AbstractContextManager[object]] | None = None,
    on_phase: Callable[[str], None] = lambda _phase: None,
) -> Checked:
    """Collect, check and write ``root/report.html``.

    With nodes still running, pass ``freeze`` (e.g. ``Testnet.frozen``): histories read before
    the stores would miss the ticks of entries committed in between, and stores read first
    would miss commits that histories then report."""
    root = Path(root)
    on_phase("reading histories and stores")
    with freeze() if freeze is not None else contextlib.nullcontext():
        history, stores = collect(root)
    on_phase(f"checking {len(history.events)} events")
    result = check(history, stores=stores, config=config)
    on_phase("writing the report")
    report = root / REPORT_FILE
    page = render_report(
        history, result, title=title or f"testnet {root}", context=load_context(root)
    )
    report.write_text(page, encoding="utf-8")
    return Checked(history, result, report)


__all__ = ["Checked", "CollectError", "check_dir", "collect", "node_dirs", "snapshot_store"]
