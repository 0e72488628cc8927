"""The retention policy: how many per-tick checkpoints of an agent the store keeps.

By default an agent's lineage keeps its custody (genesis, custody records, certificates), the
last checkpoint of each epoch (and every HANDOFF/FINAL checkpoint) and its last
:attr:`Retention.keep_last` checkpoints; every older TICK checkpoint is dropped by
:class:`~igor_p2p.store.ops.CompactLineage`, in small transactions, so ticking never pauses.
What is dropped rests on the signature of the owner's next checkpoint (see
``verify_lineage(..., ordered=True)``). ``retain_all`` keeps the full archive.
"""

from __future__ import annotations

from dataclasses import dataclass

from igor_p2p.errors import InvalidInput

DEFAULT_KEEP_LAST = 16
MAX_KEEP_LAST = 1 << 31
COMPACTION_BATCH = 256
"""Most rows one compaction transaction drops (a tick waits at most for one such batch)."""


class InvalidRetention(InvalidInput):
    """A retention policy that cannot be applied (e.g. keeping fewer than one checkpoint)."""


@dataclass(frozen=True)
class Retention:
    keep_last: int = DEFAULT_KEEP_LAST
    """How many of the agent's last checkpoints are always kept (at least 1)."""
    retain_all: bool = False
    """Keep every checkpoint (full archive): compaction drops nothing."""

    def __post_init__(self) -> None:
        if type(self.keep_last) is not int or not 1 <= self.keep_last <= MAX_KEEP_LAST:
            raise InvalidRetention(
                f"keep at least the last checkpoint (asked to keep {self.keep_last!r})"
            )


RETAIN_ALL = Retention(retain_all=True)


def parse_retention(text: str) -> Retention:
    """``all`` (the full archive) or how many of the last checkpoints to keep (≥ 1)."""
    words = text.strip().lower()
    if words == "all":
        return RETAIN_ALL
    if not words.isdigit():
        raise InvalidRetention(
            f"retain: want a number of checkpoints (at least 1) or 'all', got {text!r}"
        )
    return Retention(keep_last=int(words))
