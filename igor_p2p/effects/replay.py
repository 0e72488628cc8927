"""Offline replay: re-execute an agent's recorded ticks and check every resulting state.

``igor checkpoint replay DID [--from TICK]`` walks the lineage from a checkpoint and, for each
next checkpoint C, re-runs the ticks C covers in the sandbox, answering every observation from
the tick-input record before C (and every http response and payment receipt from the OUTCOME
record its observation names), then compares the agent's snapshot with C's state. Nothing is
sent, paid or read from the node: the lineage, the module and the manifest are all it needs.

One instance runs on across checkpoints of one epoch (as on the node); it is rebuilt from the
checkpoint at every custody record (the node that took over built a fresh one) and after a gap,
and an interval that diverges is tried once more from a fresh instance before it is reported.

An interval is **verified** (the states match), a **mismatch** (evidence: the agent, its module
and its recorded inputs do not give the state the owner signed — a tampered input, a lying node
or a nondeterministic agent), or **unverifiable** (its inputs were not kept: a compacted gap, a
HANDOFF or FINAL snapshot whose ticks observed something, or more observations than a record
keeps). What ``agent_init`` and ``agent_resume`` observe is not recorded; during replay they see
zeros.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from igor_p2p.agent.effects import HttpRequest, HttpResult, PaymentRequest, PaymentResult
from igor_p2p.agent.environment import LogStream, ResumeReason
from igor_p2p.agent.errors import OutOfFuel, SandboxError
from igor_p2p.agent.manifest import Manifest
from igor_p2p.agent.sandbox import AgentInstance, CompiledModule, Sandbox
from igor_p2p.effects.observations import (
    BadObservations,
    Obs,
    Observation,
    decode_log,
    unpack_effect,
)
from igor_p2p.effects.recording import unpack_i32, unpack_i64
from igor_p2p.errors import IgorError
from igor_p2p.lineage.effect import EffectPhase, EffectRecord
from igor_p2p.lineage.entries import Checkpoint, LineageEntry
from igor_p2p.lineage.envelope import CheckpointKind
from igor_p2p.lineage.inputs import TickInputs
from igor_p2p.runtime.metering import MAX_TICK_FUEL

GENESIS_KINDS = (CheckpointKind.GENESIS, CheckpointKind.IMPORT)


class Verdict(enum.StrEnum):
    VERIFIED = "verified"
    MISMATCH = "mismatch"
    UNVERIFIABLE = "unverifiable"


@dataclass(frozen=True)
class Interval:
    """One checkpoint-to-checkpoint stretch of ticks."""

    epoch: int
    first_tick: int
    last_tick: int
    checkpoint: bytes
    """Digest of the checkpoint whose state was checked."""
    verdict: Verdict
    detail: str = ""
    expected: bytes = b""
    """SHA-256 of the state the checkpoint holds."""
    actual: bytes = b""
    """SHA-256 of the state the replay computed (empty when it did not get that far)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "first_tick": self.first_tick,
            "last_tick": self.last_tick,
            "checkpoint": self.checkpoint.hex(),
            "verdict": self.verdict.value,
            "detail": self.detail,
            "expected": self.expected.hex(),
            "actual": self.actual.hex(),
        }


@dataclass
class ReplayReport:
    agent: str
    start_tick: int = 0
    intervals: list[Interval] = field(default_factory=list)
    fuel_used: int = 0
    """Fuel the replayed ticks burned together."""

    @property
    def ticks_verified(self) -> int:
        return sum(
            i.last_tick - i.first_tick + 1
            for i in self.intervals
            if i.verdict is Verdict.VERIFIED and i.last_tick >= i.first_tick
        )

    @property
    def mismatches(self) -> list[Interval]:
        return [i for i in self.intervals if i.verdict is Verdict.MISMATCH]

    @property
    def unverifiable(self) -> list[Interval]:
        return [i for i in self.intervals if i.verdict is Verdict.UNVERIFIABLE]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "ok": self.ok,
            "start_tick": self.start_tick,
            "ticks_verified": self.ticks_verified,
            "mismatches": len(self.mismatches),
            "unverifiable": len(self.unverifiable),
            "intervals": [i.to_json() for i in self.intervals],
        }


class Divergence(Exception):
    """The replayed agent asked for something its record does not hold."""


class Unrecorded(Divergence):
    """The agent observed something in a tick whose observations were not kept."""


class ReplayEnvironment:
    """A :class:`~igor_p2p.agent.environment.HostEnvironment` that answers from a record."""

    def __init__(self, outcomes: dict[bytes, EffectRecord], intents: dict[bytes, EffectRecord]):
        self.outcomes = outcomes
        self.intents = intents
        self.queue: list[Observation] = []
        self.in_tick = False
        self.recorded = True
        self.failure: Divergence | None = None

    def start(self, observations: list[Observation], recorded: bool) -> None:
        self.queue = list(observations)
        self.in_tick = True
        self.recorded = recorded
        self.failure = None

    def finish(self) -> None:
        self.in_tick = False
        if self.failure is None and self.queue:
            self.failure = Divergence(f"{len(self.queue)} recorded observations were not asked for")

    def _next(self, kind: Obs) -> bytes | None:
        if not self.in_tick:
            return None
        if not self.queue:
            error: Divergence = (
                Divergence(f"the agent asked for {kind.name}, the record has nothing more")
                if self.recorded
                else Unrecorded(f"the agent asked for {kind.name}; these ticks were not recorded")
            )
            self.failure = self.failure or error
            raise error
        found, payload = self.queue.pop(0)
        if found is not kind:
            error = Divergence(f"the agent asked for {kind.name}, the record has {found.name}")
            self.failure = self.failure or error
            raise error
        return payload

    def now_ns(self) -> int:
        payload = self._next(Obs.CLOCK)
        return 0 if payload is None else unpack_i64(payload)

    def random_bytes(self, n: int) -> bytes:
        payload = self._next(Obs.RAND)
        if payload is None:
            return bytes(n)
        if len(payload) != n:
            error = Divergence(
                f"the agent asked for {n} random bytes, the record has {len(payload)}"
            )
            self.failure = self.failure or error
            raise error
        return payload

    def log(self, message: bytes, stream: LogStream = LogStream.LOG) -> None:
        return None

    def budget_remaining(self) -> int:
        payload = self._next(Obs.BUDGET)
        return 0 if payload is None else unpack_i64(payload)

    def resume_reason(self) -> ResumeReason:
        payload = self._next(Obs.RESUME_REASON)
        return ResumeReason(0 if payload is None else unpack_i32(payload))

    def resume_gap_ns(self) -> int:
        payload = self._next(Obs.RESUME_GAP)
        return 0 if payload is None else unpack_i64(payload)

    def request_migration(self, hint: bytes) -> None:
        return None

    def node_price(self) -> int:
        payload = self._next(Obs.PRICE)
        return 0 if payload is None else unpack_i64(payload)

    def receipt_count(self) -> int:
        payload = self._next(Obs.RECEIPT_COUNT)
        return 0 if payload is None else unpack_i32(payload)

    def receipt(self, index: int) -> bytes | None:
        payload = self._next(Obs.RECEIPT)
        if not payload or payload[:1] == b"\x00":
            return None
        return payload[1:]

    def _effect(self, kind: Obs, digest: bytes) -> tuple[int, int, bytes, EffectRecord | None]:
        payload = self._next(kind)
        if payload is None:
            return -1, 0, b"", None
        code, hint, key = unpack_effect(payload)
        if not key:
            return code, hint, key, None
        intent = self.intents.get(key)
        if intent is None or intent.request != digest:
            error = Divergence(f"the agent's {kind.name} request differs from the recorded one")
            self.failure = self.failure or error
            raise error
        return code, hint, key, self.outcomes.get(key)

    def http_request(self, request: HttpRequest) -> HttpResult:
        code, hint, key, outcome = self._effect(Obs.HTTP, request.digest())
        body = outcome.result if outcome is not None and code > 0 else b""
        return HttpResult(code, body, hint, key)

    def wallet_pay(self, request: PaymentRequest) -> PaymentResult:
        code, hint, key, outcome = self._effect(Obs.PAY, request.digest())
        receipt = outcome.result if outcome is not None and code == 0 else b""
        return PaymentResult(code, receipt, hint, key)

    def unresolved_effects(self) -> bytes:
        payload = self._next(Obs.UNRESOLVED)
        return struct.pack("<I", 0) if payload is None else payload


def _digest(state: bytes) -> bytes:
    return hashlib.sha256(state).digest()


class ReplayOverBudget(IgorError):
    """The replay needed more fuel than its caller allowed (``replay_lineage(fuel_budget=)``)."""


class _Replayer:
    def __init__(
        self,
        sandbox: Sandbox,
        module: CompiledModule,
        manifest: Manifest,
        entries: Sequence[LineageEntry],
        fuel_budget: int | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.module = module
        self.manifest = manifest
        self.fuel_left = fuel_budget
        """Fuel the remaining ticks may burn together (None: each tick up to MAX_TICK_FUEL)."""
        self.fuel_used = 0
        effects = [e for e in entries if isinstance(e, EffectRecord)]
        self.env = ReplayEnvironment(
            {e.key: e for e in effects if e.phase is EffectPhase.OUTCOME},
            {e.key: e for e in effects if e.phase is EffectPhase.INTENT},
        )
        self.instance: AgentInstance | None = None

    def fresh(self, base: Checkpoint) -> AgentInstance:
        self.close()
        instance = self.sandbox.instantiate(self.module, self.manifest, self.env)  # type: ignore[arg-type]
        if base.kind not in GENESIS_KINDS:
            instance.resume(base.state)
        self.instance = instance
        return instance

    def close(self) -> None:
        if self.instance is not None:
            self.instance.close()
            self.instance = None

    def run(
        self, base: Checkpoint, target: Checkpoint, log: dict[int, list[Observation]] | None
    ) -> tuple[Verdict, str, bytes]:
        """Ticks ``base.tick+1 … target.tick`` in the current instance (built from ``base`` if
        there is none); the verdict, why, and the digest of the state reached."""
        instance = self.instance or self.fresh(base)
        for tick in range(base.tick + 1, target.tick + 1):
            self.env.start(log.get(tick, []) if log is not None else [], log is not None)
            fuel = MAX_TICK_FUEL if self.fuel_left is None else min(MAX_TICK_FUEL, self.fuel_left)
            if fuel < 1:
                self.env.finish()
                self.close()
                raise ReplayOverBudget(f"the fuel allowed ran out before tick {tick}")
            try:
                used = instance.tick(fuel).fuel_used
                self.fuel_used += used
                if self.fuel_left is not None:
                    self.fuel_left -= used
            except SandboxError as exc:
                if isinstance(exc, OutOfFuel) and fuel < MAX_TICK_FUEL:
                    self.env.finish()
                    self.close()
                    raise ReplayOverBudget(
                        f"tick {tick} needed more than the {fuel} fuel left"
                    ) from None
                failure = self.env.failure
                self.env.finish()
                self.close()
                if isinstance(failure, Unrecorded):
                    return Verdict.UNVERIFIABLE, str(failure), b""
                why = str(failure) if failure is not None else f"{type(exc).__name__}: {exc}"
                return Verdict.MISMATCH, f"tick {tick}: {why}", b""
            self.env.finish()
            if self.env.failure is not None:
                self.close()
                return Verdict.MISMATCH, f"tick {tick}: {self.env.failure}", b""
        try:
            state = instance.snapshot()
        except SandboxError as exc:
            self.close()
            return Verdict.MISMATCH, f"snapshot failed: {exc}", b""
        actual = _digest(state)
        if actual != _digest(target.state):
            return Verdict.MISMATCH, "the replayed state differs from the checkpoint's", actual
        return Verdict.VERIFIED, "", actual


def replay_lineage(
    entries: Sequence[LineageEntry],
    module: CompiledModule,
    manifest: Manifest,
    sandbox: Sandbox,
    *,
    from_tick: int | None = None,
    fuel_budget: int | None = None,
) -> ReplayReport:
    """Replay a chain-ordered (possibly compacted) lineage; see the module doc. With
    ``fuel_budget`` the ticks together may burn at most that much fuel, else
    :class:`ReplayOverBudget` (a node replaying for someone else bounds its own CPU)."""
    checkpoints = [e for e in entries if isinstance(e, Checkpoint)]
    report = ReplayReport(agent=checkpoints[0].agent if checkpoints else "")
    if not checkpoints:
        return report
    replayer = _Replayer(sandbox, module, manifest, entries, fuel_budget)
    start = 0
    if from_tick is not None:
        for index, ck in enumerate(checkpoints):
            if ck.tick <= from_tick:
                start = index
    base = checkpoints[start]
    report.start_tick = base.tick
    position = {e.digest(): i for i, e in enumerate(entries)}
    try:
        for target in checkpoints[start + 1 :]:
            report.intervals.append(_interval(replayer, entries, position, base, target))
            base = target
    finally:
        replayer.close()
        report.fuel_used = replayer.fuel_used
    return report


def _interval(
    replayer: _Replayer,
    entries: Sequence[LineageEntry],
    position: dict[bytes, int],
    base: Checkpoint,
    target: Checkpoint,
) -> Interval:
    between = entries[position[base.digest()] + 1 : position[target.digest()]]
    expected = _digest(target.state)

    def result(verdict: Verdict, detail: str = "", actual: bytes = b"") -> Interval:
        return Interval(
            target.epoch, base.tick + 1, target.tick, target.digest(), verdict, detail, expected,
            actual,
        )  # fmt: skip

    linked = [base, *between, target]
    if any(b.prev != a.digest() for a, b in pairwise(linked)):
        replayer.close()
        return result(Verdict.UNVERIFIABLE, "entries before it were compacted away")
    if any(not isinstance(e, EffectRecord | TickInputs) for e in between):
        replayer.close()  # a custody record: the next owner built a fresh instance
    if target.tick == base.tick:
        same = target.state == base.state
        if not same:
            replayer.close()
        return result(
            Verdict.VERIFIED if same else Verdict.MISMATCH,
            "" if same else "a snapshot without ticks changed the state",
            _digest(base.state),
        )
    inputs = between[-1] if between and isinstance(between[-1], TickInputs) else None
    log: dict[int, list[Observation]] | None = {}
    if inputs is not None:
        if not inputs.complete:
            replayer.close()
            return result(Verdict.UNVERIFIABLE, "its observations were more than a record keeps")
        if (inputs.first_tick, inputs.last_tick) != (base.tick + 1, target.tick):
            replayer.close()
            return result(Verdict.MISMATCH, "its tick-input record covers other ticks")
        try:
            log = decode_log(inputs.log)
        except BadObservations as exc:
            replayer.close()
            return result(Verdict.MISMATCH, f"its tick-input record does not decode: {exc}")
    elif target.kind is not CheckpointKind.TICK:
        log = None  # a HANDOFF or FINAL snapshot: its ticks' observations were not kept
    verdict, detail, actual = replayer.run(base, target, log)
    if verdict is Verdict.MISMATCH:
        replayer.close()  # once more from a fresh instance: the node may have rebuilt it
        verdict, detail, actual = replayer.run(base, target, log)
    if verdict is not Verdict.VERIFIED:
        replayer.close()
    return result(verdict, detail, actual)
