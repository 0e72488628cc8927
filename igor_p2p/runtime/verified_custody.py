"""What this process has verified of each agent's chain of custody (bounded, in memory).

Loading an agent checks its custody from the genesis (:func:`~igor_p2p.runtime.loader.
verify_for_load`): every signature and certificate, about 0.1 ms an epoch. Done at every load,
that grows with the agent's age in hops: an agent that wanders back to a node paid again for
every epoch it ever had, on the handoff's critical path.

This keeps, per agent, the last epoch start a load in this process verified. A later load whose
stored custody holds that same start (field for field: record, certificate, owner, witnesses)
verifies only the links after it. Nothing persists: a restarted process has no marks, so its
first load of each agent verifies the whole chain from the genesis again (a store changed on
disk while the node was down is still caught).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from igor_p2p.authority.custody import EpochStart

MAX_MARKED_AGENTS = 4096
"""Agents remembered (least recently used forgotten first: they verify in full again)."""


class VerifiedCustody:
    """Per agent: the last custody start this process verified from the genesis."""

    def __init__(self, capacity: int = MAX_MARKED_AGENTS) -> None:
        self.capacity = capacity
        self._marks: OrderedDict[str, EpochStart] = OrderedDict()

    def __len__(self) -> int:
        return len(self._marks)

    def verified_prefix(self, agent: str, custody: Sequence[EpochStart]) -> int:
        """How many of ``custody``'s first starts were verified here (0: verify them all)."""
        mark = self._marks.get(agent)
        if mark is None or not 1 <= mark.epoch <= len(custody):
            return 0
        if custody[mark.epoch - 1] != mark:
            return 0
        self._marks.move_to_end(agent)
        return mark.epoch

    def remember(self, start: EpochStart) -> None:
        """``start`` and every start before it verified (the caller checked them all)."""
        self._marks[start.agent] = start
        self._marks.move_to_end(start.agent)
        while len(self._marks) > self.capacity:
            self._marks.popitem(last=False)
