"""Reader (and, for test vectors, writer) of Go Igor checkpoints v0x02, v0x03 and v0x04.

Layout (little-endian), from Go Igor's ``internal/agent``::

    0   u8    version (0x02, 0x03, 0x04)
    1   i64   budget (negative rejected)
    9   i64   price per second (negative rejected)
    17  u64   tick number
    25  32    wasm hash (SHA-256 of the module)
    57  u64   major epoch                      (v3+)
    65  u64   lease generation                 (v3+)
    73  u64   lease expiry, Unix ns, as int64  (v3+)
    81  32    prev hash (SHA-256 of the whole previous blob; zero at genesis)   (v4)
    113 32    agent Ed25519 public key                                          (v4)
    145 64    Ed25519 signature over bytes[0:145] ‖ state                       (v4)
    header    agent state (opaque)

Header lengths: v2 57, v3 81, v4 209. The chain hash is SHA-256 of the whole blob.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage._codec import MAX_STATE_BYTES, ZERO_HASH, sha256
from igor_p2p.lineage.identity import (
    BadSignature,
    Keypair,
    did_from_public_key,
    verify_signature,
)
from igor_p2p.lineage.verify import Problem, ProblemCode, VerifyReport

V2, V3, V4 = 0x02, 0x03, 0x04
HEADER_LEN = {V2: 57, V3: 81, V4: 209}
SIGNED_HEADER_END = 145
MAX_GO_CHECKPOINT_BYTES = HEADER_LEN[V4] + MAX_STATE_BYTES
HISTORY_SUFFIX = ".ckpt"

_BASE = struct.Struct("<Bqq Q 32s")  # version, budget, price, tick, wasm hash: 57 bytes
_LEASE = struct.Struct("<QQq")  # major, generation, lease expiry: 24 bytes
_V4_ID = struct.Struct("<32s32s")  # prev hash, agent public key


class GoCheckpointError(InvalidInput):
    """Bytes that are not a Go Igor checkpoint this reader accepts."""


class NegativeGoValue(GoCheckpointError):
    """A Go Igor checkpoint with a negative budget or price (Go rejects these at parse time)."""


@dataclass(frozen=True)
class GoCheckpoint:
    """One parsed Go Igor checkpoint. Fields a version does not carry are ``None``."""

    version: int
    budget: int
    price: int
    tick: int
    wasm_hash: bytes
    major: int | None
    generation: int | None
    lease_expiry: int | None
    prev_hash: bytes | None
    agent_pubkey: bytes | None
    signature: bytes | None
    state: bytes
    raw: bytes

    def digest(self) -> bytes:
        """SHA-256 of the whole blob: Go's chain link (the next checkpoint's prevHash)."""
        return sha256(self.raw)

    def signing_bytes(self) -> bytes:
        """Go's signing domain: bytes [0:145] followed by the state (v4 only)."""
        if self.version != V4:
            raise GoCheckpointError(f"v0x{self.version:02x} checkpoints are not signed")
        return self.raw[:SIGNED_HEADER_END] + self.state

    @property
    def did(self) -> str | None:
        return did_from_public_key(self.agent_pubkey) if self.agent_pubkey else None


@dataclass(frozen=True)
class GoCheckpointFields:
    """The fields of a v0x04 checkpoint, for :func:`encode_go_v4`."""

    budget: int
    price: int
    tick: int
    wasm_hash: bytes
    major: int = 0
    generation: int = 0
    lease_expiry: int = 0
    prev_hash: bytes = ZERO_HASH
    state: bytes = b""


def looks_like_go_checkpoint(data: bytes) -> bool:
    """True if ``data`` starts with a Go version byte and is at least that version's header."""
    return len(data) >= 1 and data[0] in HEADER_LEN and len(data) >= HEADER_LEN[data[0]]


def parse_go_checkpoint(data: bytes) -> GoCheckpoint:
    """Parse as Go Igor does, plus a size cap; any defect raises :class:`GoCheckpointError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise GoCheckpointError("expected bytes")
    data = bytes(data)
    if not data:
        raise GoCheckpointError("empty checkpoint")
    version = data[0]
    if version not in HEADER_LEN:
        raise GoCheckpointError(f"unknown Go checkpoint version 0x{version:02x}")
    header_len = HEADER_LEN[version]
    if len(data) < header_len:
        raise GoCheckpointError(
            f"v0x{version:02x} checkpoint shorter than its {header_len}-byte header"
        )
    if len(data) > MAX_GO_CHECKPOINT_BYTES:
        raise GoCheckpointError("Go checkpoint larger than the state cap")
    _, budget, price, tick, wasm_hash = _BASE.unpack_from(data, 0)
    if budget < 0:
        raise NegativeGoValue(f"negative budget {budget}")
    if price < 0:
        raise NegativeGoValue(f"negative price {price}")
    major = generation = lease_expiry = None
    prev_hash = agent_pubkey = signature = None
    if version >= V3:
        major, generation, lease_expiry = _LEASE.unpack_from(data, 57)
    if version == V4:
        prev_hash, agent_pubkey = _V4_ID.unpack_from(data, 81)
        signature = data[145:209]
    return GoCheckpoint(
        version=version,
        budget=budget,
        price=price,
        tick=tick,
        wasm_hash=wasm_hash,
        major=major,
        generation=generation,
        lease_expiry=lease_expiry,
        prev_hash=prev_hash,
        agent_pubkey=agent_pubkey,
        signature=signature,
        state=data[header_len:],
        raw=data,
    )


def verify_go_signature(ck: GoCheckpoint) -> None:
    """Raise ``BadSignature`` unless a v0x04 checkpoint is signed by its embedded key."""
    if ck.version != V4 or ck.agent_pubkey is None or ck.signature is None:
        raise BadSignature(f"v0x{ck.version:02x} checkpoints carry no signature")
    verify_signature(ck.agent_pubkey, ck.signing_bytes(), ck.signature)


def encode_go_v4(fields: GoCheckpointFields, keypair: Keypair) -> bytes:
    """Build a signed v0x04 blob, byte for byte as Go Igor writes it (export to Go, tests)."""
    if len(fields.wasm_hash) != 32 or len(fields.prev_hash) != 32:
        raise GoCheckpointError("wasm_hash and prev_hash are 32 bytes")
    if fields.budget < 0 or fields.price < 0:
        raise NegativeGoValue("budget and price are non-negative")
    try:
        signed_header = (
            _BASE.pack(V4, fields.budget, fields.price, fields.tick, fields.wasm_hash)
            + _LEASE.pack(fields.major, fields.generation, fields.lease_expiry)
            + _V4_ID.pack(fields.prev_hash, keypair.public_key)
        )
    except struct.error as exc:
        raise GoCheckpointError(f"field out of range: {exc}") from None
    signature = keypair.sign(signed_header + fields.state)
    return signed_header + signature + fields.state


@dataclass
class GoHistoryReport(VerifyReport):
    """A :class:`VerifyReport` of a Go Igor history, plus warnings: things Go Igor writes
    into genuine histories that are not problems but are worth knowing (never invalid)."""

    warnings: list[Problem] = field(default_factory=list)

    def warn(self, code: ProblemCode, message: str, digest: bytes | None = None) -> None:
        self.warnings.append(Problem(code, message, digest))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "warnings": [w.to_json() for w in self.warnings]}


def _epoch(ck: GoCheckpoint) -> tuple[int, int] | None:
    return None if ck.major is None else (ck.major, ck.generation or 0)


def verify_go_history(directory: Path | str) -> GoHistoryReport:
    """Verify a Go Igor ``history/<agent>/`` directory of ``*.ckpt`` files.

    Reproduces Go's ``VerifyChain`` (files sorted by name; ticks strictly increasing; v4
    signatures; prevHash links; one agent key; nothing but v4 after the first file) and adds
    checks Go misses: the first checkpoint's prevHash is zero, the budget never increases, the
    epoch never decreases — except a reset to (0, 0), which Go's ``igord-lab`` writes every
    time it starts and which is reported as a warning. A file that does not parse is reported
    once, as that file: the link from the next file across it is not checked (Go reports a
    prevHash mismatch there too). docs/checkpoint-format.md lists each difference from Go's
    verdicts.
    """
    report = GoHistoryReport()
    files = sorted(p for p in Path(directory).iterdir() if p.name.endswith(HISTORY_SUFFIX))
    report.entries = len(files)
    previous: GoCheckpoint | None = None
    after_unparsed = False
    """The previous file could not be read or parsed (and is reported as such)."""
    first_key: bytes | None = None
    for path in files:
        name = path.name
        try:
            raw = path.read_bytes()
        except OSError as exc:
            report.add(ProblemCode.CORRUPT_ENTRY, f"{name}: cannot read: {exc.strerror}")
            after_unparsed = True
            continue
        try:
            ck = parse_go_checkpoint(raw)
        except NegativeGoValue as exc:
            report.add(ProblemCode.NEGATIVE_BUDGET, f"{name}: {exc}", sha256(raw))
            after_unparsed = True
            continue
        except GoCheckpointError as exc:
            report.add(ProblemCode.CORRUPT_ENTRY, f"{name}: {exc}", sha256(raw))
            after_unparsed = True
            continue
        digest = ck.digest()
        report.checkpoints += 1
        if ck.version == V4:
            try:
                verify_go_signature(ck)
            except BadSignature:
                report.add(ProblemCode.BAD_SIGNATURE, f"{name}: signature does not verify", digest)
            if first_key is None:
                first_key = ck.agent_pubkey
            elif ck.agent_pubkey != first_key:
                report.add(ProblemCode.AGENT_MISMATCH, f"{name}: agent identity changed", digest)
        if report.first_tick is None:
            report.first_tick = ck.tick
            report.first_epoch = ck.major
            report.budget_start = ck.budget
        if previous is None and not after_unparsed:
            if ck.version == V4 and ck.prev_hash != ZERO_HASH:
                report.add(
                    ProblemCode.NO_GENESIS,
                    f"{name}: first checkpoint's prevHash is not zero (partial chain)",
                    digest,
                )
        else:
            if ck.version != V4:
                report.add(
                    ProblemCode.UNSIGNED_CHECKPOINT,
                    f"{name}: v0x{ck.version:02x} checkpoint after the first file",
                    digest,
                )
            elif not after_unparsed:
                assert previous is not None
                if ck.prev_hash != previous.digest():
                    report.add(
                        ProblemCode.ORPHAN,
                        f"{name}: prevHash does not match the previous checkpoint",
                        digest,
                    )
            # else: the file before it did not parse and is reported; a link to its bytes
            # cannot be checked further (Go reports a mismatch here as well).
        if previous is not None:
            _compare_go(previous, ck, name, digest, report)
        previous = ck
        after_unparsed = False
        report.last_tick = ck.tick
        report.last_epoch = ck.major
        report.budget_end = ck.budget
        report.head = digest
    if report.checkpoints == 0:
        report.add(ProblemCode.NO_GENESIS, "no parseable checkpoint in the history")
    report.agent = did_from_public_key(first_key) if first_key is not None else None
    report.valid = not report.problems
    return report


def _compare_go(
    previous: GoCheckpoint, ck: GoCheckpoint, name: str, digest: bytes, report: GoHistoryReport
) -> None:
    """Tick, budget and epoch rules between two parsed checkpoints of a history."""
    if ck.tick < previous.tick:
        report.add(ProblemCode.TICK_DECREASED, f"{name}: tick {ck.tick} < {previous.tick}", digest)
    elif ck.tick == previous.tick:
        report.add(ProblemCode.TICK_REPEATED, f"{name}: tick {ck.tick} repeated", digest)
    if ck.budget > previous.budget:
        report.add(
            ProblemCode.BUDGET_INCREASED,
            f"{name}: budget {ck.budget} > {previous.budget}",
            digest,
        )
    before, after = _epoch(previous), _epoch(ck)
    if before is None or after is None or after >= before:
        return
    if after == (0, 0):
        report.warn(
            ProblemCode.EPOCH_DECREASED,
            f"{name}: epoch reset from {before} to (0, 0); Go Igor's igord-lab restarts its "
            "lease at (0, 0) every time it starts, and Go's verifier accepts it",
            digest,
        )
    else:
        report.add(ProblemCode.EPOCH_DECREASED, f"{name}: epoch {after} < {before}", digest)
