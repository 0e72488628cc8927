"""The steps of an agent's handoff, read from a node's ``history.jsonl`` as they are written.

The CLI shows ``igor agent migrate`` progress with this: it runs on the node's machine, so it
follows the node's history file directly (:class:`HandoffProgress`). The same reader backs the
admin method ``migration_progress`` (:func:`migration_progress`), for a node that registers it:

    methods["migration_progress"] = lambda params: migration_progress_method(node_history, params)

Self-contained: it depends only on the history format (docs/history.md), not on the driver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_READ_BYTES = 1 << 20
"""The most bytes one poll reads (a burst of ticks between polls is skipped past)."""
MAX_STEPS = 256
"""The most steps one answer holds."""

PHASES = ("offer", "ack", "commit", "confirm")
"""The handoff's four messages, in order; a step is shown as the phase it reached."""


@dataclass(frozen=True)
class HandoffStep:
    """One ``handoff`` step or ``authority`` transition of the agent, as the node wrote it."""

    mono_ns: int
    kind: str
    """``handoff`` or ``authority``."""
    step: str
    """The handoff step (``offer_sent``, ``ack_received``…) or the new authority state."""
    epoch: int | None = None
    peer: str | None = None
    detail: str | None = None

    @property
    def phase(self) -> str | None:
        """``offer``/``ack``/``commit``/``confirm`` when the step is one of the messages."""
        head = self.step.split("_", 1)[0]
        return head if head in PHASES else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mono_ns": self.mono_ns,
            "kind": self.kind,
            "step": self.step,
            "epoch": self.epoch,
            "peer": self.peer,
            "detail": self.detail,
        }


def parse_step(line: bytes, agent: str, since_mono_ns: int) -> HandoffStep | None:
    """The step a history line records for ``agent`` at or after ``since_mono_ns``, if any."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("agent") != agent:
        return None
    mono = event.get("mono_ns")
    if not isinstance(mono, int) or mono < since_mono_ns:
        return None
    epoch = event.get("epoch") if isinstance(event.get("epoch"), int) else None
    detail = event.get("detail") if isinstance(event.get("detail"), str) else None
    if event.get("type") == "handoff" and isinstance(event.get("step"), str):
        peer = event.get("peer") if isinstance(event.get("peer"), str) else None
        return HandoffStep(mono, "handoff", event["step"], epoch, peer, detail)
    if event.get("type") == "authority" and isinstance(event.get("to_state"), str):
        reason = event.get("reason") if isinstance(event.get("reason"), str) else None
        return HandoffStep(mono, "authority", event["to_state"], epoch, None, reason)
    return None


@dataclass
class HandoffProgress:
    """Follows ``history`` from its current end; :meth:`poll` returns the agent's new steps."""

    history: Path
    agent: str
    since_mono_ns: int = 0
    offset: int | None = None
    _partial: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.offset is None:
            try:
                self.offset = self.history.stat().st_size
            except OSError:
                self.offset = 0

    def poll(self) -> list[HandoffStep]:
        try:
            with self.history.open("rb") as f:
                size = f.seek(0, 2)
                assert self.offset is not None
                if size < self.offset:  # the file was replaced: start again
                    self.offset, self._partial = 0, b""
                if size - self.offset > MAX_READ_BYTES:
                    self.offset, self._partial = size - MAX_READ_BYTES, b""
                f.seek(self.offset)
                data = f.read(size - self.offset)
        except OSError:
            return []
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        steps = [parse_step(line, self.agent, self.since_mono_ns) for line in lines if line]
        return [s for s in steps if s is not None][:MAX_STEPS]


def migration_progress(history: Path, agent: str, since_mono_ns: int = 0) -> list[dict[str, Any]]:
    """The agent's handoff steps since ``since_mono_ns`` in the last MiB of ``history``."""
    try:
        size = history.stat().st_size
    except OSError:
        return []
    reader = HandoffProgress(history, agent, since_mono_ns, offset=max(0, size - MAX_READ_BYTES))
    return [s.to_dict() for s in reader.poll()][-MAX_STEPS:]


async def migration_progress_method(history: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The admin method: ``{"agent": DID, "since_ns": int}`` → ``{"agent", "steps": […]}``."""
    from igor_p2p.node.admin_methods import BadParams

    agent = params.get("agent")
    since = params.get("since_ns", 0)
    if not isinstance(agent, str) or not agent:
        raise BadParams("agent must be a non-empty string")
    if not isinstance(since, int) or since < 0:
        raise BadParams("since_ns must be a non-negative integer")
    return {"agent": agent, "steps": migration_progress(history, agent, since)}


__all__ = [
    "PHASES",
    "HandoffProgress",
    "HandoffStep",
    "migration_progress",
    "migration_progress_method",
]
