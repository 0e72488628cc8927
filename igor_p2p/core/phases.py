"""When each step of this node's recent handoffs happened (for the bench and for debugging).

Recording only: nothing reads a trace to decide anything. Times are the node's ``Env.now()``
(trio's clock on a node, virtual time in the simulator), so steps of a source and a target in
one process compare directly. Bounded: the last :data:`KEEP` migrations.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

KEEP = 256
"""Migrations whose steps a trace keeps."""


class PhaseTrace:
    def __init__(self, now: Callable[[], float], keep: int = KEEP) -> None:
        self._now = now
        self._keep = keep
        self._steps: OrderedDict[bytes, dict[str, float]] = OrderedDict()

    def mark(self, migration_id: bytes, step: str) -> None:
        """Note that ``step`` of ``migration_id`` happened now (the first time counts)."""
        steps = self._steps.get(migration_id)
        if steps is None:
            steps = self._steps[migration_id] = {}
            while len(self._steps) > self._keep:
                self._steps.popitem(last=False)
        steps.setdefault(step, self._now())

    def steps(self, migration_id: bytes) -> dict[str, float]:
        return dict(self._steps.get(migration_id, {}))

    def migrations(self) -> list[bytes]:
        return list(self._steps)
