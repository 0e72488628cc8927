"""Executes :class:`~testnet.nemesis.NemesisStep` s against a running :class:`Testnet`.

The runner keeps the *desired* fault state (each node's partition cut, message faults and
clock skew) so a node that was killed or paused while a fault changed is brought in line when
it comes back: on ``restart``/``unpause`` it is told its current cut (or ``heal``), its message
faults (or ``clear``) and its skew (or ``0``), which also closes the windows its own history
left open. Nodes write their own ``fault`` events; what they cannot write (``kill``,
``restart``, ``pause``, ``unpause``, migrate requests) the runner appends to
``DIR/nemesis.jsonl`` in the history schema (docs/history.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from igor_p2p.errors import IgorError
from testnet.harness import Testnet, TestnetError
from testnet.history import NEMESIS_LOG
from testnet.nemesis import NemesisStep, parse_node_list, partition_groups, reachable

MIGRATE_TIMEOUT_S = 130.0
OWNER_LOOKUP_S = 3.0
"""How long a migrate step looks for the agent's owner (it may be between owners)."""


@dataclass
class Applied:
    """What one step did: the nodes it reached and the ones it could not."""

    step: NemesisStep
    at_mono_ns: int
    nodes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """node → why it was not told (down, paused, error)."""


class NemesisRunner:
    """Applies steps to ``testnet``; ``applied`` lists what happened, ``counts`` by action."""

    def __init__(self, testnet: Testnet, *, seed: int = 0) -> None:
        self.tn = testnet
        self.seed = seed
        self.cuts: dict[str, list[str]] = {}
        """node → peer IDs it must block (empty: no partition in force)."""
        self.message_faults: dict[str, dict[str, Any]] = {}
        self.skews: dict[str, float] = {}
        self.killed: set[str] = set()
        self.applied: list[Applied] = []
        self.counts: Counter[str] = Counter()
        self.migrations: list[threading.Thread] = []
        self.migration_results: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the nemesis log

    def log_event(self, node: str, fault: str, detail: Any) -> None:
        """Append one ``fault`` event for ``node`` to ``DIR/nemesis.jsonl``."""
        info = self.tn.node(node)
        event = {
            "type": "fault",
            "node": node,
            "peer_id": info.peer_id,
            "mono_ns": time.monotonic_ns(),
            "wall_ns": time.time_ns(),
            "fault": fault,
            "detail": detail,
        }
        with self._lock, open(self.tn.dir / NEMESIS_LOG, "a") as f:
            f.write(json.dumps(event, separators=(",", ":")) + "\n")

    # ------------------------------------------------------------ steps

    def apply(self, step: NemesisStep) -> Applied:
        record = Applied(step, time.monotonic_ns())
        handler = getattr(self, f"_do_{step.action}")
        handler(step, record)
        self.applied.append(record)
        self.counts[step.action] += 1
        return record

    def _told(self, record: Applied, answers: dict[str, Any]) -> None:
        for name, answer in answers.items():
            if isinstance(answer, Exception):
                record.skipped[name] = f"{type(answer).__name__}: {answer}"
            else:
                record.nodes.append(name)

    def _skip_unreachable(self, record: Applied, names: Sequence[str]) -> list[str]:
        live = set(self.tn.reachable())
        for n in names:
            if n not in live:
                record.skipped[n] = "down or paused"
        return [n for n in names if n in live]

    def _do_partition(self, step: NemesisStep, record: Applied) -> None:
        names = self.tn.names
        groups = partition_groups(
            step.args.get("shape") or "", names, groups=step.args.get("groups")
        )
        view = reachable(groups, names)
        self.cuts = {n: [self.tn.peer_id(m) for m in names if m not in view[n]] for n in names}
        if self.tn.netns:  # partitions by the kernel (blackhole routes), not the fault gate
            for n in names:
                self.tn.kernel_cut(n, [m for m in names if m not in view[n]])
                self.log_event(n, "partition", {"cut": [m for m in names if m not in view[n]]})
            record.nodes.extend(names)
            return
        targets = self._skip_unreachable(record, names)
        answers = self.tn.admin_many(targets, "partition", lambda n: {"peers": self.cuts[n]})
        self._told(record, answers)

    def _do_heal(self, step: NemesisStep, record: Applied) -> None:
        self.cuts = {}
        if self.tn.netns:
            for n in self.tn.names:
                self.tn.kernel_cut(n, [])
                self.log_event(n, "heal", {})
            record.nodes.extend(self.tn.names)
            return
        targets = self._skip_unreachable(record, self.tn.names)
        self._told(record, self.tn.admin_many(targets, "heal"))

    def _do_faults(self, step: NemesisStep, record: Applied) -> None:
        a = step.args
        chosen = parse_node_list(a["nodes"]) if "nodes" in a else self.tn.names
        for i, n in enumerate(chosen):
            self.message_faults[n] = {
                "drop": float(a.get("drop", 0.0)),
                "duplicate": float(a.get("dup", 0.0)),
                "delay_ms": int(a.get("delay_ms", 0)),
                "reorder": bool(a.get("reorder", 0)),
                "seed": self.seed * 1000 + len(self.applied) * 10 + i,
            }
        targets = self._skip_unreachable(record, chosen)
        answers = self.tn.admin_many(targets, "message_faults", lambda n: self.message_faults[n])
        self._told(record, answers)

    def _do_clear_faults(self, step: NemesisStep, record: Applied) -> None:
        chosen = parse_node_list(step.args["nodes"]) if "nodes" in step.args else self.tn.names
        for n in chosen:
            self.message_faults.pop(n, None)
        targets = self._skip_unreachable(record, chosen)
        self._told(record, self.tn.admin_many(targets, "message_faults", {"clear": True}))

    def _do_skew(self, step: NemesisStep, record: Applied) -> None:
        node, seconds = step.args["node"], step.args["seconds"]
        if seconds:
            self.skews[node] = seconds
        else:
            self.skews.pop(node, None)
        targets = self._skip_unreachable(record, [node])
        self._told(record, self.tn.admin_many(targets, "skew", {"seconds": seconds}))

    def _do_kill(self, step: NemesisStep, record: Applied) -> None:
        node = step.args["node"]
        if not self.tn.alive(node):
            record.skipped[node] = "already down"
            return
        self.tn.kill(node)
        self.killed.add(node)
        self.log_event(node, "kill", {"signal": "SIGKILL"})
        record.nodes.append(node)

    def _do_restart(self, step: NemesisStep, record: Applied) -> None:
        node = step.args["node"]
        if self.tn.alive(node):
            record.skipped[node] = "already running"
            return
        self.tn.start(node)
        self.killed.discard(node)
        self.log_event(node, "restart", {"pid": self.tn.node(node).pid})
        record.nodes.append(node)
        threading.Thread(target=self._resync_when_ready, args=(node,), daemon=True).start()

    def _do_pause(self, step: NemesisStep, record: Applied) -> None:
        node = step.args["node"]
        if not self.tn.alive(node) or self.tn.node(node).paused:
            record.skipped[node] = "down or already paused"
            return
        self.tn.pause(node)
        self.log_event(node, "pause", {"signal": "SIGSTOP"})
        record.nodes.append(node)

    def _do_unpause(self, step: NemesisStep, record: Applied) -> None:
        node = step.args["node"]
        if not self.tn.alive(node) or not self.tn.node(node).paused:
            record.skipped[node] = "down or not paused"
            return
        self.tn.unpause(node)
        self.log_event(node, "unpause", {"signal": "SIGCONT"})
        record.nodes.append(node)
        self.resync(node)

    def _do_migrate(self, step: NemesisStep, record: Applied) -> None:
        """Ask the current owner (found by asking every reachable node; retried while the
        agent is between owners) to migrate the agent; runs in the background."""
        label, to = step.args["agent"], step.args["to"]
        did = self.tn.state.agents.get(label)
        if did is None:
            record.skipped[to] = f"no agent labelled {label}"
            return
        record.nodes.append(to)
        thread = threading.Thread(target=self._migrate, args=(label, did, to), daemon=True)
        thread.start()
        self.migrations.append(thread)

    def _migrate(self, label: str, did: str, to: str) -> None:
        end = time.monotonic() + OWNER_LOOKUP_S
        owners: list[str] = []
        while True:
            try:
                owners = self.tn.owners(did)
            except (IgorError, OSError):
                owners = []
            if owners or time.monotonic() >= end:
                break
            time.sleep(0.1)
        source = owners[0] if owners else None
        if source is None:
            outcome = "no reachable owner"
        elif source == to:
            outcome = "already there"
        else:
            params = {"agent": did, "to": self.tn.peer_id(to)}
            try:
                result = self.tn.admin(source, "migrate", params, timeout_s=MIGRATE_TIMEOUT_S)
                outcome = str(result.get("outcome"))
            except (IgorError, OSError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.migration_results.append(
                {"agent": label, "from": source, "to": to, "outcome": outcome}
            )

    # ------------------------------------------------------------ bringing a node in line

    def _resync_when_ready(self, node: str) -> None:
        try:
            self.tn.wait_ready(node)
        except TestnetError:
            return
        self.resync(node)

    def resync(self, node: str) -> None:
        """Tell ``node`` the fault state in force (or its absence)."""
        tn = self.tn
        cut = self.cuts.get(node)
        if tn.netns:  # the kernel cut outlives the process: nothing to tell the node
            cut = None
        calls: list[tuple[str, dict[str, Any]]] = [
            ("partition", {"peers": cut}) if cut is not None else ("heal", {}),
            ("message_faults", self.message_faults.get(node) or {"clear": True}),
            ("skew", {"seconds": self.skews.get(node, 0)}),
        ]
        for method, params in calls:
            try:
                tn.admin(node, method, params)
            except (IgorError, OSError):
                return

    def final_heal(self) -> None:
        """Heal everything: partitions, message faults, paused and killed nodes, skews."""
        at = self.applied[-1].step.at_s if self.applied else 0.0
        self.apply(NemesisStep(at, "heal"))
        self.apply(NemesisStep(at, "clear_faults"))
        for info in self.tn.state.nodes:
            if info.paused:
                self.apply(NemesisStep(at, "unpause", {"node": info.name}))
        for name in self.tn.names:
            if not self.tn.alive(name):
                self.apply(NemesisStep(at, "restart", {"node": name}))
        for name in list(self.skews):
            self.apply(NemesisStep(at, "skew", {"node": name, "seconds": 0}))

    def wait_migrations(self, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        for t in self.migrations:
            t.join(max(0.0, end - time.monotonic()))

    def run_schedule(self, steps: Sequence[NemesisStep], *, t0: float | None = None) -> None:
        """Apply ``steps`` at their ``at_s`` (seconds after ``t0``, default now)."""
        t0 = time.monotonic() if t0 is None else t0
        for step in sorted(steps, key=lambda s: s.at_s):
            delay = t0 + step.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.apply(step)


__all__ = ["Applied", "NemesisRunner"]
