"""Can this node hold one more agent? The node-wide memory and disk budget (issue 10, MC-6).

:func:`admit` is pure: given what an arriving agent (a launch or an incoming migration) needs
(:class:`Demand`), what the node uses now (:class:`NodeUsage`) and what it may use
(:class:`NodeBudget`), it says yes or why not. Launch (``NodeApi.launch``) and the handoff
target's offer check (the runner's ``admit_offer``, REJECT ``NO_CAPACITY``) both call it, so a
node never takes an agent it cannot hold. :func:`may_store` is the same question for the bytes
of one more checkpoint. :func:`measure_disk` is the one impure helper: what the data directory
holds now and what the file system has left.

Memory is counted by reservation: every hosted agent may grow to its memory cap (the manifest's
``max_memory_bytes`` or the sandbox default), so the caps of all hosted agents together must fit
in ``memory_bytes``. Disk is counted by use: the store (with its WAL) and the history file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from igor_p2p.errors import IgorError

if TYPE_CHECKING:
    from igor_p2p.agent.manifest import Manifest

MIB = 1024 * 1024
GIB = 1024 * MIB

DEFAULT_MIN_FREE_DISK_BYTES = 256 * MIB
"""The file system keeps at least this much free whatever the disk budget says: SQLite needs
room for its WAL and a checkpoint to roll back cleanly."""
DEFAULT_AGENT_STORAGE_BYTES = 1 * GIB
"""One agent's lineage (every checkpoint and custody record this node stores for it) is capped
at this size; an agent that reaches it is halted."""


class NoCapacity(IgorError):
    """This node cannot hold the agent (too many agents, memory or disk budget reached)."""


@dataclass(frozen=True)
class NodeBudget:
    """What the node may use (the defaults suit a local CLI run; a node takes its config's)."""

    max_agents: int = 1000
    memory_bytes: int = 64 * GIB
    disk_bytes: int = 16 * GIB
    min_free_disk_bytes: int = DEFAULT_MIN_FREE_DISK_BYTES
    agent_storage_bytes: int = DEFAULT_AGENT_STORAGE_BYTES


@dataclass(frozen=True)
class NodeUsage:
    """What the node uses now."""

    agents: int
    memory_reserved: int
    """Sum of the memory caps of the hosted agents."""
    disk_used: int
    """Bytes of the store and history files."""
    disk_free: int
    """Bytes the file system holding the data directory has left for us."""


@dataclass(frozen=True)
class Demand:
    """What one arriving agent needs."""

    memory_bytes: int
    """Its memory cap."""
    disk_bytes: int
    """Bytes its arrival writes (entries, module, manifest)."""
    lineage_bytes: int
    """Its whole lineage's size on this node after arrival (the per-agent storage cap)."""


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    reason: str = ""

    def raise_if_refused(self) -> None:
        if not self.admitted:
            raise NoCapacity(self.reason)


ADMITTED = Verdict(True)


@dataclass(frozen=True)
class ResourceCheck:
    """Everything :func:`admit` needs besides the demand, as the node gathered it."""

    usage: NodeUsage
    budget: NodeBudget
    default_memory_cap: int
    """The memory cap of an agent whose manifest declares none (the sandbox's limit)."""


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def may_store(size: int, usage: NodeUsage, budget: NodeBudget) -> Verdict:
    """Whether ``size`` more bytes fit the disk budget and leave the file system its reserve."""
    if usage.disk_used + size > budget.disk_bytes:
        return Verdict(
            False,
            f"disk budget reached: {_mib(usage.disk_used)} used + {_mib(size)} > "
            f"{_mib(budget.disk_bytes)}",
        )
    if usage.disk_free - size < budget.min_free_disk_bytes:
        return Verdict(
            False,
            f"disk nearly full: {_mib(usage.disk_free)} free, keeping "
            f"{_mib(budget.min_free_disk_bytes)} in reserve",
        )
    return ADMITTED


def admit(demand: Demand, usage: NodeUsage, budget: NodeBudget) -> Verdict:
    """Whether the node can take the agent; the reason in words when it cannot."""
    if usage.agents >= budget.max_agents:
        return Verdict(False, f"hosting {usage.agents} agents, the most this node takes")
    if usage.memory_reserved + demand.memory_bytes > budget.memory_bytes:
        return Verdict(
            False,
            f"memory budget reached: {_mib(usage.memory_reserved)} reserved + "
            f"{_mib(demand.memory_bytes)} > {_mib(budget.memory_bytes)}",
        )
    if demand.lineage_bytes > budget.agent_storage_bytes:
        return Verdict(
            False,
            f"the agent's lineage ({_mib(demand.lineage_bytes)}) exceeds the per-agent "
            f"storage cap of {_mib(budget.agent_storage_bytes)}",
        )
    return may_store(demand.disk_bytes, usage, budget)


def measure_disk(paths: list[Path], directory: Path) -> tuple[int, int]:
    """``(bytes the files at paths take, bytes free for us on directory's file system)``."""
    used = 0
    for path in paths:
        try:
            used += os.stat(path).st_size
        except OSError:
            continue
    try:
        st = os.statvfs(directory)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = 0
    return used, free


def admit_offer(
    check: ResourceCheck,
    manifest: Manifest,
    incoming_bytes: int,
    held_bytes: int = 0,
) -> Verdict:
    """:func:`admit` for an incoming migration: its memory cap, the bytes the offer would
    store (custody, checkpoint, module, manifest), and its whole lineage here afterwards."""
    declared = manifest.resource_limits.max_memory_bytes
    memory = min(check.default_memory_cap, declared) if declared else check.default_memory_cap
    demand = Demand(
        memory_bytes=memory,
        disk_bytes=incoming_bytes,
        lineage_bytes=held_bytes + incoming_bytes,
    )
    return admit(demand, check.usage, check.budget)
