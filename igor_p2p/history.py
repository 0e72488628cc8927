"""The node's append-only event history (format: docs/history.md), read by the checker."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from igor_p2p.runtime.clock import NodeClock


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "value") and not isinstance(value, (int, str)):
        return value.value
    return value


class HistoryWriter:
    """Appends one JSON object per line and flushes it; safe to call from worker threads."""

    def __init__(self, path: Path | None, *, node: str, peer_id: str, clock: NodeClock) -> None:
        self._path = path
        self._node = node
        self._peer_id = peer_id
        self._clock = clock
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8") if path is not None else None

    def emit(self, type_: str, **fields: Any) -> None:
        if self._file is None:
            return
        event = {
            "type": type_,
            "node": self._node,
            "peer_id": self._peer_id,
            "mono_ns": self._clock.mono_ns(),
            "wall_ns": self._clock.wall_ns(),
        }
        event.update({k: _jsonable(v) for k, v in fields.items()})
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
