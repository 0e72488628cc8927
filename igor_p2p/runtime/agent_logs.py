"""A bounded in-memory record of what agents print: ``log_emit`` and WASI stdout/stderr.

One :class:`AgentLogBook` per node (``NodeServices.agent_logs``). Each agent that prints gets a
ring of its most recent lines, bounded in lines and characters; at most ``max_agents`` rings are
kept (the one written longest ago is dropped first). Every line gets a sequence number that
only grows, across the whole book, so a reader can ask for "the lines after N"
(``igor agent logs --follow``) and learn when lines it never saw were dropped.

Appends come from sandbox worker threads; the book is thread-safe. Subscribers (``igor agent
run`` printing lines as they come) are called in the appending thread, outside the lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_BYTES = 4096
"""Longer lines are cut to this many bytes (UTF-8) before they are kept."""
MAX_READ_LINES = 1000
"""At most this many lines per :meth:`AgentLogBook.read`."""


@dataclass(frozen=True, slots=True)
class AgentLogLine:
    agent: str
    seq: int
    wall_ns: int
    stream: str
    """``log`` (``log_emit``), ``stdout`` or ``stderr`` (WASI fd 1 and 2)."""
    text: str

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "seq": self.seq,
            "wall_ns": self.wall_ns,
            "stream": self.stream,
            "text": self.text,
        }


@dataclass(frozen=True)
class LogPage:
    lines: list[AgentLogLine]
    next_after: int
    """Pass this as ``after`` to get the lines that follow."""
    dropped: bool
    """Lines after the requested ``after`` were dropped from the ring before this read."""


@dataclass
class _Ring:
    lines: deque[AgentLogLine] = field(default_factory=deque)
    size: int = 0
    last_dropped_seq: int = 0


Subscriber = Callable[[AgentLogLine], None]


class AgentLogBook:
    def __init__(
        self,
        *,
        lines_per_agent: int = 500,
        chars_per_agent: int = 64 * 1024,
        max_agents: int = 512,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.lines_per_agent = lines_per_agent
        self.chars_per_agent = chars_per_agent
        self.max_agents = max_agents
        self._clock = clock
        self._rings: OrderedDict[str, _Ring] = OrderedDict()
        self._seq = 0
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def append(self, agent: str, stream: str, message: bytes) -> AgentLogLine:
        text = message[:MAX_LINE_BYTES].decode("utf-8", errors="replace")
        with self._lock:
            self._seq += 1
            line = AgentLogLine(agent, self._seq, self._clock(), stream, text)
            ring = self._rings.get(agent)
            if ring is None:
                ring = self._rings[agent] = _Ring()
                while len(self._rings) > self.max_agents:
                    self._rings.popitem(last=False)
            else:
                self._rings.move_to_end(agent)
            ring.lines.append(line)
            ring.size += len(text)
            while ring.lines and (
                len(ring.lines) > self.lines_per_agent or ring.size > self.chars_per_agent
            ):
                old = ring.lines.popleft()
                ring.size -= len(old.text)
                ring.last_dropped_seq = old.seq
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber(line)
        return line

    def read(self, agent: str, after: int = 0, limit: int = MAX_READ_LINES) -> LogPage:
        """The agent's kept lines with ``seq > after`` (at most ``limit``), oldest first."""
        limit = max(1, min(limit, MAX_READ_LINES))
        with self._lock:
            ring = self._rings.get(agent)
            if ring is None:
                return LogPage([], max(after, 0), dropped=False)
            lines = [line for line in ring.lines if line.seq > after][:limit]
            dropped = ring.last_dropped_seq > after
        next_after = lines[-1].seq if lines else max(after, 0)
        return LogPage(lines, next_after, dropped)

    def agents(self) -> list[str]:
        with self._lock:
            return list(self._rings)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` for every line appended from now on; returns the unsubscriber."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe
