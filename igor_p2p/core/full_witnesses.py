"""Witnesses that turned a new agent away because their witness quota is full (bounded).

A node keeps custody for at most ``witness_max_agents`` agents (``core/witness_service.py``);
asked to witness one more, it answers ``REFUSED BUSY`` and writes nothing. A claim counts that
as a refusal. This remembers such nodes for a while, so that the witness sets this node proposes
next (a launch, a handoff's record, a resume) leave them out where others can serve: an agent
whose witnesses are full cannot move. Members that already witness an agent are kept whatever
this says: a full node still serves the agents it witnesses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

FULL_FOR_S = 300.0
"""How long a BUSY refusal keeps a node out of new witness sets."""
MAX_REMEMBERED = 1024
"""Nodes remembered at once (the oldest refusal is forgotten first)."""


class FullWitnesses:
    """Node keys that refused a new agent as full, each until a moment."""

    def __init__(self, full_for_s: float = FULL_FOR_S, capacity: int = MAX_REMEMBERED) -> None:
        self.full_for_s = full_for_s
        self.capacity = capacity
        self._until: OrderedDict[bytes, float] = OrderedDict()

    def note(self, nodes: Iterable[bytes], now: float) -> None:
        """``nodes`` refused a new agent as full at ``now``."""
        for node in nodes:
            self._until[node] = now + self.full_for_s
            self._until.move_to_end(node)
        while len(self._until) > self.capacity:
            self._until.popitem(last=False)

    def current(self, now: float) -> frozenset[bytes]:
        """The nodes to leave out of new witness sets at ``now``."""
        for node in [n for n, until in self._until.items() if until <= now]:
            del self._until[node]
        return frozenset(self._until)
