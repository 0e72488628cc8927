"""A small deterministic simulator of one migration between two nodes.

A source session on node A, a target session on node B, a network that can drop, duplicate,
reorder and delay messages, and crashes that lose every write not yet durable (a restart
rebuilds the node from its last durable record only). ``Sim.step(choice)`` picks one enabled
step; :meth:`Sim.check` asserts the safety invariants; :meth:`Sim.heal` runs to quiescence
with no more faults, including the recover exchange.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import (
    Action,
    AuthorityMachine,
    AuthorityRecord,
    CheckClaims,
    ClaimsChecked,
    Launched,
    MigrationContext,
    MigrationPhase,
    PersistAuthority,
    PublishClaim,
    QueryStatus,
    RejectCode,
    Restarted,
    StartTicking,
    StopTicking,
)
from igor_p2p.handoff.messages import (
    Abort,
    Ack,
    Commit,
    Confirm,
    Message,
    Offer,
    StatusQuery,
    StatusReply,
    decode,
    encode,
)
from igor_p2p.handoff.resolution import resolve, status_query, status_reply
from igor_p2p.handoff.session import (
    ArmTimer,
    CommitHandoffCheckpoint,
    Durable,
    HandoffCheckpointCommitted,
    HandoffPayload,
    MessageReceived,
    OfferChecked,
    OfferVerdict,
    OpenStream,
    Send,
    StreamOpened,
    Timeout,
    TimerKind,
    ValidateOffer,
)
from igor_p2p.handoff.source import SignedTransfer, SourceConfig, SourceSession, TransferTerms
from igor_p2p.handoff.target import TargetConfig, TargetSession
from igor_p2p.handoff.writeahead import AuthorityPort, message_for

AGENT = "did:key:z6MkSimAgent"
A = "12D3KooWSource"
B = "12D3KooWTarget"
MID = bytes(range(16))
S = AuthorityState


def head_digest(epoch: int) -> bytes:
    return hashlib.sha256(b"handoff-checkpoint-%d" % epoch).digest()


def sign_transfer(terms: TransferTerms) -> SignedTransfer:
    record = b"T|" + terms.migration_id + b"|%d|" % terms.epoch + terms.to_node.encode()
    return SignedTransfer(record, hashlib.sha256(record).digest())


def verify_transfer(record: bytes, ctx: MigrationContext) -> bool:
    expected = b"T|" + ctx.migration_id + b"|%d|" % ctx.offer_epoch + B.encode()
    return record == expected


class InvariantViolation(AssertionError):
    pass


@dataclass
class Node:
    name: str
    disk: AuthorityRecord | None
    port: AuthorityPort
    up: bool = True
    ticking: bool = False
    unflushed: list[AuthorityRecord] = field(default_factory=list)
    session: SourceSession | TargetSession | None = None
    timers: set[TimerKind] = field(default_factory=set)
    wants: set[str] = field(default_factory=set)
    offer_to_validate: Offer | None = None
    log: list[Action] = field(default_factory=list)


class Sim:
    def __init__(self, *, max_crashes: int = 3) -> None:
        src = AuthorityMachine()
        src.handle(Launched(1))
        src.mark_durable(src.record.version)
        self.nodes = {
            A: Node(A, src.record, AuthorityPort(src), ticking=True),
            B: Node(B, None, AuthorityPort(AuthorityMachine())),
        }
        self.claims: dict[str, int] = {A: 1}
        self.net: list[tuple[str, bytes]] = []
        self.crashes_left = max_crashes
        self.trace: list[str] = []
        a = self.nodes[A]
        a.session = SourceSession(self._source_config(), a.port)
        self._run(a, a.session.start())

    # ------------------------------------------------------------------ configs

    @staticmethod
    def _source_config() -> SourceConfig:
        return SourceConfig(AGENT, A, B, MID, sign_transfer)

    @staticmethod
    def _target_config() -> TargetConfig:
        return TargetConfig(AGENT, B, A, MID, verify_transfer)

    # ------------------------------------------------------------------ steps

    def enabled(self, *, faults: bool = True) -> list[tuple[str, ...]]:
        steps: list[tuple[str, ...]] = []
        for i in range(len(self.net)):
            steps.append(("deliver", str(i)))
            if faults:
                steps += [("drop", str(i)), ("dup", str(i))]
        for name, node in self.nodes.items():
            if not node.up:
                steps.append(("restart", name))
                continue
            if node.unflushed:
                steps.append(("flush", name))
            steps += [("want", name, w) for w in sorted(node.wants)]
            if node.offer_to_validate is not None:
                steps.append(("validate", name, "reject"))
            if faults:
                steps += [("timeout", name, k.value) for k in sorted(node.timers)]
                if self.crashes_left > 0:
                    steps.append(("crash", name))
        return steps

    def step(self, choice: int, *, faults: bool = True) -> bool:
        """One step; two choices in three avoid faults so schedules get past the decision."""
        calm = self.enabled(faults=False)
        steps = self.enabled(faults=faults)
        if not steps:
            return False
        if calm and choice % 3:
            self.apply(calm[(choice // 3) % len(calm)])
        else:
            self.apply(steps[(choice // 3) % len(steps)])
        self.check()
        return True

    def apply(self, step: tuple[str, ...]) -> None:
        self.trace.append(" ".join(step))
        kind = step[0]
        if kind in ("deliver", "drop", "dup"):
            i = int(step[1])
            if kind == "dup":
                self.net.append(self.net[i])
                return
            dst, frame = self.net.pop(i)
            if kind == "deliver":
                self._deliver(self.nodes[dst], decode(frame))
            return
        node = self.nodes[step[1]]
        if kind == "restart":
            self._restart(node)
        elif kind == "crash":
            self.crashes_left -= 1
            node.up = False
            node.ticking = False
            node.unflushed.clear()
        elif kind == "flush":
            self._flush(node)
        elif kind == "timeout":
            k = TimerKind(step[2])
            node.timers.discard(k)
            if node.session is not None:
                self._run(node, node.session.handle(Timeout(k)))
        elif kind == "validate":
            self._validate(node, ok=False)
        elif kind == "want":
            self._want(node, step[2])

    # ------------------------------------------------------------------ internals

    def _flush(self, node: Node) -> None:
        record = node.unflushed.pop(0)
        old = node.disk
        if old is not None and (record.epoch < old.epoch or record.fence < old.fence):
            raise InvariantViolation(f"{node.name}: epoch/fence went backwards {old} -> {record}")
        node.disk = record
        if node.session is not None:
            self._run(node, node.session.handle(Durable(record.version)))
        else:
            self._run(node, self._translate(node, node.port.durable(record.version)))

    def _want(self, node: Node, what: str) -> None:
        node.wants.discard(what)
        if what == "checkpoint" and isinstance(node.session, SourceSession):
            payload = HandoffPayload(
                checkpoint=b"ckpt",
                head_digest=head_digest(node.port.machine.epoch),
                lineage=(b"entry",),
                wasm_hash=bytes(32),
                manifest=b"{}",
            )
            self._run(node, node.session.handle(HandoffCheckpointCommitted(payload)))
        elif what == "open" and isinstance(node.session, SourceSession):
            self._run(node, node.session.handle(StreamOpened()))
        elif what == "validate":
            self._validate(node, ok=True)
        elif what == "claims":
            highest = max((e for n, e in self.claims.items() if n != node.name), default=0)
            self._run(node, self._translate(node, node.port.handle(ClaimsChecked(highest))))

    def _validate(self, node: Node, *, ok: bool) -> None:
        offer = node.offer_to_validate
        node.offer_to_validate = None
        node.wants.discard("validate")
        if offer is None or node.session is None:
            return
        verdict = OfferVerdict(ok, head_digest(offer.epoch), None if ok else RejectCode.NO_CAPACITY)
        self._run(node, node.session.handle(OfferChecked(verdict)))

    def _restart(self, node: Node) -> None:
        node.up = True
        node.ticking = False
        node.timers.clear()
        node.wants.clear()
        node.offer_to_validate = None
        node.port = AuthorityPort(AuthorityMachine.restore(node.disk))
        ctx = node.disk.migration if node.disk is not None else None
        node.session = None
        if ctx is not None and ctx.migration_id == MID:
            if node.name == A:
                node.session = SourceSession(self._source_config(), node.port)
            else:
                node.session = TargetSession(self._target_config(), node.port)
            self._run(node, node.session.restart())
        else:
            self._run(node, self._translate(node, node.port.handle(Restarted())))

    def _translate(self, node: Node, actions: list[Action]) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            msg = message_for(action, agent=AGENT, sender=node.name, machine=node.port.machine)
            out.append(Send(msg) if msg is not None else action)
        return out

    def _deliver(self, node: Node, msg: Message) -> None:
        if not node.up:
            return
        if isinstance(msg, StatusQuery):
            reply = status_reply(node.port.machine.durable_record, agent=AGENT, sender=node.name)
            self._send(node, reply)
            return
        if isinstance(msg, StatusReply):
            outcome = resolve(node.port.machine.record, msg)
            if outcome is not None and node.port.waiting_for is None:
                self._run(node, self._translate(node, node.port.handle(outcome)))
            return
        if node.session is None and isinstance(msg, Offer) and node.name == B:
            node.session = TargetSession(self._target_config(), node.port)
        if node.session is not None:
            self._run(node, node.session.handle(MessageReceived(msg)))

    def _send(self, node: Node, msg: Message) -> None:
        self._check_write_ahead(node, msg)
        peer = B if node.name == A else A
        self.net.append((peer, encode(msg)))

    def _run(self, node: Node, actions: list[Action]) -> None:
        for action in actions:
            node.log.append(action)
            if isinstance(action, PersistAuthority):
                node.unflushed.append(action.record)
            elif isinstance(action, StopTicking):
                node.ticking = False
            elif isinstance(action, StartTicking):
                disk = node.disk
                if disk is None or disk.state is not S.ACTIVE_OWNER or disk.epoch != action.epoch:
                    raise InvariantViolation(f"{node.name} starts ticking without durable owner")
                node.ticking = True
            elif isinstance(action, Send):
                self._send(node, action.message)
            elif isinstance(action, PublishClaim):
                self.claims[node.name] = max(self.claims.get(node.name, 0), action.epoch)
            elif isinstance(action, CommitHandoffCheckpoint):
                node.wants.add("checkpoint")
            elif isinstance(action, OpenStream):
                node.wants.add("open")
            elif isinstance(action, ArmTimer):
                node.timers.add(action.kind)
            elif isinstance(action, ValidateOffer):
                node.offer_to_validate = action.offer
                node.wants.add("validate")
            elif isinstance(action, QueryStatus):
                query = status_query(
                    node.port.machine.durable_record, agent=AGENT, sender=node.name
                )
                self._send(node, query)
            elif isinstance(action, CheckClaims):
                node.wants.add("claims")

    # ------------------------------------------------------------------ invariants

    def _check_write_ahead(self, node: Node, msg: Message) -> None:
        disk = node.disk
        ctx = disk.migration if disk is not None else None
        mid_ok = ctx is not None and ctx.migration_id == getattr(msg, "migration_id", None)
        need: dict[type[Message], bool] = {
            Offer: mid_ok and disk is not None and disk.state is S.HANDOFF_INITIATED,
            Ack: mid_ok and disk is not None and disk.state is S.HANDOFF_PENDING,
            Commit: mid_ok
            and ctx is not None
            and ctx.phase in (MigrationPhase.DECIDED, MigrationPhase.CONFIRMED),
            Confirm: mid_ok and ctx is not None and ctx.phase is MigrationPhase.COMMITTED,
            Abort: mid_ok and ctx is not None and ctx.phase is MigrationPhase.ABORTED,
        }
        if not need.get(type(msg), True):
            raise InvariantViolation(f"{node.name} sent {msg.TYPE} before its persist: {disk}")

    def check(self) -> None:
        ticking = [n for n in self.nodes.values() if n.up and n.ticking]
        if len(ticking) > 1:
            raise InvariantViolation("two nodes tick the agent")
        owners = [
            n for n in self.nodes.values() if n.disk is not None and n.disk.state is S.ACTIVE_OWNER
        ]
        if len(owners) > 1:
            raise InvariantViolation(f"two durable owners: {[n.disk for n in owners]}")
        for node in ticking:
            if not node.port.machine.may_tick:
                raise InvariantViolation(f"{node.name} ticks but its machine says it may not")

    # ------------------------------------------------------------------ healing

    def heal(self, max_rounds: int = 200) -> None:
        """No more faults: run every step to quiescence, firing timers and queries last."""
        for _ in range(max_rounds):
            if self.step(0, faults=False):
                continue
            fired = False
            for node in self.nodes.values():
                for kind in sorted(node.timers):
                    node.timers.discard(kind)
                    if node.session is not None:
                        self._run(node, node.session.handle(Timeout(kind)))
                    fired = True
                if not fired and self._unsettled(node):
                    query = status_query(
                        node.port.machine.durable_record, agent=AGENT, sender=node.name
                    )
                    self._send(node, query)
                    fired = True
            self.check()
            if not fired:
                return
        raise InvariantViolation("no quiescence: " + " / ".join(self.trace[-20:]))

    @staticmethod
    def _unsettled(node: Node) -> bool:
        rec = node.port.machine.record
        ctx = rec.migration
        if rec.state is S.HANDOFF_PENDING:
            return True
        return rec.state is S.RETIRED and ctx is not None and ctx.phase is MigrationPhase.DECIDED

    def final_states(self) -> dict[str, AuthorityRecord | None]:
        return {name: node.disk for name, node in self.nodes.items()}
