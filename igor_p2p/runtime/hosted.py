"""One agent hosted by this node: its sandbox instance, environment and committed head.

A :class:`HostedAgent` exists only while this node's authority gate says it ticks the agent (or
while a handoff or halt holds it stopped). ``head`` is the last *committed* checkpoint and
``tip`` the digest of the last committed lineage entry (the checkpoint, or the certificate that
started the epoch); ``tick`` and ``budget`` may run ahead of ``head`` between commits
(``checkpoint_every > 1``), and are rolled back to it when the instance is rebuilt.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from igor_p2p.agent.effects import (
    HttpCode,
    HttpRequest,
    HttpResult,
    PayCode,
    PaymentRequest,
    PaymentResult,
)
from igor_p2p.agent.environment import LogStream, ResumeReason
from igor_p2p.agent.manifest import Manifest
from igor_p2p.agent.sandbox import AgentInstance, CompiledModule, Sandbox, TickResult
from igor_p2p.effects.observations import InputRecorder
from igor_p2p.effects.recording import RecordingEnvironment
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.inputs import TickInputs, UnsignedTickInputs
from igor_p2p.logs import get_logger
from igor_p2p.net.ratelimit import TokenBucket
from igor_p2p.runtime.agent_logs import AgentLogBook
from igor_p2p.runtime.clock import NodeClock

log = get_logger(__name__)

MAX_AGENT_LOG_LINE = 4096
"""Agent log lines are truncated to this many bytes in the node's log."""
MAX_AGENT_LOG_BYTES_PER_TICK = 64 * 1024
"""One agent writes at most this much to the node log per tick; the rest is dropped."""
NODE_LOG_BYTES_PER_S = 256 * 1024
NODE_LOG_BURST_BYTES = 1024 * 1024
"""All agents of a node together write at most this rate (and burst) to the node log."""


class NodeLogBudget:
    """The node-wide cap on agent log output: a byte token bucket shared by every agent
    (thread-safe: ticks run in worker threads)."""

    def __init__(
        self,
        rate_bytes_per_s: float = NODE_LOG_BYTES_PER_S,
        burst_bytes: float = NODE_LOG_BURST_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = TokenBucket(rate_bytes_per_s, burst_bytes)
        self._clock = clock
        self._lock = threading.Lock()
        self.dropped_bytes = 0

    def take(self, size: int) -> bool:
        with self._lock:
            if self._bucket.take(self._clock(), size):
                return True
            self.dropped_bytes += size
            return False


class Effects(Protocol):
    """The agent's effect journal (``igor_p2p.effects.journal.AgentEffects``)."""

    def http_request(self, request: HttpRequest) -> HttpResult: ...

    def wallet_pay(self, request: PaymentRequest) -> PaymentResult: ...

    def unresolved_effects(self) -> bytes: ...


NO_UNRESOLVED_EFFECTS = b"\x00\x00\x00\x00"


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
    node_log: NodeLogBudget | None = None
    """The node-wide log cap (the scheduler sets it when it adds the agent)."""
    logged_bytes: int = 0
    """Bytes written to the node log since :meth:`take_log_usage` (charged by the scheduler)."""
    dropped_bytes: int = 0
    """Bytes of log output dropped by the caps since :meth:`take_log_usage` (not charged)."""
    logbook: AgentLogBook | None = None
    """Where the agent's log lines are kept for ``igor agent logs`` (the node's book)."""
    price_per_second: int = 0
    """``node_price``: the agent's price in Go Igor's µ¢ per second."""
    receipts: tuple[bytes, ...] = ()
    """``wallet_receipt``: execution receipts in Go Igor's layout (built when hosted)."""
    effects: Effects | None = None
    """The effect journal (http, payments); None: no effect may run (a probe, an old node)."""

    def now_ns(self) -> int:
        return self.clock.wall_ns()

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, message: bytes, stream: LogStream = LogStream.LOG) -> None:
        line = message[:MAX_AGENT_LOG_LINE]
        if self.logged_bytes + len(line) > MAX_AGENT_LOG_BYTES_PER_TICK or (
            self.node_log is not None and not self.node_log.take(len(line))
        ):
            self.dropped_bytes += len(message)
            return
        self.logged_bytes += len(line)
        text = line.decode("utf-8", errors="replace")
        log.info("agent %s: %s", stream.value, text, agent=self.did)
        if self.logbook is not None:
            self.logbook.append(self.did, stream.value, message)

    def take_log_usage(self) -> tuple[int, int]:
        """``(written, dropped)`` log bytes since the last call; both counters restart at 0."""
        usage = (self.logged_bytes, self.dropped_bytes)
        self.logged_bytes = self.dropped_bytes = 0
        return usage

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

    def http_request(self, request: HttpRequest) -> HttpResult:
        if self.effects is None:
            return HttpResult(HttpCode.NOT_OWNER)
        return self.effects.http_request(request)

    def wallet_pay(self, request: PaymentRequest) -> PaymentResult:
        if self.effects is None:
            return PaymentResult(PayCode.NOT_OWNER)
        return self.effects.wallet_pay(request)

    def unresolved_effects(self) -> bytes:
        if self.effects is None:
            return NO_UNRESOLVED_EFFECTS
        return self.effects.unresolved_effects()


@dataclass
class HostedAgent:
    """Runtime state of one agent this node owns."""

    did: str
    compiled: CompiledModule
    manifest: Manifest
    env: AgentEnvironment
    epoch: int
    """The epoch this node ticks (certified in this incarnation)."""
    tip: bytes
    """Digest of the last committed lineage entry (what the next checkpoint names as prev)."""
    head: Checkpoint
    """The last committed checkpoint."""
    price: int
    instance: AgentInstance | None = None
    tick: int = 0
    budget: int = 0
    ticks_since_commit: int = 0
    more_work: bool = False
    paused: bool = False
    stored_bytes: int | None = None
    """Bytes of this agent's lineage in the store (None until the scheduler measured it)."""
    effect_charges: int = 0
    """What effects recorded after ``head`` cost (already taken from ``budget``; never undone)."""
    effects_pending: bool = False
    """An effect ran since the last commit: the tick is checkpointed at once."""
    inputs: InputRecorder = field(default_factory=InputRecorder)
    """What the ticks since the last commit observed (for replay)."""

    def start_instance(self, sandbox: Sandbox) -> None:
        """(Re)build the sandbox instance from the committed head; uncommitted ticks are undone
        (their effects are not: what they cost stays charged)."""
        if self.instance is not None:
            self.instance.close()
            self.instance = None
        self.tick = self.head.tick
        self.budget = max(0, self.head.budget - self.effect_charges)
        self.env.budget = self.budget
        self.ticks_since_commit = 0
        self.inputs.discard()
        env = RecordingEnvironment(self.env, self.inputs)
        instance = sandbox.instantiate(self.compiled, self.manifest, env)  # type: ignore[arg-type]
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

    def run_tick(self, fuel: int) -> TickResult:
        """``agent_tick`` with what it observes recorded (blocking: a worker thread)."""
        assert self.instance is not None
        self.inputs.begin(self.tick + 1)
        try:
            return self.instance.tick(fuel)
        finally:
            self.inputs.end()

    def take_inputs(self, key: Keypair) -> TickInputs | None:
        """The tick-input record of the ticks since ``head`` (None when they observed nothing),
        signed by this node; the checkpoint of ``self.tick`` must follow it."""
        taken = self.inputs.take(self.head.tick, self.tick)
        if taken is None or self.tick <= self.head.tick:
            return None
        log, complete = taken
        return UnsignedTickInputs(
            agent=self.did,
            epoch=self.epoch,
            owner=key.public_key,
            prev=self.tip,
            first_tick=self.head.tick + 1,
            last_tick=self.tick,
            complete=int(complete),
            log=log,
        ).sign(key)

    def checkpoint(
        self,
        key: Keypair,
        *,
        kind: CheckpointKind,
        state: bytes,
        wall_ns: int,
        inputs: TickInputs | None = None,
    ) -> Checkpoint:
        """A new checkpoint continuing the committed chain (after ``inputs``, when given),
        signed by this node (the owner). Without ``inputs``, what the ticks since ``head``
        observed is dropped (a HANDOFF or FINAL snapshot: not replayable from here)."""
        if inputs is None:
            self.inputs.discard()
        return UnsignedCheckpoint(
            agent=self.did,
            epoch=self.epoch,
            tick=self.tick,
            prev=inputs.digest() if inputs is not None else self.tip,
            kind=kind,
            wasm_hash=self.head.wasm_hash,
            manifest_hash=self.head.manifest_hash,
            budget=self.budget,
            price=self.price,
            wall_ns=wall_ns,
            state=state,
            owner=key.public_key,
        ).sign(key)

    def committed(self, head: Checkpoint) -> None:
        """Adopt a checkpoint the store has made durable."""
        self.head = head
        self.tip = head.digest()
        self.ticks_since_commit = 0
        self.effect_charges = 0
        self.effects_pending = False
