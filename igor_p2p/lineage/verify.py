"""The whole-lineage verifier.

:func:`verify_lineage` takes entries in any order (for example the files of a directory), orders
them by following ``prev`` links from the genesis, and checks the hash chain, every signature, the
chain of custody, and the budget/tick/module rules. It reports every problem it finds rather than
stopping at the first; it never raises on bad input.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from igor_p2p.lineage._codec import ZERO_HASH, CorruptEntry, sha256
from igor_p2p.lineage.cert import WitnessCert
from igor_p2p.lineage.custody import ForcedRecovery, TransferRecord
from igor_p2p.lineage.effect import EffectRecord
from igor_p2p.lineage.entries import EpochRecord, LineageEntry, decode_entry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind
from igor_p2p.lineage.export import ExportRecord
from igor_p2p.lineage.identity import BadSignature, InvalidDID, public_key_from_did
from igor_p2p.lineage.inputs import TickInputs
from igor_p2p.lineage.verify_effects import EffectLog, check_effect_entry

GENESIS_KINDS = (CheckpointKind.GENESIS, CheckpointKind.IMPORT)


class ProblemCode(enum.StrEnum):
    CORRUPT_ENTRY = "CORRUPT_ENTRY"
    """An entry's bytes do not decode (Go: a file that does not parse)."""
    NO_GENESIS = "NO_GENESIS"
    """No GENESIS/IMPORT checkpoint (Go: no file, or the first has a non-zero prevHash)."""
    MULTIPLE_GENESIS = "MULTIPLE_GENESIS"
    """More than one GENESIS/IMPORT checkpoint."""
    BAD_GENESIS = "BAD_GENESIS"
    """A genesis with the wrong epoch, tick or prev."""
    FORK = "FORK"
    """Two or more distinct entries name the same ``prev``."""
    ORPHAN = "ORPHAN"
    """An entry not reachable from the genesis: a gap or a missing link."""
    BAD_SIGNATURE = "BAD_SIGNATURE"
    """A signature does not verify under the key the entry names as its signer."""
    WRONG_SIGNER = "WRONG_SIGNER"
    """Valid signature, wrong key: the chain of custody is violated."""
    AGENT_MISMATCH = "AGENT_MISMATCH"
    """An entry names another agent (Go: the agent public key changed)."""
    EPOCH_DECREASED = "EPOCH_DECREASED"
    """An epoch lower than the current one."""
    EPOCH_SKIPPED = "EPOCH_SKIPPED"
    """An epoch higher than the custody records allow."""
    TRANSFER_MISMATCH = "TRANSFER_MISMATCH"
    """A custody record that does not fit where it sits (wrong from_epoch, not after a HANDOFF)."""
    BUDGET_INCREASED = "BUDGET_INCREASED"
    """The budget went up along the chain."""
    NEGATIVE_BUDGET = "NEGATIVE_BUDGET"
    """A negative budget or price (only Go Igor blobs can carry one)."""
    TICK_DECREASED = "TICK_DECREASED"
    """The tick counter went down."""
    TICK_REPEATED = "TICK_REPEATED"
    """A TICK checkpoint whose tick did not advance (Go: ticks not strictly increasing)."""
    MODULE_CHANGED = "MODULE_CHANGED"
    """The wasm_hash or manifest_hash changed along the chain."""
    MODULE_MISMATCH = "MODULE_MISMATCH"
    """The wasm or manifest bytes do not hash to what the checkpoints name (bundles)."""
    UNSIGNED_CHECKPOINT = "UNSIGNED_CHECKPOINT"
    """Go only: a v0x02/v0x03 checkpoint after the first file of a history."""
    BAD_GAP = "BAD_GAP"
    """A compacted gap where none may be: across a custody record, or into another epoch."""
    UNCERTIFIED = "UNCERTIFIED"
    """A custody record followed by something other than its witness certificate, or a
    certificate that is not a joint quorum of the old and new witness sets."""
    AFTER_EXPORT = "AFTER_EXPORT"
    """An entry after the export record: the agent ran on after it left for Go Igor."""
    REPLAY_MISMATCH = "REPLAY_MISMATCH"
    """``verify --replay``: re-executing recorded ticks gave a state other than the
    checkpoint's (docs/effects.md#replay)."""
    BAD_EFFECT = "BAD_EFFECT"
    """An effect or tick-input record that breaks the effect log's rules (an outcome without
    its intent, a key used twice, inputs not followed by their checkpoint, effects not charged
    to the budget)."""


@dataclass
class Problem:
    code: ProblemCode
    message: str
    digest: bytes | None = None
    """Digest of the entry concerned (for an undecodable entry: SHA-256 of its bytes)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "message": self.message,
            "digest": self.digest.hex() if self.digest is not None else None,
        }


@dataclass
class VerifyReport:
    valid: bool = False
    problems: list[Problem] = field(default_factory=list)
    agent: str | None = None
    entries: int = 0
    """Distinct entries that decoded."""
    checkpoints: int = 0
    transfers: int = 0
    certs: int = 0
    forced: list[ForcedRecovery] = field(default_factory=list)
    """Forced-recovery records on the verified path: reported, not a reason to be invalid."""
    exports: list[ExportRecord] = field(default_factory=list)
    """Export-to-Go records on the verified path (the lineage's terminal entry)."""
    first_tick: int | None = None
    last_tick: int | None = None
    first_epoch: int | None = None
    last_epoch: int | None = None
    budget_start: int | None = None
    budget_end: int | None = None
    head: bytes | None = None
    """Digest of the last entry on the path followed from the genesis."""
    custodian: bytes | None = None
    """The node that owns ``last_epoch`` after the last certified custody record."""
    witnesses: tuple[bytes, ...] = ()
    """The witness set of ``last_epoch``."""
    pending_record: bytes | None = None
    """Digest of a custody record at the end of the chain still waiting for its certificate."""
    compacted: list[Gap] = field(default_factory=list)
    """Places where entries were compacted away: what is missing rests on the owner's signature
    of the entry after the gap."""
    effects: EffectLog = field(default_factory=EffectLog)
    """The side effects recorded on the verified path (http requests, payments)."""

    def add(self, code: ProblemCode, message: str, digest: bytes | None = None) -> None:
        self.problems.append(Problem(code, message, digest))

    def codes(self) -> set[ProblemCode]:
        return {p.code for p in self.problems}

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "problems": [p.to_json() for p in self.problems],
            "agent": self.agent,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "transfers": self.transfers,
            "certs": self.certs,
            "witnesses": [w.hex() for w in self.witnesses],
            "custodian": self.custodian.hex() if self.custodian is not None else None,
            "pending_record": self.pending_record.hex() if self.pending_record else None,
            "forced": [
                {
                    "digest": f.digest().hex(),
                    "from_epoch": f.from_epoch,
                    "to_epoch": f.to_epoch,
                    "node": f.node.hex(),
                    "forced_by": f.forced_by,
                    "reason": f.reason,
                    "wall_ns": f.wall_ns,
                }
                for f in self.forced
            ],
            "exports": [
                {
                    "digest": e.digest().hex(),
                    "epoch": e.epoch,
                    "tick": e.tick,
                    "owner": e.owner.hex(),
                    "go_checkpoint": e.go_checkpoint.hex(),
                    "wall_ns": e.wall_ns,
                }
                for e in self.exports
            ],
            "first_tick": self.first_tick,
            "last_tick": self.last_tick,
            "first_epoch": self.first_epoch,
            "last_epoch": self.last_epoch,
            "budget_start": self.budget_start,
            "budget_end": self.budget_end,
            "head": self.head.hex() if self.head is not None else None,
            "compacted": [g.to_json() for g in self.compacted],
            "effects": self.effects.to_json(),
        }


@dataclass(frozen=True)
class Gap:
    """Entries compacted away between ``after`` and ``before`` within one epoch."""

    after: bytes
    before: bytes
    missing_prev: bytes
    epoch: int
    signer: bytes
    """The owner whose signature on ``before`` the missing entries rest on."""

    def to_json(self) -> dict[str, Any]:
        return {
            "after": self.after.hex(),
            "before": self.before.hex(),
            "missing_prev": self.missing_prev.hex(),
            "epoch": self.epoch,
            "signer": self.signer.hex(),
        }


def _short(digest: bytes) -> str:
    return digest.hex()[:12]


@dataclass
class _Walk:
    """What the verifier knows at the current head while walking from the genesis."""

    custodian: bytes
    epoch: int
    tick: int
    budget: int
    wasm_hash: bytes
    manifest_hash: bytes
    previous: LineageEntry
    witnesses: tuple[bytes, ...] = ()
    pending: EpochRecord | None = None
    """A custody record whose certificate has not been seen yet."""


def _decode_all(
    items: Iterable[LineageEntry | bytes], report: VerifyReport
) -> dict[bytes, LineageEntry]:
    by_digest: dict[bytes, LineageEntry] = {}
    for item in items:
        if isinstance(
            item,
            Checkpoint
            | TransferRecord
            | ForcedRecovery
            | WitnessCert
            | ExportRecord
            | EffectRecord
            | TickInputs,
        ):
            entry: LineageEntry = item
        else:
            try:
                entry = decode_entry(item)
            except CorruptEntry as exc:
                raw = bytes(item) if isinstance(item, bytes | bytearray | memoryview) else b""
                report.add(ProblemCode.CORRUPT_ENTRY, str(exc), sha256(raw))
                continue
        by_digest.setdefault(entry.digest(), entry)  # an exact duplicate is the same entry
    return by_digest


def _genesis_rank(entry: Checkpoint, agent: str | None, children: dict[bytes, list]) -> tuple:
    try:
        signed_by_agent = entry.signer == public_key_from_did(entry.agent)
    except InvalidDID:
        signed_by_agent = False
    return (
        agent is not None and entry.agent != agent,
        not signed_by_agent,
        -len(children.get(entry.digest(), ())),
        entry.digest(),
    )


def verify_lineage(
    entries: Iterable[LineageEntry | bytes],
    *,
    expected_agent: str | None = None,
    trusted: Collection[bytes] = frozenset(),
    ordered: bool = False,
) -> VerifyReport:
    """Verify a whole lineage. Never raises on bad entries.

    Entries may come in any order: they are put in order by following ``prev`` links from the
    genesis. With ``ordered=True`` they come in chain order and may be *compacted*: an entry
    whose ``prev`` is absent follows the entry listed before it, and the gap is allowed inside one
    epoch (the entry after it is signed by that epoch's owner, who vouches for what is missing);
    each gap is reported in ``compacted``.

    ``trusted`` names digests whose signatures were already verified by this process or node
    (e.g. the prefix a node holds in its store, checked when it arrived): their signature check
    is skipped; every other rule (links, custody, epochs, budget) still runs on them.
    """
    report = VerifyReport()
    items = list(entries)
    by_digest = _decode_all(items, report)
    gap_after: dict[bytes, bytes] = {}
    if ordered:
        order = [e.digest() for e in _decode_all(items, VerifyReport()).values()]
        for before, after in zip(order[1:], order[:-1], strict=True):
            entry = by_digest[before]
            if entry.prev not in by_digest and not (
                isinstance(entry, Checkpoint) and entry.kind in GENESIS_KINDS
            ):
                gap_after[before] = after
    report.entries = len(by_digest)
    report.checkpoints = sum(isinstance(e, Checkpoint) for e in by_digest.values())
    report.transfers = sum(isinstance(e, TransferRecord) for e in by_digest.values())
    report.certs = sum(isinstance(e, WitnessCert) for e in by_digest.values())

    # Intrinsic signatures: each entry's signature under the key it names.
    for digest, entry in sorted(by_digest.items()):
        if digest in trusted:
            continue
        try:
            entry.verify_signature()
        except BadSignature:
            report.add(
                ProblemCode.BAD_SIGNATURE,
                f"{type(entry).__name__} {_short(digest)}: signature does not verify",
                digest,
            )

    children: dict[bytes, list[LineageEntry]] = {}
    for digest, entry in by_digest.items():
        children.setdefault(gap_after.get(digest, entry.prev), []).append(entry)
    for siblings in children.values():
        siblings.sort(key=lambda e: e.digest())

    geneses = sorted(
        (e for e in by_digest.values() if isinstance(e, Checkpoint) and e.kind in GENESIS_KINDS),
        key=lambda e: _genesis_rank(e, expected_agent, children),
    )
    agent = expected_agent
    if not geneses:
        report.add(ProblemCode.NO_GENESIS, "no GENESIS or IMPORT checkpoint")
        if agent is None and by_digest:
            agent = min(by_digest.values(), key=lambda e: e.digest()).agent
    else:
        if len(geneses) > 1:
            for extra in geneses[1:]:
                report.add(
                    ProblemCode.MULTIPLE_GENESIS,
                    f"extra genesis {_short(extra.digest())}, chose {_short(geneses[0].digest())}",
                    extra.digest(),
                )
        if agent is None:
            agent = geneses[0].agent
    report.agent = agent

    for digest, entry in sorted(by_digest.items()):
        if agent is not None and entry.agent != agent:
            report.add(
                ProblemCode.AGENT_MISMATCH,
                f"{type(entry).__name__} {_short(digest)} names agent {entry.agent}, not {agent}",
                digest,
            )

    # Reachability from any genesis; everything else is an orphan.
    reachable: set[bytes] = set()
    stack = [g.digest() for g in geneses]
    while stack:
        digest = stack.pop()
        if digest in reachable:
            continue
        reachable.add(digest)
        stack.extend(child.digest() for child in children.get(digest, ()))
    for digest, entry in sorted(by_digest.items()):
        if digest not in reachable:
            missing = "" if entry.prev in by_digest else " (its prev is missing)"
            report.add(
                ProblemCode.ORPHAN,
                f"{type(entry).__name__} {_short(digest)} is not reachable from the genesis"
                f"{missing}",
                digest,
            )

    if geneses:
        _walk_from(geneses[0], children, report, trusted, gap_after)

    report.valid = not report.problems
    return report


def _walk_from(
    genesis: Checkpoint,
    children: dict[bytes, list[LineageEntry]],
    report: VerifyReport,
    trusted: Collection[bytes],
    gap_after: dict[bytes, bytes],
) -> None:
    gd = genesis.digest()
    if genesis.epoch != 1:
        report.add(ProblemCode.BAD_GENESIS, f"genesis epoch is {genesis.epoch}, not 1", gd)
    if genesis.kind is CheckpointKind.GENESIS:
        if genesis.tick != 0:
            report.add(ProblemCode.BAD_GENESIS, f"genesis tick is {genesis.tick}, not 0", gd)
        if genesis.prev != ZERO_HASH:
            report.add(ProblemCode.BAD_GENESIS, "GENESIS prev is not 32 zero bytes", gd)
    elif genesis.prev == ZERO_HASH:
        report.add(ProblemCode.BAD_GENESIS, "IMPORT prev must be SHA-256 of the Go blob", gd)
    try:
        agent_key = public_key_from_did(genesis.agent)
    except InvalidDID:  # pragma: no cover - construction already validated the DID
        agent_key = b""
    if genesis.signer != agent_key:
        report.add(ProblemCode.WRONG_SIGNER, "genesis is not signed by the agent key", gd)

    report.first_tick = report.last_tick = genesis.tick
    report.first_epoch = report.last_epoch = genesis.epoch
    report.budget_start = report.budget_end = genesis.budget
    report.head = gd
    walk = _Walk(
        custodian=genesis.owner,
        epoch=genesis.epoch,
        tick=genesis.tick,
        budget=genesis.budget,
        wasm_hash=genesis.wasm_hash,
        manifest_hash=genesis.manifest_hash,
        previous=genesis,
        witnesses=genesis.witnesses,
    )
    report.custodian = genesis.owner
    report.witnesses = genesis.witnesses
    visited = {gd}
    head = gd
    while True:
        following = children.get(head, [])
        if not following:
            break
        if len(following) > 1:
            report.add(
                ProblemCode.FORK,
                f"{len(following)} entries follow {_short(head)}: "
                + ", ".join(_short(e.digest()) for e in following),
                head,
            )
        entry = _choose_branch(following, walk)
        digest = entry.digest()
        if digest in visited:  # pragma: no cover - would need a SHA-256 cycle
            break
        visited.add(digest)
        if isinstance(walk.previous, ExportRecord):
            report.add(ProblemCode.AFTER_EXPORT, f"{_short(digest)} follows the export", digest)
        if walk.pending is not None and not isinstance(entry, WitnessCert):
            report.add(
                ProblemCode.UNCERTIFIED,
                f"{type(entry).__name__} {_short(digest)} follows custody record "
                f"{_short(walk.pending.digest())} without its witness certificate",
                digest,
            )
            walk.pending = None
        gap = digest in gap_after
        if gap:
            _check_gap(entry, digest, walk, report)
        if isinstance(entry, Checkpoint):
            for problem in report.effects.checkpoint(entry, walk.budget):
                report.add(ProblemCode.BAD_EFFECT, problem, digest)
            _check_checkpoint(entry, digest, walk, report)
        elif isinstance(entry, TransferRecord):
            _check_transfer(entry, digest, walk, report, after_gap=gap)
        elif isinstance(entry, ExportRecord):
            _check_export(entry, digest, walk, report)
        elif isinstance(entry, ForcedRecovery):
            _check_forced(entry, digest, walk, report)
        elif isinstance(entry, EffectRecord | TickInputs):
            for problem in check_effect_entry(
                entry, walk.epoch, walk.tick, walk.custodian, report.effects
            ):
                report.add(ProblemCode.BAD_EFFECT, problem, digest)
        else:
            _check_cert(entry, digest, walk, report, digest in trusted)
        walk.previous = entry
        head = digest
        report.head = digest
        report.last_epoch = walk.epoch
        report.last_tick = walk.tick
        report.budget_end = walk.budget
        report.custodian = walk.custodian
        report.witnesses = walk.witnesses
    report.pending_record = walk.pending.digest() if walk.pending is not None else None
    report.effects.finish()


def _choose_branch(following: list[LineageEntry], walk: _Walk) -> LineageEntry:
    """At a fork, follow the certificate of a pending record, else the branch signed by the
    current custodian, else the lowest digest."""
    if walk.pending is not None:
        for entry in following:
            if isinstance(entry, WitnessCert):
                return entry
    for entry in following:
        if entry.signer == walk.custodian:
            return entry
    return following[0]


def _check_checkpoint(ck: Checkpoint, digest: bytes, walk: _Walk, report: VerifyReport) -> None:
    name = f"checkpoint {_short(digest)}"
    if ck.kind in GENESIS_KINDS:
        return  # already reported as MULTIPLE_GENESIS
    if ck.epoch < walk.epoch:
        report.add(ProblemCode.EPOCH_DECREASED, f"{name}: epoch {ck.epoch} < {walk.epoch}", digest)
    elif ck.epoch > walk.epoch:
        report.add(
            ProblemCode.EPOCH_SKIPPED,
            f"{name}: epoch {ck.epoch} > {walk.epoch} without a custody record",
            digest,
        )
    if ck.signer != walk.custodian:
        report.add(
            ProblemCode.WRONG_SIGNER,
            f"{name}: signed by {ck.signer.hex()[:16]}, custodian is {walk.custodian.hex()[:16]}",
            digest,
        )
    elif ck.owner != walk.custodian:
        report.add(ProblemCode.WRONG_SIGNER, f"{name}: owner field is not the custodian", digest)
    if ck.budget > walk.budget:
        report.add(
            ProblemCode.BUDGET_INCREASED, f"{name}: budget {ck.budget} > {walk.budget}", digest
        )
    if ck.tick < walk.tick:
        report.add(ProblemCode.TICK_DECREASED, f"{name}: tick {ck.tick} < {walk.tick}", digest)
    elif ck.kind is CheckpointKind.TICK and ck.tick == walk.tick:
        report.add(ProblemCode.TICK_REPEATED, f"{name}: TICK at unchanged tick {ck.tick}", digest)
    if ck.wasm_hash != walk.wasm_hash:
        report.add(ProblemCode.MODULE_CHANGED, f"{name}: wasm_hash changed", digest)
    if ck.manifest_hash != walk.manifest_hash:
        report.add(ProblemCode.MODULE_CHANGED, f"{name}: manifest_hash changed", digest)
    walk.epoch = max(walk.epoch, ck.epoch)
    walk.tick = max(walk.tick, ck.tick)
    walk.budget = min(walk.budget, ck.budget)


def _check_gap(entry: LineageEntry, digest: bytes, walk: _Walk, report: VerifyReport) -> None:
    """An entry whose ``prev`` was compacted away: allowed inside the current epoch only."""
    name = f"{type(entry).__name__} {_short(digest)}"
    if walk.pending is not None or isinstance(entry, WitnessCert | ForcedRecovery):
        report.add(ProblemCode.BAD_GAP, f"{name}: entries missing around a custody record", digest)
        return
    if isinstance(entry, Checkpoint | EffectRecord | TickInputs):
        epoch = entry.epoch
    elif isinstance(entry, TransferRecord):
        epoch = entry.from_epoch
    else:  # an export record (or any other terminal record): it names its epoch
        epoch = getattr(entry, "epoch", -1)
    if epoch != walk.epoch:
        report.add(
            ProblemCode.BAD_GAP,
            f"{name}: entries missing across epochs {walk.epoch} and {epoch}",
            digest,
        )
        return
    report.compacted.append(
        Gap(
            after=walk.previous.digest(),
            before=digest,
            missing_prev=entry.prev,
            epoch=walk.epoch,
            signer=walk.custodian,
        )
    )


def _check_transfer(
    rec: TransferRecord, digest: bytes, walk: _Walk, report: VerifyReport, *, after_gap: bool
) -> None:
    name = f"transfer {_short(digest)}"
    previous = walk.previous
    if after_gap:
        pass  # the HANDOFF checkpoint it names was compacted away; it rests on the signer
    elif rec.is_resume:
        if isinstance(previous, TransferRecord | ForcedRecovery):
            report.add(
                ProblemCode.TRANSFER_MISMATCH, f"{name}: follows another custody record", digest
            )
    elif not (isinstance(previous, Checkpoint) and previous.kind is CheckpointKind.HANDOFF):
        report.add(
            ProblemCode.TRANSFER_MISMATCH, f"{name}: does not follow a HANDOFF checkpoint", digest
        )
    if rec.from_node != walk.custodian:
        report.add(ProblemCode.WRONG_SIGNER, f"{name}: from_node is not the custodian", digest)
    if rec.from_epoch != walk.epoch:
        report.add(
            ProblemCode.TRANSFER_MISMATCH,
            f"{name}: from_epoch {rec.from_epoch}, current epoch {walk.epoch}",
            digest,
        )
    if rec.to_epoch <= rec.from_epoch:
        report.add(
            ProblemCode.EPOCH_DECREASED,
            f"{name}: to_epoch {rec.to_epoch} <= from_epoch {rec.from_epoch}",
            digest,
        )
    elif rec.to_epoch != rec.from_epoch + 1:
        report.add(
            ProblemCode.EPOCH_SKIPPED,
            f"{name}: to_epoch {rec.to_epoch} is not from_epoch + 1",
            digest,
        )
    walk.pending = rec


def _check_forced(rec: ForcedRecovery, digest: bytes, walk: _Walk, report: VerifyReport) -> None:
    name = f"forced recovery {_short(digest)}"
    report.forced.append(rec)
    if rec.from_epoch != walk.epoch:
        report.add(
            ProblemCode.TRANSFER_MISMATCH,
            f"{name}: from_epoch {rec.from_epoch}, current epoch {walk.epoch}",
            digest,
        )
    if rec.to_epoch <= walk.epoch:
        report.add(
            ProblemCode.EPOCH_DECREASED,
            f"{name}: to_epoch {rec.to_epoch} not above current epoch {walk.epoch}",
            digest,
        )
    walk.pending = rec


def _check_cert(
    cert: WitnessCert, digest: bytes, walk: _Walk, report: VerifyReport, trusted: bool
) -> None:
    name = f"certificate {_short(digest)}"
    record = walk.pending
    if record is None:
        report.add(ProblemCode.UNCERTIFIED, f"{name}: does not follow a custody record", digest)
        return
    walk.pending = None
    if cert.slot != record.to_epoch:
        report.add(
            ProblemCode.UNCERTIFIED,
            f"{name}: certifies epoch {cert.slot}, the record starts epoch {record.to_epoch}",
            digest,
        )
    shortfall = cert.shortfall(walk.witnesses, record.witnesses, trusted=trusted)
    if shortfall is not None:
        report.add(ProblemCode.UNCERTIFIED, f"{name}: not a witness quorum: {shortfall}", digest)
    walk.custodian = record.owner
    walk.epoch = max(walk.epoch, record.to_epoch)
    walk.witnesses = record.witnesses


def _check_export(rec: ExportRecord, digest: bytes, walk: _Walk, report: VerifyReport) -> None:
    name = f"export {_short(digest)}"
    report.exports.append(rec)
    if rec.owner != walk.custodian:
        report.add(ProblemCode.WRONG_SIGNER, f"{name}: owner is not the custodian", digest)
    if rec.epoch != walk.epoch or rec.tick != walk.tick:
        report.add(
            ProblemCode.TRANSFER_MISMATCH,
            f"{name}: epoch {rec.epoch} tick {rec.tick}, current epoch {walk.epoch} "
            f"tick {walk.tick}",
            digest,
        )
    walk.custodian = b""  # terminal: nobody holds custody in Igor-P2P after it
