"""The node's append-only event history (format: docs/history.md), read by the checker."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, TextIO

from igor_p2p.runtime.clock import NodeClock

_encode = json.JSONEncoder(separators=(",", ":")).encode
log = logging.getLogger(__name__)

HISTORY_FILE_MODE = 0o600


def _open_private(path: Path) -> TextIO:
    """Open ``path`` for appending; a new file is created with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, HISTORY_FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")


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
        self._file = _open_private(path) if path is not None else None
        self.write_errors = 0
        """Writes that failed (a full disk): the events are lost, the node keeps running."""

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
            if self._file is None:
                return
            try:
                self._file.write(text)
                self._file.flush()
            except OSError as exc:
                # ENOSPC/EDQUOT/EIO: losing history lines must not take the node down.
                self.write_errors += 1
                if self.write_errors == 1 or self.write_errors % 1000 == 0:
                    log.error("history write failed (%d so far): %s", self.write_errors, exc)

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
