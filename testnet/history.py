"""Read the nodes' event histories (``history.jsonl``, see docs/history.md) into typed events.

Each line is one JSON object. A torn last line (a crash in the middle of an append) is
ignored; any other malformed line is a :class:`HistoryError` that names the file and line.
Events whose ``type`` this reader does not know are skipped and counted, so a node may add
event types without breaking old checkers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from igor_p2p.errors import InvalidInput

JsonValue = str | int | float | bool | None | list[Any] | dict[str, Any]

GENESIS_PREV = "00" * 32
"""The ``prev`` of a genesis entry: 32 zero bytes, hex."""

CHECKPOINT_KINDS = frozenset({"GENESIS", "TICK", "HANDOFF", "FINAL", "IMPORT"})
CUSTODY_KINDS = frozenset({"TRANSFER", "FORCED", "CERT", "EXPORT"})
"""Kinds of lineage entries that are custody records, not checkpoints."""
OWNER_KINDS = frozenset({"EFFECT", "INPUTS"})
"""Entries the owner of an epoch appends between its checkpoints: effect records (an http
request's or payment's INTENT and OUTCOME) and tick-input records."""


class HistoryError(InvalidInput):
    """A history file is malformed somewhere other than its torn last line."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        super().__init__(f"{file}:{line}: {problem}")
        self.file = file
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields common to every event."""

    node: str
    peer_id: str
    mono_ns: int
    wall_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TickEvent(Event):
    """One completed tick; the interval ``[start_ns, end_ns]`` is monotonic time."""

    agent: str
    epoch: int
    tick: int
    start_ns: int
    end_ns: int
    fuel: int
    cost: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitEvent(Event):
    """A lineage entry was durably committed on ``node``; byte fields are lowercase hex."""

    agent: str
    epoch: int
    tick: int
    kind: str
    digest: str
    prev: str
    budget: int
    charge: int | None = None
    """An ``EFFECT`` entry: what it adds to what the agent was charged (an INTENT its reserve,
    an OUTCOME its cost minus that reserve); a ``FINAL`` checkpoint at the committed head's
    tick: what the failing tick (and any ticks rolled back with it) cost; None otherwise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorityEvent(Event):
    """A durable authority transition on ``node``."""

    agent: str
    epoch: int
    from_state: str | None
    to_state: str
    reason: str | None
    recovery: str | None = None
    """For RECOVERY_REQUIRED: why, as a ``RecoveryReason`` value (e.g. ``UNEXPECTED_ERROR``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffEvent(Event):
    """One step of the migrate or recover protocol."""

    agent: str
    epoch: int
    migration_id: str | None
    step: str
    peer: str | None
    detail: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultEvent(Event):
    """A fault was applied or removed on ``node``."""

    fault: str
    detail: JsonValue


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEvent(Event):
    """Node lifecycle: ``event`` is ``start`` or ``stop``."""

    event: str
    detail: JsonValue


AnyEvent = TickEvent | CommitEvent | AuthorityEvent | HandoffEvent | FaultEvent | NodeEvent
E = TypeVar("E", bound=Event)

_COMMON: dict[str, tuple[type, ...]] = {
    "node": (str,),
    "peer_id": (str,),
    "mono_ns": (int,),
    "wall_ns": (int,),
}
# field -> accepted JSON types; "hex" fields are strings of hex digits, normalised to lowercase
_SCHEMAS: dict[str, tuple[type[Event], dict[str, tuple[Any, ...]]]] = {
    "tick": (
        TickEvent,
        {
            "agent": (str,),
            "epoch": (int,),
            "tick": (int,),
            "start_ns": (int,),
            "end_ns": (int,),
            "fuel": (int,),
            "cost": (int,),
        },
    ),
    "commit": (
        CommitEvent,
        {
            "agent": (str,),
            "epoch": (int,),
            "tick": (int,),
            "kind": (str,),
            "digest": ("hex",),
            "prev": ("hex",),
            "budget": (int,),
            "charge": (int, None),
        },
    ),
    "authority": (
        AuthorityEvent,
        {
            "agent": (str,),
            "epoch": (int,),
            "from_state": (str, None),
            "to_state": (str,),
            "reason": (str, None),
            "recovery": (str, None),
        },
    ),
    "handoff": (
        HandoffEvent,
        {
            "agent": (str,),
            "epoch": (int,),
            "migration_id": (str, None),
            "step": (str,),
            "peer": (str, None),
            "detail": ("json",),
        },
    ),
    "fault": (FaultEvent, {"fault": (str,), "detail": ("json",)}),
    "node": (NodeEvent, {"event": (str,), "detail": ("json",)}),
}
_OPTIONAL = frozenset(
    {"reason", "recovery", "from_state", "detail", "peer", "migration_id", "charge"}
)
_HEX = frozenset("0123456789abcdef")


def _field_value(obj: Mapping[str, Any], name: str, accepted: tuple[Any, ...]) -> Any:
    if name not in obj:
        if name in _OPTIONAL:
            return None
        raise ValueError(f"missing field {name!r}")
    value = obj[name]
    for kind in accepted:
        if kind == "json":
            return value
        if kind is None and value is None:
            return None
        if kind == "hex" and isinstance(value, str):
            lowered = value.lower()
            if len(lowered) % 2 or not set(lowered) <= _HEX:
                raise ValueError(f"field {name!r} is not hex")
            return lowered
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str):
            return value
    raise ValueError(f"field {name!r} has the wrong type ({type(value).__name__})")


def parse_event(obj: object) -> AnyEvent | None:
    """Turn one decoded JSON line into a typed event; ``None`` for an unknown ``type``.

    Raises ``ValueError`` (turned into :class:`HistoryError` by the readers) on a missing or
    ill-typed field.
    """
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ValueError("missing field 'type'")
    schema = _SCHEMAS.get(kind)
    if schema is None:
        return None
    cls, fields = schema
    values = {name: _field_value(obj, name, accepted) for name, accepted in _COMMON.items()}
    values.update({name: _field_value(obj, name, accepted) for name, accepted in fields.items()})
    return cls(**values)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class NodeHistory:
    """The events of one node's history file, in file order."""

    node: str
    path: Path | None
    events: tuple[AnyEvent, ...]
    torn_tail: bool = False
    """True when the last line was incomplete and ignored."""
    unknown_events: int = 0
    """Lines with a ``type`` this reader does not know (skipped)."""


def parse_history_lines(
    lines: Sequence[bytes], *, file: str, node: str | None = None
) -> NodeHistory:
    """Parse the raw lines of one history file (without their newlines)."""
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    events: list[AnyEvent] = []
    torn = False
    unknown = 0
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            event = parse_event(json.loads(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            if index == last:
                torn = True
                continue
            raise HistoryError(file, index + 1, str(exc)) from None
        if event is None:
            unknown += 1
        else:
            events.append(event)
    name = node or (events[0].node if events else Path(file).parent.name or file)
    path = None if file == "<memory>" else Path(file)
    return NodeHistory(name, path, tuple(events), torn, unknown)


def read_history(path: str | Path, *, node: str | None = None) -> NodeHistory:
    """Read one ``history.jsonl``. The node's name is ``node``, else the first event's
    ``node`` field, else the name of the file's directory."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise HistoryError(str(p), 0, f"cannot read: {exc.strerror}") from None
    return parse_history_lines(data.split(b"\n"), file=str(p), node=node)


NEMESIS_LOG = "nemesis.jsonl"
"""The harness's own fault log at a testnet directory's top (same schema as a history)."""


def read_histories(where: str | Path | Iterable[str | Path]) -> list[NodeHistory]:
    """Read several histories: a directory (every ``*/history.jsonl`` and ``history.jsonl``
    below it, sorted, then its ``nemesis.jsonl`` if any) or an iterable of file paths.

    The nemesis log holds events the nodes cannot write themselves (``kill``/``restart``,
    ``pause``/``unpause``); its events carry the names of the nodes they hit, so after
    :func:`merge` they sit on those nodes' lanes. Its :class:`NodeHistory` is named
    ``nemesis``."""
    if isinstance(where, str | Path):
        root = Path(where)
        if not root.is_dir():
            return [read_history(root)]
        paths: Iterable[str | Path] = sorted(root.rglob("history.jsonl"))
        out = [read_history(p) for p in paths]
        if (root / NEMESIS_LOG).exists():
            out.append(read_history(root / NEMESIS_LOG, node="nemesis"))
        return out
    return [read_history(p) for p in where]


def fault_closer(fault: str) -> str | None:
    """The fault name that ends a window opened by ``fault`` (``None``: it ends nothing).

    ``partition`` is ended by ``heal``; ``drop``/``dup``/``delay``/``reorder``/``faults`` by
    ``clear_faults``; ``pause`` by ``unpause``; ``skew`` by ``unskew``; ``kill`` by
    ``restart`` (``pause`` and ``kill`` come from the harness's nemesis log). A fault event
    with the same name and ``detail`` in ``removed``/``off``/``cleared`` also ends the window.
    """
    return _CLOSERS.get(fault, None if fault in _CLOSING else "clear_faults")


_CLOSERS = {"partition": "heal", "pause": "unpause", "skew": "unskew", "kill": "restart"}
_CLOSING = frozenset({"heal", "clear_faults", "unpause", "unskew", "restart"})
_REMOVED_DETAILS = frozenset({"removed", "off", "cleared"})
INSTANT_FAULTS = frozenset(
    {
        "block",
        "unblock",
        "closed_connection",
        "refused_dial",
        "refused_connection",
        "reset_stream",
        "reorder_flush",
        "reorder_lost",
        "clock_offset",
    }
)
"""Occurrences a node's fault gate records as they happen (``igor_p2p.net.faults.FAULT_KINDS``:
a connection refused, a peer unblocked by a heal, the clock offset set by a skew). They are
effects of a window opened by ``partition``/``skew``, not windows of their own."""


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A fault active on one node from ``start_ns`` to ``end_ns`` (``None``: never ended)."""

    node: str
    fault: str
    start_ns: int
    end_ns: int | None
    detail: JsonValue


@dataclass(frozen=True)
class Histories:
    """All nodes' events merged into one sequence ordered by monotonic time."""

    events: tuple[AnyEvent, ...]
    nodes: tuple[str, ...]
    torn_nodes: tuple[str, ...] = ()

    def of_type(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    @cached_property
    def ticks(self) -> list[TickEvent]:
        return self.of_type(TickEvent)

    @cached_property
    def commits(self) -> list[CommitEvent]:
        return self.of_type(CommitEvent)

    @cached_property
    def authority(self) -> list[AuthorityEvent]:
        return self.of_type(AuthorityEvent)

    @cached_property
    def handoffs(self) -> list[HandoffEvent]:
        return self.of_type(HandoffEvent)

    @cached_property
    def faults(self) -> list[FaultEvent]:
        return self.of_type(FaultEvent)

    @cached_property
    def node_events(self) -> list[NodeEvent]:
        return self.of_type(NodeEvent)

    @cached_property
    def agents(self) -> tuple[str, ...]:
        return tuple(
            sorted(
                {
                    e.agent
                    for e in self.events
                    if isinstance(e, TickEvent | CommitEvent | AuthorityEvent | HandoffEvent)
                }
            )
        )

    @property
    def start_ns(self) -> int:
        return min((_event_start(e) for e in self.events), default=0)

    @property
    def end_ns(self) -> int:
        return max((_event_end(e) for e in self.events), default=0)

    @cached_property
    def fault_windows(self) -> tuple[FaultWindow, ...]:
        """Fault windows per node, in order of start (see :func:`fault_closer`)."""
        open_: dict[tuple[str, str], list[FaultEvent]] = {}
        windows: list[FaultWindow] = []
        for f in self.faults:
            if f.fault in INSTANT_FAULTS:
                continue
            ends_same = isinstance(f.detail, str) and f.detail.lower() in _REMOVED_DETAILS
            if f.fault in _CLOSING or ends_same:
                for (node, fault), starts in list(open_.items()):
                    if node != f.node:
                        continue
                    if (ends_same and fault == f.fault) or (
                        not ends_same and fault_closer(fault) == f.fault
                    ):
                        windows.extend(
                            FaultWindow(node, fault, s.mono_ns, f.mono_ns, s.detail) for s in starts
                        )
                        del open_[(node, fault)]
                continue
            open_.setdefault((f.node, f.fault), []).append(f)
        for (node, fault), starts in open_.items():
            windows.extend(FaultWindow(node, fault, s.mono_ns, None, s.detail) for s in starts)
        return tuple(sorted(windows, key=lambda w: (w.start_ns, w.node, w.fault)))

    @property
    def final_heal_ns(self) -> int | None:
        """When the last fault ended: the latest end of a fault window, or the latest node
        ``start`` after the first fault (a restart). ``None`` if a window never ended; the
        history's start if there were no faults at all."""
        windows = self.fault_windows
        if any(w.end_ns is None for w in windows):
            return None
        if not windows and not self.faults:
            return self.start_ns
        first_fault = min((f.mono_ns for f in self.faults), default=self.start_ns)
        ends = [w.end_ns for w in windows if w.end_ns is not None]
        ends += [f.mono_ns for f in self.faults]
        ends += [
            n.mono_ns for n in self.node_events if n.event == "start" and n.mono_ns >= first_fault
        ]
        return max(ends)


def _event_start(e: AnyEvent) -> int:
    return e.start_ns if isinstance(e, TickEvent) else e.mono_ns


def _event_end(e: AnyEvent) -> int:
    return max(e.end_ns, e.mono_ns) if isinstance(e, TickEvent) else e.mono_ns


def merge(histories: Iterable[NodeHistory | Sequence[AnyEvent]]) -> Histories:
    """Merge per-node histories into one sequence ordered by ``mono_ns`` (ties: node name, then
    each file's order)."""
    keyed: list[tuple[int, str, int, AnyEvent]] = []
    nodes: set[str] = set()
    torn: list[str] = []
    for h in histories:
        events = h.events if isinstance(h, NodeHistory) else tuple(h)
        if isinstance(h, NodeHistory) and (h.path is None or h.path.name != NEMESIS_LOG):
            nodes.add(h.node)
            if h.torn_tail:
                torn.append(h.node)
        for seq, e in enumerate(events):
            nodes.add(e.node)
            keyed.append((e.mono_ns, e.node, seq, e))
    keyed.sort(key=lambda k: k[:3])
    return Histories(tuple(k[3] for k in keyed), tuple(sorted(nodes)), tuple(sorted(torn)))


__all__ = [
    "CHECKPOINT_KINDS",
    "CUSTODY_KINDS",
    "GENESIS_PREV",
    "INSTANT_FAULTS",
    "NEMESIS_LOG",
    "OWNER_KINDS",
    "AnyEvent",
    "AuthorityEvent",
    "CommitEvent",
    "Event",
    "FaultEvent",
    "FaultWindow",
    "HandoffEvent",
    "Histories",
    "HistoryError",
    "NodeEvent",
    "NodeHistory",
    "TickEvent",
    "fault_closer",
    "merge",
    "parse_event",
    "parse_history_lines",
    "read_histories",
    "read_history",
]
