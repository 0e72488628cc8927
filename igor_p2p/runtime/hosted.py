"""One agent hosted by this node: its sandbox instance, environment and committed head.

A :class:`HostedAgent` exists only while this node's durable authority record says
ACTIVE_OWNER (or while a handoff holds it quiesced). ``head`` is always the last *committed*
checkpoint; ``tick`` and ``budget`` may run ahead of it between commits
(``checkpoint_every > 1``), and are rolled back to ``head`` when the instance is rebuilt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from igor_p2p.agent.environment import LogStream, ResumeReason
from igor_p2p.agent.manifest import Manifest
from igor_p2p.agent.sandbox import AgentInstance, CompiledModule, Sandbox
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.logs import get_logger
from igor_p2p.runtime.agent_logs import AgentLogBook
from igor_p2p.runtime.clock import NodeClock
from igor_p2p.store.records import AuthorityRecord

log = get_logger(__name__)

MAX_AGENT_LOG_LINE = 4096
"""Agent log lines are truncated to this many bytes in the node's log."""


@dataclass
class AgentEnvironment:
    """The live :class:`~igor_p2p.agent.environment.HostEnvironment` of one hosted agent."""

    did: str
    clock: NodeClock
    budget: int
    reason: ResumeReason = ResumeReason.FRESH
    gap_ns: int = 0
    on_migration_request: Callable[[str, bytes], None] | None = None
    migration_requests: list[bytes] = field(default_factory=list)
    logbook: AgentLogBook | None = None
    """Where the agent's log lines are kept for ``igor agent logs`` (the node's book)."""
    price_per_second: int = 0
    """``node_price``: the agent's price in Go Igor's µ¢ per second."""
    receipts: tuple[bytes, ...] = ()
    """``wallet_receipt``: execution receipts in Go Igor's layout (built when hosted)."""

    def now_ns(self) -> int:
        return self.clock.wall_ns()

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, message: bytes, stream: LogStream = LogStream.LOG) -> None:
        text = message[:MAX_AGENT_LOG_LINE].decode("utf-8", errors="replace")
        log.info("agent %s: %s", stream.value, text, agent=self.did)
        if self.logbook is not None:
            self.logbook.append(self.did, stream.value, message)

    def budget_remaining(self) -> int:
        return self.budget

    def resume_reason(self) -> ResumeReason:
        return self.reason

    def resume_gap_ns(self) -> int:
        return self.gap_ns

    def request_migration(self, hint: bytes) -> None:
        self.migration_requests.append(hint)
        if self.on_migration_request is not None:
            self.on_migration_request(self.did, hint)

    def node_price(self) -> int:
        return self.price_per_second

    def receipt_count(self) -> int:
        return len(self.receipts)

    def receipt(self, index: int) -> bytes | None:
        return self.receipts[index] if 0 <= index < len(self.receipts) else None


@dataclass
class HostedAgent:
    """Runtime state of one agent this node owns."""

    did: str
    compiled: CompiledModule
    manifest: Manifest
    env: AgentEnvironment
    record: AuthorityRecord
    """The durable authority record as last committed."""
    head: Checkpoint
    """The last committed checkpoint."""
    price: int
    instance: AgentInstance | None = None
    tick: int = 0
    budget: int = 0
    ticks_since_commit: int = 0
    more_work: bool = False
    paused: bool = False

    @property
    def epoch(self) -> int:
        return self.record.epoch

    def start_instance(self, sandbox: Sandbox) -> None:
        """(Re)build the sandbox instance from the committed head; uncommitted ticks are undone."""
        if self.instance is not None:
            self.instance.close()
            self.instance = None
        self.tick = self.head.tick
        self.budget = self.head.budget
        self.env.budget = self.budget
        self.ticks_since_commit = 0
        instance = sandbox.instantiate(self.compiled, self.manifest, self.env)
        try:
            if self.head.kind is not CheckpointKind.GENESIS:
                instance.resume(self.head.state)
        except BaseException:
            instance.close()
            raise
        self.instance = instance

    def close(self) -> None:
        if self.instance is not None:
            self.instance.close()
            self.instance = None

    def checkpoint(
        self, key: Keypair, *, kind: CheckpointKind, state: bytes, wall_ns: int
    ) -> Checkpoint:
        """A new checkpoint continuing the committed chain, signed by this node (the owner)."""
        assert self.record.head is not None, "a hosted agent always has a head"
        return UnsignedCheckpoint(
            agent=self.did,
            epoch=self.record.epoch,
            tick=self.tick,
            prev=self.record.head,
            kind=kind,
            wasm_hash=self.head.wasm_hash,
            manifest_hash=self.head.manifest_hash,
            budget=self.budget,
            price=self.price,
            wall_ns=wall_ns,
            state=state,
            owner=key.public_key,
        ).sign(key)

    def committed(self, record: AuthorityRecord, head: Checkpoint | None) -> None:
        """Adopt a record (and checkpoint) that the store has made durable."""
        self.record = record
        if head is not None:
            self.head = head
            self.ticks_since_commit = 0

    def with_record(self, **changes: object) -> AuthorityRecord:
        return replace(self.record, **changes)  # type: ignore[arg-type]
