"""The offline checker: verifies the safety and liveness invariants over merged histories and
(optionally) each node's final store.

Each check is one function returning a :class:`CheckOutcome`; each has its own violation type
carrying the evidence (node names, intervals, digests). :func:`check` runs them all.

Definitions used throughout (see docs/testnet.md):

* An *entry* is a lineage entry identified by its digest, known from ``commit`` events and
  store snapshots. Kinds ``TRANSFER`` and ``FORCED`` are *custody records*; every other kind
  is a *checkpoint*. An entry whose ``prev`` is 32 zero bytes (or empty) is a *root*.
* The *checkpoint parent* of a checkpoint is the nearest checkpoint reached by following
  ``prev`` through any custody records.
* The *author* of an entry is the node whose ``commit`` event for that digest has the smallest
  ``mono_ns`` (copies stored later by a handoff target do not make it an author).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from testnet.history import (
    CUSTODY_KINDS,
    GENESIS_PREV,
    OWNER_KINDS,
    CommitEvent,
    Histories,
    TickEvent,
    merge,
)

TERMINAL_STATES = frozenset({"BUDGET_EXHAUSTED", "HALTED"})
OWNING_STATES = frozenset({"ACTIVE_OWNER", "HANDOFF_INITIATED", "HANDOFF_PENDING"})
RECOVERY = "RECOVERY_REQUIRED"
UNEXPECTED_ERROR = "UNEXPECTED_ERROR"
"""The ``recovery`` of an authority event when a node's own code failed (RecoveryReason)."""

# ---------------------------------------------------------------------------------------------
# store snapshots (filled by the harness from each node's SQLite store)


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """One lineage entry as a node's store holds it (byte fields lowercase hex)."""

    digest: str
    prev: str
    epoch: int
    tick: int
    kind: str
    budget: int
    charge: int = 0
    """An EFFECT row: what it adds to the agent's charges (see ``CommitEvent.charge``)."""


@dataclass(frozen=True)
class AgentStore:
    """What one node's store holds for one agent. ``entries`` accepts tuples
    ``(digest, prev, epoch, tick, kind, budget)`` and turns them into :class:`StoreEntry`."""

    entries: tuple[StoreEntry, ...]
    authority_state: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        converted = tuple(e if isinstance(e, StoreEntry) else StoreEntry(*e) for e in self.entries)
        object.__setattr__(self, "entries", converted)


@dataclass(frozen=True)
class StoreSnapshot:
    """One node's store at the end of a run, per agent."""

    node: str
    agents: Mapping[str, AgentStore]


@dataclass(frozen=True, slots=True)
class CheckConfig:
    liveness_bound_s: float = 5.0
    """B: after the final heal, each agent must tick (or be parked) within B seconds."""
    heal_ns: int | None = None
    """Monotonic time of the final heal; ``None``: derived from the history's fault events."""
    check_liveness: bool = True
    max_violations_per_check: int = 1000
    """Evidence beyond this many violations of one check is counted but not kept."""


# ---------------------------------------------------------------------------------------------
# evidence and violations


@dataclass(frozen=True, slots=True)
class TickSpan:
    """One tick interval: evidence for overlaps and ownership."""

    node: str
    epoch: int
    tick: int
    start_ns: int
    end_ns: int

    @classmethod
    def of(cls, t: TickEvent) -> TickSpan:
        return cls(t.node, t.epoch, t.tick, t.start_ns, t.end_ns)


@dataclass(frozen=True, slots=True)
class EntryRef:
    """One lineage entry as evidence: where it was committed and where it is stored."""

    digest: str
    prev: str
    epoch: int
    tick: int
    kind: str
    budget: int
    committed_on: tuple[str, ...]
    stored_on: tuple[str, ...]
    author: str | None


@dataclass(frozen=True)
class Violation:
    """Base of every violation; ``check`` names the check that found it."""

    check: ClassVar[str] = ""
    agent: str

    def summary(self) -> str:
        raise NotImplementedError

    def highlight_spans(self) -> tuple[TickSpan, ...]:
        """Tick intervals the report outlines in red."""
        return ()

    def nodes(self) -> tuple[str, ...]:
        """Nodes named in the evidence."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "type": type(self).__name__,
            "summary": self.summary(),
            **asdict(self),
        }


def _d(digest: str) -> str:
    return digest[:12] if digest else "-"


@dataclass(frozen=True, slots=True)
class OwnershipWindow(TickSpan):
    """One node's run of one epoch: from the start of its first tick (``tick``) to the end of
    its last (``last_tick``), ``ticks`` ticks in all."""

    last_tick: int = 0
    ticks: int = 1


@dataclass(frozen=True)
class OverlapViolation(Violation):
    """(a) The ownership windows of two nodes interleave: both held the agent at once, whether
    their single ticks overlapped or they took turns."""

    check: ClassVar[str] = "overlap"
    first: OwnershipWindow
    second: OwnershipWindow

    @property
    def overlap_ns(self) -> int:
        return min(self.first.end_ns, self.second.end_ns) - self.second.start_ns

    def summary(self) -> str:
        a, b = self.first, self.second
        return (
            f"agent {self.agent}: {a.node} held epoch {a.epoch} over [{a.start_ns}, {a.end_ns}] "
            f"(ticks {a.tick}..{a.last_tick}, {a.ticks} ticks) while {b.node} held epoch "
            f"{b.epoch} over [{b.start_ns}, {b.end_ns}] (ticks {b.tick}..{b.last_tick}, "
            f"{b.ticks} ticks); overlap {self.overlap_ns} ns"
        )

    def highlight_spans(self) -> tuple[TickSpan, ...]:
        return (self.first, self.second)

    def nodes(self) -> tuple[str, ...]:
        return (self.first.node, self.second.node)


@dataclass(frozen=True)
class ForkViolation(Violation):
    """(b) Two different entries share one ``prev``."""

    check: ClassVar[str] = "lineage"
    prev: str
    children: tuple[EntryRef, ...]

    def summary(self) -> str:
        kids = "; ".join(
            f"{_d(c.digest)} ({c.kind} epoch {c.epoch} tick {c.tick} on "
            f"{','.join(sorted({*c.committed_on, *c.stored_on})) or '?'})"
            for c in self.children
        )
        return f"agent {self.agent}: fork after {_d(self.prev)}: {kids}"

    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({n for c in self.children for n in (*c.committed_on, *c.stored_on)}))


@dataclass(frozen=True)
class GapViolation(Violation):
    """(b) An entry's ``prev`` was never committed anywhere."""

    check: ClassVar[str] = "lineage"
    entry: EntryRef
    missing_prev: str

    def summary(self) -> str:
        e = self.entry
        where = ",".join(sorted({*e.committed_on, *e.stored_on}))
        return (
            f"agent {self.agent}: entry {_d(e.digest)} ({e.kind} epoch {e.epoch} tick {e.tick} "
            f"on {where}) links to {_d(self.missing_prev)}, which no node committed"
        )

    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({*self.entry.committed_on, *self.entry.stored_on}))


@dataclass(frozen=True)
class EpochRegressionViolation(Violation):
    """(c) Along the lineage a checkpoint's epoch is lower than its checkpoint parent's (or
    not higher across a custody record)."""

    check: ClassVar[str] = "epochs"
    parent: EntryRef
    child: EntryRef
    across_custody_record: bool

    def summary(self) -> str:
        rel = "not above" if self.across_custody_record else "below"
        return (
            f"agent {self.agent}: entry {_d(self.child.digest)} has epoch {self.child.epoch}, "
            f"{rel} its parent {_d(self.parent.digest)} at epoch {self.parent.epoch}"
        )

    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({n for n in (self.parent.author, self.child.author) if n}))


@dataclass(frozen=True, slots=True)
class OwnerClaim:
    """Evidence that ``node`` acted as the owner of an epoch: a tick or an authored commit."""

    node: str
    what: str  # "tick" or "commit"
    tick: int
    mono_ns: int
    digest: str | None
    span: TickSpan | None


@dataclass(frozen=True)
class EpochOwnerViolation(Violation):
    """(c) Ticks or authored commits of one epoch happened on more than one node."""

    check: ClassVar[str] = "epochs"
    epoch: int
    claims: tuple[OwnerClaim, ...]

    def summary(self) -> str:
        parts = "; ".join(
            f"{c.node} {c.what} tick {c.tick} at {c.mono_ns}"
            + (f" digest {_d(c.digest)}" if c.digest else "")
            for c in self.claims
        )
        return f"agent {self.agent}: epoch {self.epoch} has several owners: {parts}"

    def highlight_spans(self) -> tuple[TickSpan, ...]:
        return tuple(c.span for c in self.claims if c.span is not None)

    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({c.node for c in self.claims}))


@dataclass(frozen=True)
class BudgetViolation(Violation):
    """(d) Along one lineage link the budget rose, or fell by a different amount than the
    recorded costs of the ticks the link commits, or some of those ticks were never recorded."""

    check: ClassVar[str] = "budget"
    reason: str  # "increase" | "cost_mismatch" | "missing_ticks"
    parent: EntryRef
    child: EntryRef
    tick_cost_sum: int
    counted_ticks: tuple[TickSpan, ...]
    missing_ticks: tuple[int, ...]

    def summary(self) -> str:
        p, c = self.parent, self.child
        head = (
            f"agent {self.agent}: {_d(p.digest)} (tick {p.tick}, budget {p.budget}) -> "
            f"{_d(c.digest)} (tick {c.tick}, budget {c.budget})"
        )
        if self.reason == "increase":
            return f"{head}: budget increased by {c.budget - p.budget}"
        if self.reason == "missing_ticks":
            shown = ", ".join(map(str, self.missing_ticks[:10]))
            return f"{head}: no tick event for epoch {c.epoch} tick(s) {shown}"
        return (
            f"{head}: budget fell by {p.budget - c.budget} but the {len(self.counted_ticks)} "
            f"committed ticks cost {self.tick_cost_sum}"
        )

    def highlight_spans(self) -> tuple[TickSpan, ...]:
        return self.counted_ticks if self.reason == "cost_mismatch" else ()

    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({n for n in (self.parent.author, self.child.author) if n}))


@dataclass(frozen=True)
class LostCommitViolation(Violation):
    """(e) A node reported a commit that is neither in its store nor an ancestor of any stored
    entry on any node."""

    check: ClassVar[str] = "durability"
    node: str
    digest: str
    epoch: int
    tick: int
    kind: str
    committed_mono_ns: int

    def summary(self) -> str:
        return (
            f"agent {self.agent}: {self.node} committed {_d(self.digest)} ({self.kind} epoch "
            f"{self.epoch} tick {self.tick}) at {self.committed_mono_ns}; it is in no store and "
            "no stored entry descends from it"
        )

    def nodes(self) -> tuple[str, ...]:
        return (self.node,)


@dataclass(frozen=True)
class UnexpectedErrorViolation(Violation):
    """(g) A node halted the agent because of an unexpected error in its own code (a bug, or
    peer input it did not check): the node survived, but a peer must never be able to cause
    this."""

    check: ClassVar[str] = "robustness"
    node: str
    epoch: int
    mono_ns: int
    reason: str | None

    def summary(self) -> str:
        return (
            f"agent {self.agent}: {self.node} entered RECOVERY_REQUIRED at epoch {self.epoch} "
            f"({self.mono_ns} ns) on an unexpected error: {self.reason or 'no detail'}"
        )

    def nodes(self) -> tuple[str, ...]:
        return (self.node,)


@dataclass(frozen=True, slots=True)
class FinalState:
    node: str
    state: str
    reason: str | None
    source: str  # "store" or "history"


@dataclass(frozen=True)
class LivenessViolation(Violation):
    """(f) After heal + B the agent neither ticks on one node nor is explicitly parked."""

    check: ClassVar[str] = "liveness"
    reason: str  # "no_tick_after_bound" | "multiple_active_owners" | "recovery_without_reason"
    heal_ns: int
    deadline_ns: int
    history_end_ns: int
    last_tick: TickSpan | None
    final_states: tuple[FinalState, ...]

    def summary(self) -> str:
        states = ", ".join(
            f"{s.node}={s.state}" + (f" ({s.reason})" if s.reason else "")
            for s in self.final_states
        )
        last = (
            f"last tick on {self.last_tick.node} ending {self.last_tick.end_ns}"
            if self.last_tick
            else "never ticked"
        )
        return (
            f"agent {self.agent}: {self.reason.replace('_', ' ')}; heal {self.heal_ns}, deadline "
            f"{self.deadline_ns}, history ends {self.history_end_ns}; {last}; final states: "
            f"{states or 'none'}"
        )

    def highlight_spans(self) -> tuple[TickSpan, ...]:
        return (self.last_tick,) if self.last_tick else ()

    def nodes(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.final_states)


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class CheckCount:
    checked: int
    """How many items the check examined (intervals, entries, links, commits, agents)."""
    violations: int
    skipped: bool = False
    note: str = ""


@dataclass
class CheckOutcome:
    name: str
    checked: int = 0
    violations: list[Violation] = field(default_factory=list)
    violation_count: int = 0
    skipped: bool = False
    note: str = ""
    limit: int = 1000

    def add(self, v: Violation) -> None:
        self.violation_count += 1
        if len(self.violations) < self.limit:
            self.violations.append(v)

    def count(self) -> CheckCount:
        return CheckCount(self.checked, self.violation_count, self.skipped, self.note)


CHECK_NAMES = (
    "overlap",
    "lineage",
    "epochs",
    "budget",
    "durability",
    "liveness",
    "robustness",
)
CHECK_TITLES = {
    "overlap": "(a) ownership windows never interleave",
    "lineage": "(b) one linear lineage (no fork, no gap)",
    "epochs": "(c) epochs increase, one owner per epoch",
    "budget": "(d) budget conserved",
    "durability": "(e) no committed checkpoint lost",
    "liveness": "(f) liveness after heal",
    "robustness": "(g) no agent halted by an unexpected error",
}


@dataclass(frozen=True)
class CheckResult:
    violations: tuple[Violation, ...]
    counts: Mapping[str, CheckCount]
    events: int
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return all(c.violations == 0 for c in self.counts.values())

    @property
    def verdict(self) -> str:
        return "PASS" if self.ok else "FAIL"

    def by_check(self, name: str) -> list[Violation]:
        return [v for v in self.violations if v.check == name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "ok": self.ok,
            "events": self.events,
            "elapsed_s": round(self.elapsed_s, 6),
            "counts": {k: asdict(v) for k, v in self.counts.items()},
            "violations": [v.to_dict() for v in self.violations],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_text(self) -> str:
        lines = [f"verdict: {self.verdict} ({self.events} events, {self.elapsed_s * 1000:.1f} ms)"]
        for name in CHECK_NAMES:
            c = self.counts.get(name)
            if c is None:
                continue
            status = "skipped" if c.skipped else ("ok" if c.violations == 0 else "VIOLATED")
            note = f" - {c.note}" if c.note else ""
            lines.append(
                f"  {CHECK_TITLES[name]:<45} {status:<8} checked {c.checked:>6}, "
                f"violations {c.violations}{note}"
            )
        for v in self.violations:
            lines.append(f"  [{v.check}] {v.summary()}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


# ---------------------------------------------------------------------------------------------
# the lineage model shared by checks (b)–(e)


@dataclass(slots=True)
class _Entry:
    digest: str
    prev: str
    epoch: int
    tick: int
    kind: str
    budget: int
    charge: int = 0
    """An EFFECT entry: what it adds to the agent's charges; a FINAL checkpoint at its parent's
    tick: what the failing tick and the ticks rolled back with it cost (``CommitEvent.charge``)."""
    committed_on: set[str] = field(default_factory=set)
    stored_on: set[str] = field(default_factory=set)
    first_commit: CommitEvent | None = None

    @property
    def is_root(self) -> bool:
        return self.prev in ("", GENESIS_PREV)

    @property
    def is_custody(self) -> bool:
        return self.kind in CUSTODY_KINDS

    @property
    def is_owned(self) -> bool:
        """An effect or tick-input record: neither a checkpoint nor custody."""
        return self.kind in OWNER_KINDS

    @property
    def author(self) -> str | None:
        return self.first_commit.node if self.first_commit else None

    def ref(self) -> EntryRef:
        return EntryRef(
            self.digest,
            self.prev,
            self.epoch,
            self.tick,
            self.kind,
            self.budget,
            tuple(sorted(self.committed_on)),
            tuple(sorted(self.stored_on)),
            self.author,
        )


@dataclass
class Lineage:
    """Every entry known for one agent, from commit events and stores."""

    agent: str
    entries: dict[str, _Entry] = field(default_factory=dict)

    def checkpoint_parent(self, e: _Entry) -> tuple[_Entry | None, bool]:
        """The nearest checkpoint ancestor and whether the path crossed a custody record."""
        crossed = False
        seen = {e.digest}
        p = None if e.is_root else self.entries.get(e.prev)
        while p is not None and (p.is_custody or p.is_owned):
            crossed = crossed or p.is_custody
            if p.is_root or p.prev in seen:
                return None, crossed
            seen.add(p.digest)
            p = self.entries.get(p.prev)
        return p, crossed

    def effect_charge(self, e: _Entry) -> int:
        """What the effects between ``e`` and its checkpoint parent cost the agent."""
        total = 0
        seen = {e.digest}
        p = None if e.is_root else self.entries.get(e.prev)
        while p is not None and (p.is_custody or p.is_owned) and p.digest not in seen:
            seen.add(p.digest)
            total += p.charge
            p = None if p.is_root else self.entries.get(p.prev)
        return total


def build_lineages(
    history: Histories, stores: Mapping[str, StoreSnapshot] | None
) -> dict[str, Lineage]:
    lineages: dict[str, Lineage] = {}

    def entry(
        agent: str, digest: str, prev: str, epoch: int, tick: int, kind: str, budget: int,
        charge: int | None = None,
    ):  # fmt: skip
        lin = lineages.setdefault(agent, Lineage(agent))
        e = lin.entries.get(digest)
        if e is None:
            e = lin.entries[digest] = _Entry(digest, prev, epoch, tick, kind, budget)
        if charge is not None:
            e.charge = charge
        return e

    for c in history.commits:  # already in mono order
        e = entry(c.agent, c.digest, c.prev, c.epoch, c.tick, c.kind, c.budget, c.charge)
        e.committed_on.add(c.node)
        if e.first_commit is None or c.mono_ns < e.first_commit.mono_ns:
            e.first_commit = c
    for node, snap in (stores or {}).items():
        for agent, st in snap.agents.items():
            for s in st.entries:
                e = entry(
                    agent, s.digest.lower(), s.prev.lower(), s.epoch, s.tick, s.kind, s.budget,
                    s.charge if s.kind == "EFFECT" else None,
                )  # fmt: skip
                e.stored_on.add(node)
    return lineages


# ---------------------------------------------------------------------------------------------
# (a) overlap


def ownership_windows(history: Histories) -> dict[str, list[OwnershipWindow]]:
    """Per agent: one window per (node, epoch) from the first tick's start to the last tick's
    end, sorted by start."""
    spans: dict[tuple[str, str, int], list[TickEvent]] = defaultdict(list)
    for t in history.ticks:
        spans[(t.agent, t.node, t.epoch)].append(t)
    windows: dict[str, list[OwnershipWindow]] = defaultdict(list)
    for (agent, node, epoch), ticks in spans.items():
        first = min(ticks, key=lambda t: (t.start_ns, t.tick))
        last = max(ticks, key=lambda t: (t.end_ns, t.tick))
        windows[agent].append(
            OwnershipWindow(
                node, epoch, first.tick, first.start_ns, last.end_ns, last.tick, len(ticks)
            )
        )
    for agent_windows in windows.values():
        agent_windows.sort(key=lambda w: (w.start_ns, w.end_ns, w.node))
    return windows


def check_overlap(history: Histories, *, limit: int = 1000) -> CheckOutcome:
    """Ownership windows of different nodes never interleave. A node's window for an epoch
    runs from the start of its first tick of that epoch to the end of its last; two nodes that
    take turns (each tick alone, but both holding the agent) interleave their windows even when
    no two ticks overlap. Windows sharing only an endpoint do not interleave. Sorted by start,
    swept keeping the latest-ending window and the latest-ending window of any *other* node:
    every window that overlaps an earlier-starting window of another node is reported once,
    paired with that window."""
    out = CheckOutcome("overlap", limit=limit)
    for agent, windows in ownership_windows(history).items():
        out.checked += len(windows)
        best: OwnershipWindow | None = None  # latest end so far
        other: OwnershipWindow | None = None  # latest end among nodes other than best's
        for w in windows:
            rival = best if best is not None and best.node != w.node else other
            if rival is not None and w.start_ns < rival.end_ns:
                out.add(OverlapViolation(agent, rival, w))
            if best is None or w.end_ns > best.end_ns:
                if best is not None and best.node != w.node:
                    other = best
                best = w
            elif w.node != best.node and (other is None or w.end_ns > other.end_ns):
                other = w
    return out


# ---------------------------------------------------------------------------------------------
# (b) lineage


SNAPSHOT_KINDS = frozenset({"HANDOFF", "FINAL"})
"""Checkpoints that re-sign their parent's state without a tick (an offer, a stop)."""


def _is_snapshot_of_parent(lin: Lineage, e: _Entry) -> bool:
    """``e`` re-signs its checkpoint parent's tick and budget (less the effects between them):
    in the same epoch, or in the next one when it is the new owner's first checkpoint, right
    after the custody record and certificate (an offer made before the agent ticked there)."""
    if e.kind not in SNAPSHOT_KINDS:
        return False
    parent, crossed = lin.checkpoint_parent(e)
    return (
        parent is not None
        and (e.epoch > parent.epoch if crossed else e.epoch == parent.epoch)
        and parent.tick == e.tick
        and parent.budget - lin.effect_charge(e) == e.budget
    )


CUSTODY_RECORD_KINDS = frozenset({"TRANSFER", "FORCED"})


def check_lineage(
    lineages: Mapping[str, Lineage], *, data_lost: bool = False, limit: int = 1000
) -> CheckOutcome:
    """Per agent: no two different entries with the same ``prev`` (fork), with two kinds of
    dead ends tolerated beside the one chain that continues:

    * one childless custody record (a transfer record links to the last checkpoint of its
      epoch, as does the first checkpoint of the next epoch);
    * childless snapshots of the parent — a HANDOFF or FINAL checkpoint of the same epoch, tick
      and budget: an offer a target still holds after the source aborted the handoff and ticked
      on. It carries no tick, and no custody record ever followed it.

    Every non-root entry's ``prev`` was committed or stored somewhere (gap). When a node lost
    data (``data_lost``: a backup was restored), the checkpoint a custody record names may be
    gone from every store, as the verifier allows for a compacted lineage: the certified record
    vouches for it (its signer owned that epoch). Nothing else may be missing."""
    out = CheckOutcome("lineage", limit=limit)
    for agent, lin in lineages.items():
        children: dict[str, list[_Entry]] = defaultdict(list)
        for e in lin.entries.values():
            out.checked += 1
            children["" if e.is_root else e.prev].append(e)
            missing = not e.is_root and e.prev not in lin.entries
            if missing and not (data_lost and e.kind in CUSTODY_RECORD_KINDS):
                out.add(GapViolation(agent, e.ref(), e.prev))
        has_child = {p for p in children if p}
        for prev, kids in children.items():
            if len(kids) < 2:
                continue
            dead = [k for k in kids if k.digest not in has_child]
            side = [k for k in dead if k.is_custody]
            offers = [k for k in dead if _is_snapshot_of_parent(lin, k)]
            chain = [k for k in kids if k not in side and k not in offers]
            if len(chain) > 1 or len(side) > 1:
                refs = tuple(k.ref() for k in sorted(kids, key=lambda k: (k.epoch, k.digest)))
                out.add(ForkViolation(agent, prev or GENESIS_PREV, refs))
    return out


# ---------------------------------------------------------------------------------------------
# (c) epochs


def check_epochs(
    history: Histories, lineages: Mapping[str, Lineage], *, limit: int = 1000
) -> CheckOutcome:
    """Along every lineage link a checkpoint's epoch is ≥ its checkpoint parent's, and > it
    when the link passes a custody record; and each epoch has one owner: every tick of the
    epoch and the author of every checkpoint of the epoch are the same node."""
    out = CheckOutcome("epochs", limit=limit)
    for agent, lin in lineages.items():
        for e in lin.entries.values():
            if e.is_custody or e.is_owned or e.is_root:
                continue
            parent, crossed = lin.checkpoint_parent(e)
            if parent is None:
                continue
            out.checked += 1
            if e.epoch < parent.epoch or (crossed and e.epoch <= parent.epoch):
                out.add(EpochRegressionViolation(agent, parent.ref(), e.ref(), crossed))
    claims: dict[tuple[str, int], dict[str, OwnerClaim]] = defaultdict(dict)
    for t in history.ticks:
        per_node = claims[(t.agent, t.epoch)]
        if t.node not in per_node:
            per_node[t.node] = OwnerClaim(t.node, "tick", t.tick, t.start_ns, None, TickSpan.of(t))
    for agent, lin in lineages.items():
        for e in lin.entries.values():
            c = e.first_commit
            if c is None or e.is_custody:
                continue
            per_node = claims[(agent, e.epoch)]
            if c.node not in per_node:
                per_node[c.node] = OwnerClaim(c.node, "commit", e.tick, c.mono_ns, e.digest, None)
    for (agent, epoch), per_node in sorted(claims.items()):
        out.checked += 1
        if len(per_node) > 1:
            ordered = tuple(sorted(per_node.values(), key=lambda c: (c.mono_ns, c.node)))
            out.add(EpochOwnerViolation(agent, epoch, ordered))
    return out


# ---------------------------------------------------------------------------------------------
# (d) budget


def check_budget(
    history: Histories, lineages: Mapping[str, Lineage], *, limit: int = 1000
) -> CheckOutcome:
    """For every link from a checkpoint P to a checkpoint C whose checkpoint parent is P:

    * ``C.budget <= P.budget`` (never increases);
    * C commits the ticks numbered ``P.tick+1 … C.tick`` of epoch ``C.epoch``. For each such
      tick number the *counted* tick event is the latest one for (agent, epoch, tick) recorded
      on C's author that ended no later than C's first commit (any node, any time if C was
      never reported committed). Each must exist, and their costs must sum to exactly
      ``P.budget − C.budget`` less what the effects recorded between P and C cost (http
      requests and payments: the charges of their EFFECT entries) and, for a FINAL C at P's
      tick, what the failing tick cost (C's own charge: its fuel stays paid).

    Tick events no checkpoint of the lineage covers (rolled back by a crash, or after the
    last commit) are not counted. A checkpoint only a store holds, with no commit event and
    no tick event (written just before the node stopped or was read), is not judged. Summed
    over the chain from the root to its tip, this proves
    ``Σ cost(counted ticks) + Σ effect charges = budget(root) − budget(tip)``: spent = tick
    costs (fuel, hostcalls, storage, logs) + what effects cost (http fees, payments).
    """
    out = CheckOutcome("budget", limit=limit)
    index: dict[tuple[str, int, int], list[TickEvent]] = defaultdict(list)
    ticks_per_agent: dict[str, int] = defaultdict(int)
    for t in history.ticks:
        index[(t.agent, t.epoch, t.tick)].append(t)
        ticks_per_agent[t.agent] += 1
    for agent, lin in lineages.items():
        for e in lin.entries.values():
            if e.is_custody or e.is_owned or e.is_root:
                continue
            parent, _ = lin.checkpoint_parent(e)
            if parent is None:
                continue
            out.checked += 1
            if e.budget > parent.budget:
                out.add(BudgetViolation(agent, "increase", parent.ref(), e.ref(), 0, (), ()))
                continue
            # more tick numbers than tick events: some are missing; stop after 10 of them
            bounded = e.tick - parent.tick > ticks_per_agent[agent]
            counted: list[TickEvent] = []
            missing_list: list[int] = []
            deadline = e.first_commit.mono_ns if e.first_commit else None
            for n in range(parent.tick + 1, e.tick + 1):
                chosen = _counted_tick(index.get((agent, e.epoch, n), ()), e.author, deadline)
                if chosen is None:
                    missing_list.append(n)
                    if bounded and len(missing_list) >= 10:
                        break
                else:
                    counted.append(chosen)
            if e.first_commit is None and not counted:
                # In a store, never reported: the node stopped (or was read) between the
                # commit and its history lines. Its ticks' costs are unknown; the budget never
                # increased (checked above) and the next reported checkpoint is judged.
                out.checked -= 1
                continue
            spans = tuple(TickSpan.of(t) for t in counted)
            cost = sum(t.cost for t in counted)
            if missing_list:
                out.add(
                    BudgetViolation(
                        agent,
                        "missing_ticks",
                        parent.ref(),
                        e.ref(),
                        cost,
                        spans,
                        tuple(missing_list),
                    )
                )
            elif cost + lin.effect_charge(e) + e.charge != parent.budget - e.budget:
                out.add(
                    BudgetViolation(agent, "cost_mismatch", parent.ref(), e.ref(), cost, spans, ())
                )
    return out


def _counted_tick(
    candidates: Sequence[TickEvent], author: str | None, deadline: int | None
) -> TickEvent | None:
    pool = [t for t in candidates if author is None or t.node == author] or list(candidates)
    if deadline is not None:
        pool = [t for t in pool if t.end_ns <= deadline]
    return max(pool, key=lambda t: t.end_ns, default=None)


# ---------------------------------------------------------------------------------------------
# (e) durability


def check_durability(
    history: Histories,
    lineages: Mapping[str, Lineage],
    stores: Mapping[str, StoreSnapshot] | None,
    *,
    limit: int = 1000,
) -> CheckOutcome:
    """Every digest a node reported committed is still in that node's store, or is an
    ancestor (by ``prev`` links over every known entry) of an entry stored on some node.
    Skipped without store snapshots."""
    out = CheckOutcome("durability", limit=limit)
    if stores is None:
        out.skipped = True
        out.note = "no store snapshots"
        return out
    for agent, lin in lineages.items():
        covered: set[str] = set()
        for e in lin.entries.values():
            if not e.stored_on:
                continue
            d: str | None = e.digest
            while d is not None and d not in covered:
                covered.add(d)
                cur = lin.entries.get(d)
                d = None if cur is None or cur.is_root else cur.prev
        for e in lin.entries.values():
            for node in sorted(e.committed_on):
                out.checked += 1
                if node in e.stored_on or e.digest in covered:
                    continue
                c = e.first_commit if e.author == node else None
                when = c.mono_ns if c else _commit_time(history, agent, e.digest, node)
                out.add(LostCommitViolation(agent, node, e.digest, e.epoch, e.tick, e.kind, when))
    return out


def _commit_time(history: Histories, agent: str, digest: str, node: str) -> int:
    for c in history.commits:
        if c.agent == agent and c.digest == digest and c.node == node:
            return c.mono_ns
    return 0


# ---------------------------------------------------------------------------------------------
# (g) robustness


def check_robustness(history: Histories, *, limit: int = 1000) -> CheckOutcome:
    """No agent was halted by an unexpected error (``RecoveryReason.UNEXPECTED_ERROR``)."""
    out = CheckOutcome("robustness", limit=limit)
    for a in history.authority:
        out.checked += 1
        if a.recovery == UNEXPECTED_ERROR:
            out.add(UnexpectedErrorViolation(a.agent, a.node, a.epoch, a.mono_ns, a.reason))
    return out


# ---------------------------------------------------------------------------------------------
# (f) liveness


def final_states(
    history: Histories, stores: Mapping[str, StoreSnapshot] | None
) -> dict[str, dict[str, FinalState]]:
    """Per agent, per node: the last authority state (the store's, when a snapshot holds it,
    else the last ``authority`` event)."""
    result: dict[str, dict[str, FinalState]] = defaultdict(dict)
    for a in history.authority:
        result[a.agent][a.node] = FinalState(a.node, a.to_state, a.reason, "history")
    for node, snap in (stores or {}).items():
        for agent, st in snap.agents.items():
            if st.authority_state is not None:
                result[agent][node] = FinalState(node, st.authority_state, st.reason, "store")
    return result


def check_liveness(
    history: Histories,
    stores: Mapping[str, StoreSnapshot] | None,
    config: CheckConfig,
    *,
    limit: int = 1000,
) -> CheckOutcome:
    """With H the final heal and B the bound, each agent must either

    * be *live*: some tick starts at or after H + B, and at most one node ends the run with
      the agent in ACTIVE_OWNER; or
    * be *parked*: no node ends in ACTIVE_OWNER/HANDOFF_INITIATED/HANDOFF_PENDING, at least one
      node ends in RECOVERY_REQUIRED with a non-empty reason or in BUDGET_EXHAUSTED/HALTED,
      and no node ends in RECOVERY_REQUIRED without a reason. (Nodes that ended RETIRED gave
      authority away durably and are allowed.)
    """
    out = CheckOutcome("liveness", limit=limit)
    if not config.check_liveness:
        out.skipped, out.note = True, "disabled"
        return out
    heal = config.heal_ns if config.heal_ns is not None else history.final_heal_ns
    if heal is None:
        out.skipped, out.note = True, "a fault was never healed"
        return out
    deadline = heal + int(config.liveness_bound_s * 1e9)
    out.note = f"heal {heal} ns, bound {config.liveness_bound_s:g} s"
    states = final_states(history, stores)
    last_tick: dict[str, TickEvent] = {}
    ticked_after: set[str] = set()
    for t in history.ticks:
        if t.agent not in last_tick or t.end_ns >= last_tick[t.agent].end_ns:
            last_tick[t.agent] = t
        if t.start_ns >= deadline:
            ticked_after.add(t.agent)
    agents = set(history.agents)
    for snap in (stores or {}).values():
        agents.update(snap.agents)
    end = history.end_ns
    for agent in sorted(agents):
        out.checked += 1
        finals = tuple(sorted(states.get(agent, {}).values(), key=lambda s: s.node))
        active = [s for s in finals if s.state == "ACTIVE_OWNER"]
        owning = [s for s in finals if s.state in OWNING_STATES]
        unexplained = [s for s in finals if s.state == RECOVERY and not s.reason]
        parked = [
            s for s in finals if s.state in TERMINAL_STATES or (s.state == RECOVERY and s.reason)
        ]
        reason = None
        if unexplained:
            reason = "recovery_without_reason"
        elif not owning and parked:
            reason = None
        elif agent in ticked_after:
            if len(active) > 1:
                reason = "multiple_active_owners"
        else:
            reason = "no_tick_after_bound"
        if reason is not None:
            lt = last_tick.get(agent)
            out.add(
                LivenessViolation(
                    agent, reason, heal, deadline, end, TickSpan.of(lt) if lt else None, finals
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# entry point


def check(
    history: Histories,
    *,
    stores: Mapping[str, StoreSnapshot] | None = None,
    config: CheckConfig | None = None,
) -> CheckResult:
    """Run every check over ``history`` (and the final ``stores``, keyed by node name)."""
    config = config or CheckConfig()
    started = time.perf_counter()
    limit = config.max_violations_per_check
    lineages = build_lineages(history, stores)
    outcomes = [
        check_overlap(history, limit=limit),
        check_lineage(
            lineages, data_lost=any(f.fault == "restore" for f in history.faults), limit=limit
        ),
        check_epochs(history, lineages, limit=limit),
        check_budget(history, lineages, limit=limit),
        check_durability(history, lineages, stores, limit=limit),
        check_liveness(history, stores, config, limit=limit),
        check_robustness(history, limit=limit),
    ]
    violations = tuple(v for o in outcomes for v in o.violations)
    return CheckResult(
        violations,
        {o.name: o.count() for o in outcomes},
        len(history.events),
        time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------------------------
# benchmark


def bench_checker(events: int = 10_000, *, seed: int = 0) -> dict[str, Any]:
    """Synthesise a correct history of about ``events`` events and time :func:`check`."""
    from testnet.synthetic import SyntheticSpec, synthesize

    agents = 10
    # each tick yields a tick event and a commit; each epoch adds ~5 events
    epochs = 10
    per_epoch = max(1, (events // agents - 2) // (2 * epochs + 1))
    spec = SyntheticSpec(agents=agents, ticks_per_epoch=(per_epoch,) * epochs, seed=seed)
    history = merge(synthesize(spec).values())
    started = time.perf_counter()
    result = check(history, config=CheckConfig(check_liveness=False))
    elapsed = time.perf_counter() - started
    return {
        "events": len(history.events),
        "ticks": len(history.ticks),
        "commits": len(history.commits),
        "seconds": elapsed,
        "events_per_second": len(history.events) / elapsed if elapsed else float("inf"),
        "ok": result.ok,
    }


__all__ = [
    "CHECK_NAMES",
    "AgentStore",
    "BudgetViolation",
    "CheckConfig",
    "CheckCount",
    "CheckOutcome",
    "CheckResult",
    "EntryRef",
    "EpochOwnerViolation",
    "EpochRegressionViolation",
    "FinalState",
    "ForkViolation",
    "GapViolation",
    "LivenessViolation",
    "LostCommitViolation",
    "OverlapViolation",
    "OwnerClaim",
    "OwnershipWindow",
    "StoreEntry",
    "StoreSnapshot",
    "TickSpan",
    "UnexpectedErrorViolation",
    "Violation",
    "bench_checker",
    "check",
    "check_budget",
    "check_durability",
    "check_epochs",
    "check_lineage",
    "check_liveness",
    "check_overlap",
    "final_states",
]
