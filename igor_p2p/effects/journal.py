"""The effect journal of one hosted agent: every http request and payment, recorded in the
lineage before it starts and after it ends, and only while this node owns the agent.

Called from the worker thread that runs the agent's tick (``igor.http_request`` and
``igor.wallet_pay`` block it); each store append and each network call is a blocking call into
the trio thread (``trio.from_thread.run``, in the context of the task that started the tick, so
a cancellation of that task — the node stopping — reaches the call). For one effect:

1. the checks that need no side effect (Go's order for payments; the URL, host allowlist and
   resolved addresses for http) — a refusal records nothing;
2. **the gate**: the agent must not be quiesced (a handoff or halt has begun: ``NOT_OWNER``)
   and the INTENT must be appended through the store's owner fence (refused unless this node
   is ACTIVE_OWNER at exactly this epoch: ``NOT_OWNER``, nothing happens);
3. the effect itself, bounded by its timeout and by what is left of the tick's watchdog, so a
   handoff waiting for the tick waits at most that long;
4. the OUTCOME (status, result, cost), and the charge to the budget.

A tick that ran an effect is always checkpointed at its end (the scheduler forces it), so the
agent's saved state catches up with its effects at once. If the node stops between an INTENT and
the checkpoint after it, the agent resumes from a state that does not know the effect: on load,
:func:`scan_effects` finds those effects (``igor.effect_unresolved`` lists them) and charges
them to the budget (an unknown outcome at its reserved cost). The runtime never repeats one: when
the agent asks for the same request again (same digest), it gets the recorded outcome, or
``OUTCOME_UNKNOWN`` — the request is not sent again.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from igor_p2p.agent.effect_policy import HttpPolicy, PaymentPolicy
from igor_p2p.agent.effects import (
    HttpCode,
    HttpRequest,
    HttpResult,
    PayCode,
    PaymentRequest,
    PaymentResult,
)
from igor_p2p.effects.fees import http_fee, payment_fee
from igor_p2p.effects.http import HttpClient, Resolver, system_resolve
from igor_p2p.effects.receipt import PaymentReceipt, receipt_size
from igor_p2p.effects.settlement import Settlement, SettlementRequest, SettlementResult
from igor_p2p.errors import IgorError
from igor_p2p.lineage.effect import (
    KEY_BYTES,
    MAX_TARGET_BYTES,
    EffectKind,
    EffectPhase,
    EffectRecord,
    UnsignedEffectRecord,
)
from igor_p2p.lineage.entries import Checkpoint, LineageEntry
from igor_p2p.lineage.identity import Keypair, public_key_from_did
from igor_p2p.logs import get_logger
from igor_p2p.store.errors import StoreRefused

if TYPE_CHECKING:
    from igor_p2p.runtime.hosted import HostedAgent

log = get_logger(__name__)

WATCHDOG_MARGIN_S = 1.0
"""An effect ends at least this long before the tick's watchdog would stop the tick."""
KEY_DOMAIN = b"igor-p2p/effect-key/v1\x00"


class OwnedAppend(Protocol):
    """The store's owner-fenced append (``AppendTicks``) for effect records."""

    async def append_owned(self, agent: str, epoch: int, entries: Sequence[LineageEntry]) -> None:
        """Durable on return; raises ``StoreRefused`` unless ACTIVE_OWNER at ``epoch``."""
        ...


@dataclass
class EffectServices:
    """What every agent's journal on one node shares."""

    key: Keypair
    sink: OwnedAppend
    settlement: Settlement
    wall_ns: object = time.time_ns
    resolve: Resolver = system_resolve
    on_entry: object = None
    """Called (on the trio thread) with (agent, entry, charge) after each durable append;
    ``charge`` is what the entry adds to what the agent was charged: an INTENT its reserve, an
    OUTCOME its cost minus that reserve (so they add up to the effect's cost)."""


@dataclass
class Unresolved:
    """An effect recorded after the agent's saved state: the agent does not know its outcome."""

    intent: EffectRecord
    outcome: EffectRecord | None = None
    adopted: bool = False
    """A later identical request was answered with this effect's outcome."""

    def encode(self) -> bytes:
        status = 0 if self.outcome is None else 1
        return struct.pack("<BB", int(self.intent.effect), status) + (
            self.intent.key + self.intent.request
        )


@dataclass
class EffectScan:
    unresolved: list[Unresolved] = field(default_factory=list)
    charged_after_head: int = 0
    """What the effects after the last checkpoint cost (unknown outcomes at their reserve)."""
    effects_in_epoch: dict[int, int] = field(default_factory=dict)


def scan_effects(entries: Sequence[LineageEntry]) -> EffectScan:
    """The effects of a chain-ordered lineage that the agent's last checkpoint does not cover."""
    scan = EffectScan()
    open_: dict[bytes, Unresolved] = {}
    after_head: list[Unresolved] = []
    for entry in entries:
        if isinstance(entry, Checkpoint):
            for key in [k for k, u in open_.items() if u.intent.tick <= entry.tick]:
                del open_[key]
            after_head = []
        elif isinstance(entry, EffectRecord):
            if entry.phase is EffectPhase.INTENT:
                item = Unresolved(entry)
                open_[entry.key] = item
                after_head.append(item)
                scan.effects_in_epoch[entry.epoch] = scan.effects_in_epoch.get(entry.epoch, 0) + 1
            elif entry.key in open_:
                open_[entry.key].outcome = entry
    scan.unresolved = list(open_.values())
    scan.charged_after_head = sum(
        (u.outcome.charge if u.outcome is not None else u.intent.charge) for u in after_head
    )
    return scan


def effect_key(agent: str, epoch: int, seq: int) -> bytes:
    """The idempotency key of the ``seq``-th effect of ``epoch`` (unique in the lineage)."""
    digest = hashlib.sha256(KEY_DOMAIN + agent.encode() + struct.pack("<QQ", epoch, seq))
    return digest.digest()[:KEY_BYTES]


class _NoEffect(Exception):
    """The INTENT could not be appended: nothing happened."""

    def __init__(self, refused: bool) -> None:
        super().__init__("refused" if refused else "failed")
        self.refused = refused


class AgentEffects:
    """The effects of one hosted agent in one epoch (see the module doc)."""

    def __init__(
        self,
        agent: HostedAgent,
        services: EffectServices,
        *,
        http: HttpPolicy | None,
        payment: PaymentPolicy | None,
        custody: bytes,
        unresolved: Sequence[Unresolved] = (),
        first_seq: int = 0,
    ) -> None:
        self.agent = agent
        self.services = services
        self.http_policy = http
        self.payment_policy = payment
        self.custody = custody
        """Digest of the entry that started this epoch (named in payment receipts)."""
        self.unresolved = list(unresolved)
        self._listing = struct.pack("<I", len(self.unresolved)) + b"".join(
            u.encode() for u in self.unresolved
        )
        self._seq = first_seq
        self._reserved: dict[bytes, int] = {}
        self._too_big: dict[bytes, HttpResult] = {}
        """Responses that did not fit the guest's buffer, by request digest: Go's SDK asks again
        with a larger buffer and gets them without a second request."""

    # ---------------------------------------------------------------- worker thread

    def unresolved_effects(self) -> bytes:
        return self._listing

    def http_request(self, request: HttpRequest) -> HttpResult:
        policy = self.http_policy
        if policy is None:
            return HttpResult(HttpCode.NOT_ALLOWED)
        digest = request.digest()
        earlier = self._adopt(EffectKind.HTTP, digest)
        if earlier is not None:
            return _http_result(earlier)
        retry = self._too_big.pop(digest, None)
        if retry is not None:
            return retry
        if not self._may_start():
            return HttpResult(HttpCode.NOT_OWNER)
        client = HttpClient(policy, self.services.resolve)
        timeout = self._time_left(policy.timeout_ms / 1000)
        if timeout <= 0:
            return HttpResult(HttpCode.TIMEOUT)
        prepared = self._call(client.prepare, request, timeout)
        if isinstance(prepared, HttpResult):
            return prepared
        if prepared is None:
            return HttpResult(HttpCode.NETWORK)
        sent = (
            len(request.body) + len(request.url) + sum(len(k) + len(v) for k, v in request.headers)
        )
        target = f"{request.method} {request.url}"[:MAX_TARGET_BYTES]
        try:
            key, reserve = self._intent(
                EffectKind.HTTP, digest, target, http_fee(sent, policy.max_response_bytes)
            )
        except _NoEffect as no:
            return HttpResult(HttpCode.NOT_OWNER if no.refused else HttpCode.NETWORK)
        result = self._call(client.perform, request, prepared, key.hex(), self._time_left(timeout))
        if not isinstance(result, HttpResult):  # the node is stopping: the outcome is unknown
            self._charge(reserve)
            return HttpResult(HttpCode.OUTCOME_UNKNOWN, key=key)
        body = result.body if result.code > 0 else b""
        stored = body or (
            struct.pack("<I", result.size_hint) if result.code == HttpCode.TOO_BIG else b""
        )
        charged = self._outcome(
            EffectKind.HTTP, key, digest, target, result.code, stored, http_fee(sent, len(body))
        )
        log.debug(
            "http effect", agent=self.agent.did, step=f"{target} → {result.code}, {charged} µ"
        )
        final = HttpResult(result.code, body, result.size_hint, key)
        if result.code > 0 and 4 + len(body) > request.resp_cap:
            self._too_big[digest] = final
        return final

    def wallet_pay(self, request: PaymentRequest) -> PaymentResult:
        digest = request.digest()
        earlier = self._adopt(EffectKind.PAYMENT, digest)
        if earlier is not None:
            return _pay_result(earlier)
        size = receipt_size(request.recipient, request.memo)
        if request.receipt_cap < 4 + size:
            return PaymentResult(PayCode.BUFFER_TOO_SMALL, size_hint=4 + size)
        fee = payment_fee(size)
        if self.agent.budget < request.amount + fee:
            return PaymentResult(PayCode.INSUFFICIENT)
        if not self._may_start():
            return PaymentResult(PayCode.NOT_OWNER)
        try:
            key, reserve = self._intent(
                EffectKind.PAYMENT, digest, request.recipient, request.amount + fee
            )
        except _NoEffect:
            return PaymentResult(PayCode.NOT_OWNER)
        settle = SettlementRequest(
            agent=self.agent.did,
            recipient=request.recipient,
            amount=request.amount,
            memo=request.memo + b" igor-idempotency-key=" + key.hex().encode(),
            key=key,
        )
        settled = self._call(self.services.settlement.pay, settle, failures=(Exception,))
        if not isinstance(settled, SettlementResult):  # unknown: stays reserved, never repeated
            self._charge(reserve)
            return PaymentResult(PayCode.OUTCOME_UNKNOWN, key=key)
        if not settled.settled:
            self._outcome(
                EffectKind.PAYMENT,
                key,
                digest,
                request.recipient,
                PayCode.SETTLEMENT_FAILED,
                b"",
                fee,
            )
            return PaymentResult(PayCode.SETTLEMENT_FAILED, key=key)
        receipt = (
            PaymentReceipt(
                amount=request.amount,
                timestamp=self.services.wall_ns(),  # type: ignore[operator]
                recipient=request.recipient,
                memo=request.memo,
                agent_key=public_key_from_did(self.agent.did),
                node=self.services.key.public_key,
                epoch=self.agent.epoch,
                custody=self.custody,
                key=key,
            )
            .signed(self.services.key)
            .encode()
        )
        self._outcome(
            EffectKind.PAYMENT, key, digest, request.recipient, 0, receipt, request.amount + fee
        )
        return PaymentResult(0, receipt, key=key)

    # ---------------------------------------------------------------- internals

    def _may_start(self) -> bool:
        return not self.agent.paused

    def _time_left(self, wanted_s: float) -> float:
        instance = self.agent.instance
        if instance is None:
            return 0.0
        left = instance.call_deadline - time.monotonic() - WATCHDOG_MARGIN_S
        return max(0.0, min(wanted_s, left))

    def _adopt(self, kind: EffectKind, digest: bytes) -> Unresolved | None:
        for item in self.unresolved:
            if not item.adopted and item.intent.effect is kind and item.intent.request == digest:
                item.adopted = True
                return item
        return None

    def _call(
        self, afn: object, *args: object, failures: tuple[type[BaseException], ...] = ()
    ) -> object:
        """``await afn(*args)`` on the trio thread; None if trio is gone or it was cancelled."""
        try:
            return trio.from_thread.run(afn, *args)  # type: ignore[arg-type]
        except (trio.Cancelled, trio.RunFinishedError, *failures):
            return None

    def _record(self, record: UnsignedEffectRecord, charge: int) -> EffectRecord:
        signed = record.sign(self.services.key)
        agent = self.agent

        async def append() -> None:
            await self.services.sink.append_owned(agent.did, agent.epoch, [signed])
            hook = self.services.on_entry
            if callable(hook):
                hook(agent, signed, charge)

        trio.from_thread.run(append)
        agent.tip = signed.digest()
        return signed

    def _unsigned(
        self, phase: EffectPhase, kind: EffectKind, key: bytes, digest: bytes, target: str,
        charge: int, status: int = 0, result: bytes = b"",
    ) -> UnsignedEffectRecord:  # fmt: skip
        agent = self.agent
        return UnsignedEffectRecord(
            agent=agent.did,
            epoch=agent.epoch,
            tick=agent.tick + 1,
            owner=self.services.key.public_key,
            prev=agent.tip,
            key=key,
            phase=phase,
            effect=kind,
            request=digest,
            target=target,
            charge=charge,
            status=int(status),
            result=result,
            wall_ns=self.services.wall_ns(),  # type: ignore[operator]
        )

    def _intent(self, kind: EffectKind, digest: bytes, target: str, cap: int) -> tuple[bytes, int]:
        key = effect_key(self.agent.did, self.agent.epoch, self._seq)
        reserve = min(cap, self.agent.budget)
        try:
            self._record(
                self._unsigned(EffectPhase.INTENT, kind, key, digest, target, reserve), reserve
            )
        except StoreRefused:
            raise _NoEffect(refused=True) from None
        except (IgorError, trio.Cancelled, trio.RunFinishedError):
            raise _NoEffect(refused=False) from None
        self._seq += 1
        self._reserved[key] = reserve
        self.agent.effects_pending = True
        return key, reserve

    def _outcome(
        self, kind: EffectKind, key: bytes, digest: bytes, target: str, status: int,
        result: bytes, cost: int,
    ) -> int:  # fmt: skip
        charge = min(cost, self.agent.budget)
        reserve = self._reserved.pop(key, 0)
        try:
            self._record(
                self._unsigned(
                    EffectPhase.OUTCOME, kind, key, digest, target, charge, status, result
                ),
                charge - reserve,
            )
        except (IgorError, trio.Cancelled, trio.RunFinishedError) as exc:
            # Not durable: the tick's checkpoint will not be either, so the agent resumes from
            # before the effect and finds it unresolved (its reserve charged on load).
            log.warning("effect outcome not recorded: %r", exc, agent=self.agent.did)
        return self._charge(charge)

    def _charge(self, micro: int) -> int:
        agent = self.agent
        paid = min(agent.budget, max(0, micro))
        agent.budget -= paid
        agent.env.budget = agent.budget
        agent.effect_charges += paid
        return paid


def _http_result(item: Unresolved) -> HttpResult:
    outcome = item.outcome
    key = item.intent.key
    if outcome is None:
        return HttpResult(HttpCode.OUTCOME_UNKNOWN, key=key)
    if outcome.status == HttpCode.TOO_BIG:
        hint = struct.unpack("<I", outcome.result[:4])[0] if len(outcome.result) >= 4 else 0
        return HttpResult(HttpCode.TOO_BIG, size_hint=hint, key=key)
    if outcome.status > 0:
        return HttpResult(outcome.status, outcome.result, key=key)
    return HttpResult(outcome.status, key=key)


def _pay_result(item: Unresolved) -> PaymentResult:
    outcome = item.outcome
    key = item.intent.key
    if outcome is None:
        return PaymentResult(PayCode.OUTCOME_UNKNOWN, key=key)
    if outcome.status == 0:
        return PaymentResult(0, outcome.result, key=key)
    return PaymentResult(outcome.status, key=key)
