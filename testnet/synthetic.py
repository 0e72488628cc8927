"""Synthetic histories of a correct single-owner schedule, for the benchmark and the tests.

Each agent starts on one node, ticks, commits a checkpoint every ``checkpoint_every`` ticks,
and at the end of each epoch hands off to another node: a HANDOFF checkpoint and a ``retired``
step on the source, then a ``committed`` step and ACTIVE_OWNER on the target at epoch + 1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from testnet.history import (
    GENESIS_PREV,
    AnyEvent,
    AuthorityEvent,
    CommitEvent,
    HandoffEvent,
    TickEvent,
)


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    nodes: Sequence[str] = ("n1", "n2", "n3", "n4", "n5")
    agents: int = 3
    ticks_per_epoch: Sequence[int] = (5, 5, 5)
    """Ticks in each epoch; its length is the number of epochs."""
    checkpoint_every: int = 1
    tick_ns: int = 1_000_000
    gap_ns: int = 200_000
    handoff_ns: int = 50_000
    budget: int = 10_000_000
    start_ns: int = 1_000_000_000
    seed: int = 0


def synthetic_digest(agent_index: int, n: int) -> str:
    return f"{agent_index + 1:08x}{n:056x}"


@dataclass
class _AgentRun:
    spec: SyntheticSpec
    index: int
    rng: random.Random
    out: dict[str, list[AnyEvent]]
    now: int = 0
    budget: int = 0
    tick: int = 0
    seq: int = 0
    prev: str = GENESIS_PREV
    node: str = ""
    digests: list[str] = field(default_factory=list)

    @property
    def agent(self) -> str:
        return f"a{self.index + 1}"

    def common(self, node: str) -> dict[str, object]:
        return {"node": node, "peer_id": f"peer-{node}", "mono_ns": self.now, "wall_ns": self.now}

    def commit(self, epoch: int, kind: str) -> None:
        self.seq += 1
        digest = synthetic_digest(self.index, self.seq)
        self.out[self.node].append(
            CommitEvent(
                **self.common(self.node),  # type: ignore[arg-type]
                agent=self.agent,
                epoch=epoch,
                tick=self.tick,
                kind=kind,
                digest=digest,
                prev=self.prev,
                budget=self.budget,
            )
        )
        self.prev = digest
        self.digests.append(digest)

    def authority(self, node: str, epoch: int, frm: str | None, to: str) -> None:
        self.out[node].append(
            AuthorityEvent(
                **self.common(node),  # type: ignore[arg-type]
                agent=self.agent,
                epoch=epoch,
                from_state=frm,
                to_state=to,
                reason=None,
            )
        )

    def handoff(self, node: str, epoch: int, mig: str, step: str, peer: str) -> None:
        self.out[node].append(
            HandoffEvent(
                **self.common(node),  # type: ignore[arg-type]
                agent=self.agent,
                epoch=epoch,
                migration_id=mig,
                step=step,
                peer=peer,
                detail=None,
            )
        )

    def run(self) -> None:
        spec = self.spec
        nodes = list(spec.nodes)
        self.now = spec.start_ns + self.index * 37
        self.budget = spec.budget
        self.node = nodes[self.index % len(nodes)]
        self.commit(1, "GENESIS")
        self.authority(self.node, 1, None, "ACTIVE_OWNER")
        for ei, count in enumerate(spec.ticks_per_epoch):
            epoch = ei + 1
            for k in range(count):
                start = self.now + spec.gap_ns
                self.now = start + spec.tick_ns
                self.tick += 1
                cost = min(self.budget, self.rng.randint(1, 1000))
                self.budget -= cost
                self.out[self.node].append(
                    TickEvent(
                        **self.common(self.node),  # type: ignore[arg-type]
                        agent=self.agent,
                        epoch=epoch,
                        tick=self.tick,
                        start_ns=start,
                        end_ns=self.now,
                        fuel=cost * 10,
                        cost=cost,
                    )
                )
                if (k + 1) % spec.checkpoint_every == 0 or k == count - 1:
                    self.now += 1000
                    self.commit(epoch, "TICK")
            if ei == len(spec.ticks_per_epoch) - 1 or len(nodes) < 2:
                break
            i = nodes.index(self.node)
            target = nodes[(i + 1 + self.rng.randrange(len(nodes) - 1)) % len(nodes)]
            mig = f"{self.agent}-m{epoch}"
            self.now += 1000
            self.commit(epoch, "HANDOFF")
            self.handoff(self.node, epoch, mig, "transferred", target)
            self.authority(self.node, epoch, "ACTIVE_OWNER", "RETIRED")
            self.now += spec.handoff_ns
            self.handoff(target, epoch + 1, mig, "committed", self.node)
            self.authority(target, epoch + 1, "HANDOFF_PENDING", "ACTIVE_OWNER")
            self.node = target


def synthesize(spec: SyntheticSpec) -> dict[str, list[AnyEvent]]:
    """Events per node (each list in time order) for a correct schedule."""
    rng = random.Random(spec.seed)
    out: dict[str, list[AnyEvent]] = {n: [] for n in spec.nodes}
    for i in range(spec.agents):
        _AgentRun(spec, i, rng, out).run()
    for events in out.values():
        events.sort(key=lambda e: e.mono_ns)
    return out


__all__ = ["SyntheticSpec", "synthesize", "synthetic_digest"]
