"""Structured logging: every record can carry node, peer, agent, epoch and step.

Use :func:`get_logger` and pass fields as keyword arguments to :meth:`FieldLogger.info` etc.
The JSON format writes one object per line; the console format appends ``key=value`` pairs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

LogFormat = Literal["json", "console"]

CONTEXT_FIELDS = ("node", "peer", "agent", "epoch", "step")
"""Fields every record may carry; ``node`` is usually set once per process by :func:`bind`."""

_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "igor_log_fields", default=None
)


def bind(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Attach fields (e.g. ``node="n1"``) to every record logged in this context."""
    merged = dict(_bound.get() or {})
    merged.update({k: v for k, v in fields.items() if v is not None})
    return _bound.set(merged)


class FieldLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose keyword arguments become structured fields."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        fields = dict(_bound.get() or {})
        extra_fields = kwargs.pop("fields", None) or {}
        for key in list(kwargs):
            if key not in ("exc_info", "stack_info", "stacklevel", "extra"):
                fields[key] = kwargs.pop(key)
        fields.update(extra_fields)
        kwargs["extra"] = {"igor_fields": fields}
        return msg, kwargs


def get_logger(name: str) -> FieldLogger:
    return FieldLogger(logging.getLogger(name), {})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, "igor_fields", None) or {})


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        obj.update({k: _jsonable(v) for k, v in _fields(record).items()})
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{k}={_jsonable(v)}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname[0]} {record.name}: {record.getMessage()}"
        if fields:
            line = f"{line}  {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(
    fmt: LogFormat = "console", level: int | str = logging.INFO, stream: Any = None
) -> logging.Handler:
    """Install one handler on the ``igor_p2p`` logger (idempotent) and return it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger("igor_p2p")
    for old in list(root.handlers):
        if getattr(old, "_igor_handler", False):
            root.removeHandler(old)
    handler._igor_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler


class LogThrottle:
    """Lets one record per key (e.g. per peer) through per ``interval_s``; counts the rest.

    A peer that sends malformed bytes in a loop must not turn each of them into a log record
    (log amplification). :meth:`admit` answers whether to log now and how many records of that
    key were suppressed since the last one that got through (to say so in the record). State is
    bounded: at most ``max_keys`` keys are remembered (least recently used evicted).
    """

    def __init__(
        self,
        interval_s: float = 60.0,
        *,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from igor_p2p.bounded import BoundedLRU

        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._clock = clock
        self._last: BoundedLRU[str, tuple[float, int]] = BoundedLRU(max_keys)
        self.suppressed_total = 0

    def admit(self, key: str) -> tuple[bool, int]:
        """``(log_it, suppressed_since_last)`` for one record about ``key``."""
        now = self._clock()
        last = self._last.get(key)
        if last is None or now - last[0] >= self.interval_s:
            self._last[key] = (now, 0)
            return True, 0 if last is None else last[1]
        self._last[key] = (last[0], last[1] + 1)
        self.suppressed_total += 1
        return False, 0
