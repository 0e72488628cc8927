"""Which nodes witness an agent's next epoch (pure policy).

The owner of an epoch names the next epoch's witness set in the record that starts it. The set
must let every likely proposer reach a quorum (its own vote does not count when k = 3), stay stable
(every change needs a joint quorum of old and new), and keep the new owner out when there are
enough nodes, so that a restored owner never votes for itself (witness-notes §5.5, §5.7):

- one node: no witnesses (the agent has no protection against a restored disk; status says so);
- two or three nodes: every node;
- four or more: three nodes, keeping the previous members unless they are known to be down
  (a node that just restarted has not heard its peers yet: it keeps the set), without the new
  owner, topped up in a seeded random order, avoiding the node making the claim where possible
  (its own vote does not count, so with it inside every other member would be needed), and
  nodes that lately refused a new agent because their witness quota is full.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

DEFAULT_WITNESSES = 3


def choose_witnesses(
    *,
    previous: Iterable[bytes],
    new_owner: bytes,
    candidates: Iterable[bytes],
    rng: random.Random,
    k: int = DEFAULT_WITNESSES,
    proposer: bytes | None = None,
    down: Iterable[bytes] = (),
    avoid: Iterable[bytes] = (),
) -> tuple[bytes, ...]:
    """The witness set for the epoch ``new_owner`` is about to own (sorted node keys).

    ``avoid``: nodes that lately refused a new agent as full; they join a set only when too few
    other nodes are up (members of the previous set are kept all the same)."""
    gone = set(down)
    kept = {w for w in previous if w not in gone}
    pool = sorted(set(candidates) | kept | {new_owner} | ({proposer} if proposer else set()))
    if len(pool) == 1:
        return ()
    if len(pool) <= k:
        return tuple(pool)
    others = [w for w in pool if w not in (new_owner, proposer)]
    keep = [w for w in sorted(kept) if w in others][:k]
    spare = [w for w in others if w not in keep]
    rng.shuffle(spare)
    shunned = set(avoid)
    spare.sort(key=lambda w: w in shunned)  # stable: the shuffled order within each group
    chosen = keep + spare[: k - len(keep)]
    if len(chosen) < k and proposer is not None and proposer != new_owner:
        chosen.append(proposer)
    return tuple(sorted(chosen))
