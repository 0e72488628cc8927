"""Write operations. A sequence of them is applied in ONE transaction by ``Store.apply``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from igor_p2p.store.records import AuthorityRecord


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A lineage entry to append; ``digest`` must be sha256(blob)."""

    digest: bytes
    prev: bytes
    kind: str
    epoch: int
    tick: int
    blob: bytes


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Append entries to the agent's chain; the first must link to the current head."""

    agent: str
    entries: Sequence[NewEntry]


@dataclass(frozen=True, slots=True)
class PutAuthority:
    """Insert or replace the agent's authority record (epoch ≥ fence, head = last row)."""

    record: AuthorityRecord


@dataclass(frozen=True, slots=True)
class RaiseFence:
    """Raise the agent's fence to ``epoch``; a lower or equal epoch leaves it unchanged."""

    agent: str
    epoch: int
    evidence: str


@dataclass(frozen=True, slots=True)
class PutModule:
    """Store wasm bytes under sha256(wasm) (deduplicated)."""

    wasm: bytes


@dataclass(frozen=True, slots=True)
class PutManifest:
    """Store manifest bytes under sha256(data) (deduplicated)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PutTombstone:
    """Record that the agent left this node at ``epoch`` for ``peer`` (a lower epoch is ignored)."""

    agent: str
    epoch: int
    peer: str


@dataclass(frozen=True, slots=True)
class DeleteLineage:
    """Discard the local lineage of an aborted HANDOFF_PENDING copy that never became owner."""

    agent: str


@dataclass(frozen=True, slots=True)
class MarkRecoveryRequired:
    """Put an agent that has an authority record into RECOVERY_REQUIRED; deletes nothing."""

    agent: str
    reason: str


Op = (
    AppendEntries
    | PutAuthority
    | RaiseFence
    | PutModule
    | PutManifest
    | PutTombstone
    | DeleteLineage
    | MarkRecoveryRequired
)
