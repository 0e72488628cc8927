"""The node's append-only event history (format: docs/history.md), read by the checker."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from igor_p2p.runtime.clock import NodeClock

_encode = json.JSONEncoder(separators=(",", ":")).encode


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "value") and not isinstance(value, (int, str)):
        return value.value
    return value


class HistoryWriter:
    """Appends one JSON object per line and flushes it; safe to call from worker threads.

    :meth:`emit` writes and flushes one event. :meth:`batch` collects events (each stamped when
    it is emitted) and writes them with one flush, in emit order, when the batch is flushed.
    """

    def __init__(self, path: Path | None, *, node: str, peer_id: str, clock: NodeClock) -> None:
        self._path = path
        self._node = node
        self._peer_id = peer_id
        self._clock = clock
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8") if path is not None else None

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def _line(self, type_: str, fields: dict[str, Any]) -> str:
        event = {
            "type": type_,
            "node": self._node,
            "peer_id": self._peer_id,
            "mono_ns": self._clock.mono_ns(),
            "wall_ns": self._clock.wall_ns(),
        }
        for key, value in fields.items():
            event[key] = value if type(value) in (int, str) else _jsonable(value)
        return _encode(event) + "\n"

    def _write(self, text: str) -> None:
        with self._lock:
            if self._file is not None:
                self._file.write(text)
                self._file.flush()

    def emit(self, type_: str, **fields: Any) -> None:
        if self._file is None:
            return
        self._write(self._line(type_, fields))

    def batch(self) -> HistoryBatch:
        """A buffer of events written together by :meth:`HistoryBatch.flush`."""
        return HistoryBatch(self)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class HistoryBatch:
    """Events of one scheduler batch: stamped at :meth:`emit`, written at :meth:`flush`."""

    __slots__ = ("_lines", "_writer")

    def __init__(self, writer: HistoryWriter) -> None:
        self._writer = writer
        self._lines: list[str] = []

    def emit(self, type_: str, **fields: Any) -> None:
        if self._writer.enabled:
            self._lines.append(self._writer._line(type_, fields))

    def flush(self) -> None:
        """Write the collected events (one write, one flush) and start empty again."""
        if self._lines:
            text = "".join(self._lines)
            self._lines = []
            self._writer._write(text)
