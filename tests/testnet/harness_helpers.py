"""Shared helpers for the harness tests (real node processes under /tmp)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testnet.checker import CheckResult, LivenessViolation
from testnet.harness import Testnet
from testnet.history import AuthorityEvent, FaultEvent, HandoffEvent, Histories


@contextmanager
def scratch(prefix: str = "igor-tn-") -> Iterator[Path]:
    """A short directory under /tmp (admin socket paths must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        if not os.environ.get("IGOR_KEEP_TESTNET"):
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_testnet(root: Path) -> Iterator[Testnet]:
    tn = Testnet(root)
    try:
        yield tn
    finally:
        if tn.state.nodes:
            tn.down(grace_s=5.0)


def evidence(
    result: CheckResult,
    history: Histories | None = None,
    limit: int = 10,
    only: set[str] | None = None,
) -> str:
    """The violations' summaries, for an assertion message; with the history, also the last
    handoff, authority and fault events around each agent that was not live after heal
    (``only``: just the violations with these summaries)."""
    chosen = [v for v in result.violations if only is None or v.summary() in only]
    lines = [v.summary() for v in chosen[:limit]]
    stuck = {v.agent for v in chosen if isinstance(v, LivenessViolation)}
    for agent in sorted(stuck) if history is not None else ():
        assert history is not None
        lines.append(f"last events of {agent[-8:]} (ms from the first event shown):")
        # The agent's own last steps first; the faults only around them (a schedule's faults
        # would otherwise crowd out what the stuck agent did).
        own = [
            e
            for e in history.events
            if isinstance(e, AuthorityEvent | HandoffEvent) and e.agent == agent
        ][-25:]
        since = own[0].mono_ns if own else 0
        faults = [e for e in history.events if isinstance(e, FaultEvent) and e.mono_ns >= since]
        events = sorted([*own, *faults[-15:]], key=lambda e: e.mono_ns)
        if not events:
            continue
        for e in events:
            at = (e.mono_ns - events[0].mono_ns) // 1_000_000
            what = {k: v for k, v in vars_of(e).items() if k not in ("peer_id", "wall_ns")}
            lines.append(f"  +{at} ms {type(e).__name__} {what}")
    return result.to_text() + "\n" + "\n".join(lines)


def vars_of(event: object) -> dict[str, object]:
    """A slotted event's fields."""
    return {name: getattr(event, name) for name in getattr(event, "__dataclass_fields__", {})}
