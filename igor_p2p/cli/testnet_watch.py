"""``igor testnet watch``: a live view that never waits for a slow node.

One poller thread per node asks that node (admin ``status``, ``agents``, ``faults``, each with
a short timeout) in a loop and keeps its latest answer; the view is drawn from those answers
four times a second, so a paused or hung node only makes its own row stale. The testnet's state
file is read again on every pass, so a node restarted or paused by another ``igor testnet``
command shows up at once. Handoffs are read from the nodes' history files as they are written.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Group
from rich.table import Table
from rich.text import Text

from igor_p2p.errors import IgorError

NODE_TIMEOUT_S = 1.0
"""Each admin call of a poller; a node slower than this is shown stale, never waited for."""
POLL_GAP_S = 0.25
STALE_AFTER_S = 2.5
HANDOFF_LINES = 8
HANDOFF_STEPS = ("committed", "aborted", "rejected", "resolved")


@dataclass
class NodeView:
    """What the view knows of one node: process state from the OS, the rest from the node."""

    name: str
    process: str = "?"
    """up, paused, killed (no process), or down (never started)."""
    answered_at: float | None = None
    status: dict[str, Any] | None = None
    agents: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    error: str | None = None


def process_state(pid: int | None, create_time: float | None) -> str:
    """``up``, ``paused`` (SIGSTOP), or ``killed``, from the OS (whoever paused it)."""
    if pid is None:
        return "killed"
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.5:
            return "killed"
        status = proc.status()
    except psutil.Error:
        return "killed"
    if status == psutil.STATUS_ZOMBIE:
        return "killed"
    if status == psutil.STATUS_STOPPED:
        return "paused"
    return "up"


class Watcher:
    """Pollers and history readers for the testnet in ``dir``; :meth:`render` draws the view."""

    def __init__(self, dir: Path) -> None:
        from testnet.harness import Testnet

        self.dir = dir
        self._testnet_cls = Testnet
        self.tn = Testnet(dir)
        self.views: dict[str, NodeView] = {}
        self.handoffs: deque[str] = deque(maxlen=HANDOFF_LINES)
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}

    # ------------------------------------------------------------ polling

    def reload(self) -> None:
        """Read testnet.json again; start a poller for every node not yet polled."""
        try:
            self.tn = self._testnet_cls(self.dir)
        except (OSError, ValueError):
            return  # being rewritten: keep the last state
        for info in self.tn.state.nodes:
            if info.name not in self._threads:
                self.views.setdefault(info.name, NodeView(info.name))
                thread = threading.Thread(
                    target=self._poll, args=(info.name,), name=f"watch-{info.name}", daemon=True
                )
                self._threads[info.name] = thread
                thread.start()

    def _poll(self, name: str) -> None:
        from igor_p2p.node.admin_client import call_admin

        while not self._stop.is_set():
            tn = self.tn
            try:
                info = tn.node(name)
            except IgorError:
                return
            state = process_state(info.pid, info.create_time)
            view = self.views[name]
            view.process = state
            if state == "up":
                try:
                    sock = info.admin_socket
                    status = call_admin(sock, "status", None, timeout_s=NODE_TIMEOUT_S)
                    agents = call_admin(sock, "agents", None, timeout_s=NODE_TIMEOUT_S)
                    faults = call_admin(sock, "faults", None, timeout_s=NODE_TIMEOUT_S)
                    with self._lock:
                        view.status, view.agents = status, agents
                        view.blocked = list(faults.get("blocked", []))
                        view.answered_at = time.monotonic()
                        view.error = None
                except (IgorError, OSError) as exc:
                    from igor_p2p.cli.common import humanize

                    view.error = humanize(str(exc))[:60]
            self._stop.wait(POLL_GAP_S)

    def stop(self) -> None:
        self._stop.set()

    def read_handoffs(self) -> None:
        """New handoff outcomes from every node's history file."""
        for info in self.tn.state.nodes:
            path = Path(info.data_dir) / "history.jsonl"
            try:
                size = path.stat().st_size
            except OSError:
                continue
            start = self._offsets.get(info.name)
            if start is None or size < start:
                start = max(0, size - 64 * 1024) if start is None else 0
            if size == start:
                self._offsets[info.name] = size
                continue
            with path.open("rb") as f:
                f.seek(start)
                data = f.read(min(size - start, 1 << 20))
            self._offsets[info.name] = start + len(data)
            lines = (self._partial.get(info.name, b"") + data).split(b"\n")
            self._partial[info.name] = lines.pop()
            for line in lines:
                self._handoff_line(info.name, line)

    def _handoff_line(self, node: str, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("type") != "handoff":
            return
        if event.get("step") not in HANDOFF_STEPS:
            return
        wall = event.get("wall_ns")
        stamp = time.strftime("%H:%M:%S", time.localtime(wall / 1e9)) if wall else "--:--:--"
        label = self.tn.label_of(str(event.get("agent")))
        peer = event.get("peer")
        other = self.tn.name_of(peer) if isinstance(peer, str) else None
        step = str(event["step"])
        where = f"{other or '?'} → {node}" if step == "committed" else f"on {node}"
        detail = event.get("detail")
        extra = f" ({detail})" if isinstance(detail, str) and detail else ""
        self.handoffs.append(
            f"{stamp}  {label:<4} {step:<10} {where}  epoch {event.get('epoch')}{extra}"
        )

    # ------------------------------------------------------------ drawing

    def node_table(self, now: float) -> Table:
        table = Table("node", "state", "agents", "peers up", "ticks", "links down", "last answer")
        names = {i.peer_id: i.name for i in self.tn.state.nodes}
        for info in self.tn.state.nodes:
            view = self.views.get(info.name) or NodeView(info.name)
            age = None if view.answered_at is None else now - view.answered_at
            state = {
                "up": "[green]up[/green]",
                "paused": "[yellow]paused[/yellow]",
                "killed": "[red]killed[/red]",
            }.get(view.process, view.process)
            if view.process == "up" and view.blocked:
                state = "[magenta]partitioned[/magenta]"
            if view.process == "up" and (age is None or age > STALE_AFTER_S):
                state += " [yellow](not answering)[/yellow]"
            status = view.status if view.process == "up" else None
            owned = [
                self.tn.label_of(a["agent"])
                for a in (view.agents if view.process == "up" else [])
                if a.get("state") == "ACTIVE_OWNER"
            ]
            down = sorted(names.get(p, p[:12]) for p in view.blocked)
            table.add_row(
                info.name,
                state,
                ", ".join(owned) or "-",
                "-" if status is None else str(status.get("peers_up")),
                "-" if status is None else str(status.get("ticks_total")),
                ", ".join(down) or "-",
                "-" if age is None else f"{age:.1f}s ago",
            )
        return table

    def agent_table(self) -> Table:
        table = Table("agent", "owner", "state", "epoch", "tick", "DID")
        rows: dict[str, tuple[str, dict[str, Any]]] = {}

        def rank(a: dict[str, Any]) -> tuple[bool, int]:
            return a.get("state") == "ACTIVE_OWNER", int(a.get("epoch") or 0)

        for info in self.tn.state.nodes:
            view = self.views.get(info.name)
            if view is None or view.process == "killed":
                continue
            for a in view.agents:  # a paused node: its last answer
                current = rows.get(a["agent"])
                if current is None or rank(a) > rank(current[1]):
                    rows[a["agent"]] = (info.name, a)
        labels = dict(self.tn.state.agents)
        for did in labels.values():
            rows.setdefault(did, ("-", {"state": "?", "epoch": "-", "tick": "-"}))
        for did, (node, a) in sorted(rows.items(), key=lambda kv: self.tn.label_of(kv[0])):
            owner = node if a.get("state") == "ACTIVE_OWNER" else "-"
            view = self.views.get(node)
            if owner != "-" and view is not None and view.process == "paused":
                owner += " (paused)"
            table.add_row(
                self.tn.label_of(did),
                owner,
                str(a.get("state")),
                str(a.get("epoch", "-")),
                str(a.get("tick", "-")),
                "…" + did[-12:],
            )
        return table

    def render(self) -> Group:
        now = time.monotonic()
        self.reload()
        self.read_handoffs()
        header = Text(f"{time.strftime('%H:%M:%S')}  testnet {self.tn.dir}  (Ctrl-C to leave)")
        handoffs = Text("\n".join(self.handoffs) or "no handoffs yet")
        return Group(
            header,
            self.node_table(now),
            self.agent_table(),
            Text("handoffs", style="bold"),
            handoffs,
        )


__all__ = ["NodeView", "Watcher", "process_state"]
