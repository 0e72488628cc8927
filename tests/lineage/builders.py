"""Small helpers that build signed lineages for the lineage tests (fixed seeds, no randomness).

Lineages are v2: the genesis names the first epoch's witness set, and every custody record is
followed by the :class:`WitnessCert` of a joint quorum of the old and the new witness sets (the
builder signs the votes with the witnesses' keys unless a test asks otherwise).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.cert import Ballot, WitnessCert, sign_vote
from igor_p2p.lineage.custody import (
    ForcedRecovery,
    TransferRecord,
    UnsignedForcedRecovery,
    UnsignedTransferRecord,
)
from igor_p2p.lineage.entries import EpochRecord, LineageEntry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.export import ExportRecord, UnsignedExportRecord
from igor_p2p.lineage.identity import Keypair

AGENT_KEY = Keypair.from_seed(b"agent-key-seed-for-lineage-tests"[:32])
NODE_A = Keypair.from_seed(bytes([0xA1]) * 32)
NODE_B = Keypair.from_seed(bytes([0xB2]) * 32)
NODE_C = Keypair.from_seed(bytes([0xC3]) * 32)
MALLORY = Keypair.from_seed(bytes([0x66]) * 32)
OTHER_AGENT_KEY = Keypair.from_seed(bytes([0x77]) * 32)

WASM = b"\x00asm\x01\x00\x00\x00"
MANIFEST = b'{"capabilities":["clock","log"]}'
WASM_HASH = hashlib.sha256(WASM).digest()
MANIFEST_HASH = hashlib.sha256(MANIFEST).digest()

WITNESSES = (NODE_A, NODE_B, NODE_C)
"""The default witness set of every epoch: the three nodes of a small network."""
KEYS_BY_PUBLIC = {k.public_key: k for k in (AGENT_KEY, NODE_A, NODE_B, NODE_C, MALLORY)}
BALLOT_NONCE = b"ballot-1"


def node_keys(members: tuple[Keypair, ...]) -> tuple[bytes, ...]:
    """A witness set as it is encoded: sorted, distinct node keys."""
    return tuple(sorted({k.public_key for k in members}))


@dataclass
class LineageBuilder:
    """Appends correctly linked, correctly signed entries; overrides let a test break one rule."""

    agent_key: Keypair = AGENT_KEY
    first_owner: Keypair = NODE_A
    budget: int = 1_000_000
    witnesses: tuple[Keypair, ...] = WITNESSES
    """The witness set of the current epoch (the genesis names it; custody records change it)."""
    entries: list[LineageEntry] = field(default_factory=list)
    custodian: Keypair = field(init=False)
    epoch: int = field(init=False, default=1)
    tick: int = field(init=False, default=0)
    wall_ns: int = field(init=False, default=1_700_000_000_000_000_000)

    def __post_init__(self) -> None:
        self.custodian = self.first_owner

    @property
    def agent(self) -> str:
        return self.agent_key.did

    @property
    def head(self) -> bytes:
        return self.entries[-1].digest() if self.entries else ZERO_HASH

    def _next_wall(self) -> int:
        self.wall_ns += 1_000_000
        return self.wall_ns

    def checkpoint(
        self,
        kind: CheckpointKind,
        *,
        signer: Keypair | None = None,
        spend: int = 0,
        advance: int = 0,
        append: bool = True,
        **overrides: Any,
    ) -> Checkpoint:
        values: dict[str, Any] = dict(
            agent=self.agent,
            epoch=self.epoch,
            tick=self.tick + advance,
            prev=self.head,
            kind=kind,
            wasm_hash=WASM_HASH,
            manifest_hash=MANIFEST_HASH,
            budget=max(self.budget - spend, 0),
            price=1000,
            wall_ns=self._next_wall(),
            state=f"state@{self.tick + advance}".encode(),
            owner=self.custodian.public_key,
        )
        if kind in (CheckpointKind.GENESIS, CheckpointKind.IMPORT):
            values["witnesses"] = node_keys(self.witnesses)
        values.update(overrides)
        ck = UnsignedCheckpoint(**values).sign(signer or self.custodian)
        if append:
            self.entries.append(ck)
            self.tick, self.budget = ck.tick, ck.budget
        return ck

    def genesis(self, **overrides: Any) -> Checkpoint:
        overrides.setdefault("owner", self.first_owner.public_key)
        return self.checkpoint(CheckpointKind.GENESIS, signer=self.agent_key, **overrides)

    def tick_checkpoint(self, **overrides: Any) -> Checkpoint:
        overrides.setdefault("advance", 5)
        overrides.setdefault("spend", 1_000)
        return self.checkpoint(CheckpointKind.TICK, **overrides)

    def handoff(self, **overrides: Any) -> Checkpoint:
        return self.checkpoint(CheckpointKind.HANDOFF, **overrides)

    def final(self, **overrides: Any) -> Checkpoint:
        return self.checkpoint(CheckpointKind.FINAL, **overrides)

    def transfer(
        self,
        to: Keypair,
        *,
        signer: Keypair | None = None,
        witnesses: tuple[Keypair, ...] | None = None,
        certify: bool = True,
        **overrides: Any,
    ) -> TransferRecord:
        """Append a transfer to ``to`` (naming ``witnesses``, by default the current set) and,
        unless ``certify`` is false, the certificate that makes it count."""
        new_set = self.witnesses if witnesses is None else witnesses
        values: dict[str, Any] = dict(
            agent=self.agent,
            from_epoch=self.epoch,
            to_epoch=self.epoch + 1,
            from_node=self.custodian.public_key,
            to_node=to.public_key,
            prev=self.head,
            migration_id=bytes([len(self.entries)]) * 16,
            wall_ns=self._next_wall(),
            witnesses=node_keys(new_set),
        )
        values.update(overrides)
        rec = UnsignedTransferRecord(**values).sign(signer or self.custodian)
        self._start_epoch(rec, to, new_set, certify)
        return rec

    def forced(
        self,
        node: Keypair,
        *,
        signer: Keypair | None = None,
        witnesses: tuple[Keypair, ...] | None = None,
        certify: bool = True,
        **overrides: Any,
    ) -> ForcedRecovery:
        new_set = self.witnesses if witnesses is None else witnesses
        values: dict[str, Any] = dict(
            agent=self.agent,
            from_epoch=self.epoch,
            to_epoch=self.epoch + 2,
            node=node.public_key,
            prev=self.head,
            forced_by="operator@example",
            reason="source unreachable",
            wall_ns=self._next_wall(),
            witnesses=node_keys(new_set),
        )
        values.update(overrides)
        rec = UnsignedForcedRecovery(**values).sign(signer or node)
        self._start_epoch(rec, node, new_set, certify)
        return rec

    def _start_epoch(
        self, rec: EpochRecord, owner: Keypair, new_set: tuple[Keypair, ...], certify: bool
    ) -> None:
        self.entries.append(rec)
        previous_set = self.witnesses
        self.custodian, self.epoch, self.witnesses = owner, rec.to_epoch, new_set
        if certify:
            self.cert(rec, previous=previous_set)

    def cert(
        self,
        record: EpochRecord,
        *,
        previous: tuple[Keypair, ...] | None = None,
        voters: tuple[Keypair, ...] | None = None,
        proposer: Keypair | None = None,
        append: bool = True,
        **overrides: Any,
    ) -> WitnessCert:
        """The certificate of ``record``: by default every member of the previous and the new
        witness set except the proposer (the record's signer) votes."""
        proposer_key = proposer.public_key if proposer else record.signer
        if voters is None:
            members = {*(previous or ()), *self.witnesses}
            voters = tuple(k for k in members if k.public_key != proposer_key)
        slot = overrides.pop("slot", record.to_epoch)
        ballot = overrides.pop("ballot", Ballot(1, proposer_key, BALLOT_NONCE))
        digest = overrides.pop("prev", record.digest())
        votes = [
            sign_vote(k, overrides.get("agent", self.agent), slot, ballot, digest) for k in voters
        ]
        agent = overrides.pop("agent", self.agent)
        if overrides:
            raise TypeError(f"unknown certificate overrides: {sorted(overrides)}")
        cert = WitnessCert.build(agent, slot, ballot, digest, votes)
        if append:
            self.entries.append(cert)
        return cert

    def export(self, *, signer: Keypair | None = None, **overrides: Any) -> ExportRecord:
        """The terminal export-to-Go record, signed by the custodian."""
        values: dict[str, Any] = dict(
            agent=self.agent,
            epoch=self.epoch,
            owner=self.custodian.public_key,
            prev=self.head,
            tick=self.tick,
            go_checkpoint=b"\x60" * 32,
            wall_ns=self._next_wall(),
        )
        values.update(overrides)
        rec = UnsignedExportRecord(**values).sign(signer or self.custodian)
        self.entries.append(rec)
        return rec

    def migrate(self, to: Keypair) -> None:
        self.handoff()
        self.transfer(to)

    def encoded(self) -> list[bytes]:
        return [e.encode() for e in self.entries]


def happy_lineage() -> LineageBuilder:
    """Genesis on A, ticks, migrate A→B (+ cert), ticks, forced recovery by C (+ cert), ticks,
    final: 11 entries, witnesses {A, B, C} throughout."""
    b = LineageBuilder()
    b.genesis()
    b.tick_checkpoint()
    b.tick_checkpoint()
    b.migrate(NODE_B)
    b.tick_checkpoint()
    b.forced(NODE_C)
    b.tick_checkpoint()
    b.final()
    return b


def resign(entry: Checkpoint, keypair: Keypair, **changes: Any) -> Checkpoint:
    """The same checkpoint with ``changes`` applied, signed afresh by ``keypair``."""
    return dataclasses.replace(entry.unsigned, **changes).sign(keypair)


# --- Go Igor v0x04 histories --------------------------------------------------------------------

GO_AGENT = Keypair.from_seed(bytes([0x60]) * 32)
GO_WASM_HASH = hashlib.sha256(b"known-wasm-binary-for-golden-test").digest()


def go_chain(count: int = 4, keypair: Keypair = GO_AGENT) -> list[Any]:
    """``count`` linked v0x04 blobs at ticks 0, 5, 10, …, spending budget, epoch (1, 0)."""
    from igor_p2p.lineage.igor_go import GoCheckpointFields, encode_go_v4

    blobs: list[bytes] = []
    prev = ZERO_HASH
    for i in range(count):
        blob = encode_go_v4(
            GoCheckpointFields(
                budget=1_000_000 - 1_000 * i,
                price=1000,
                tick=5 * i,
                wasm_hash=GO_WASM_HASH,
                major=1,
                generation=0,
                lease_expiry=0,
                prev_hash=prev,
                state=(i).to_bytes(8, "little"),
            ),
            keypair,
        )
        blobs.append(blob)
        prev = hashlib.sha256(blob).digest()
    return blobs


def write_go_history(directory: Any, blobs: list[bytes], ticks: list[int] | None = None) -> Any:
    """Write blobs as Go does: ``<tick, zero-padded to 10>.ckpt``."""
    from igor_p2p.lineage.igor_go import parse_go_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(blobs):
        tick = ticks[i] if ticks is not None else parse_go_checkpoint(blob).tick
        (directory / f"{tick:010d}.ckpt").write_bytes(blob)
    return directory
