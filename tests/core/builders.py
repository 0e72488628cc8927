"""Real, signed agent lives for the core and store tests: a genesis, ticks, handoffs, transfer
and forced-recovery records (v2, naming witness sets) and the witness certificates that start
each epoch, signed by witness keys (fixed seeds, no randomness)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from igor_p2p.authority.custody import EpochStart, genesis_start, next_start
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.cert import Ballot, WitnessCert, sign_vote
from igor_p2p.lineage.custody import (
    ForcedRecovery,
    TransferRecord,
    UnsignedForcedRecovery,
    UnsignedTransferRecord,
)
from igor_p2p.lineage.entries import LineageEntry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair


def key(name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(f"core-tests/{name}".encode()).digest())


NODE_A = key("node-a")
NODE_B = key("node-b")
NODE_C = key("node-c")
WITNESS_KEYS = tuple(key(f"witness-{i}") for i in range(5))

WASM = b"\x00asm\x01\x00\x00\x00"
MANIFEST = b'{"capabilities":["clock","log"]}'
WASM_HASH = hashlib.sha256(WASM).digest()
MANIFEST_HASH = hashlib.sha256(MANIFEST).digest()


def witness_set(keys: Sequence[Keypair]) -> tuple[bytes, ...]:
    return tuple(sorted(k.public_key for k in keys))


@dataclass
class AgentLife:
    """Appends correctly linked, correctly signed entries of one agent, and keeps the custody
    they prove (``starts``, built by the verifying functions of the authority core)."""

    name: str = "agent"
    budget: int = 10**12
    agent_key: Keypair = field(init=False)
    entries: list[LineageEntry] = field(default_factory=list)
    starts: list[EpochStart] = field(default_factory=list)
    owner: Keypair = field(init=False)
    witnesses: tuple[Keypair, ...] = ()
    epoch: int = 1
    tick: int = 0
    wall_ns: int = 1_700_000_000_000_000_000
    _ballots: int = 0

    def __post_init__(self) -> None:
        self.agent_key = key(f"agent/{self.name}")

    @property
    def agent(self) -> str:
        return self.agent_key.did

    @property
    def head(self) -> bytes:
        return self.entries[-1].digest() if self.entries else ZERO_HASH

    def blobs(self, start: int = 0, stop: int | None = None) -> list[bytes]:
        return [e.encode() for e in self.entries[start:stop]]

    def _wall(self) -> int:
        self.wall_ns += 1_000_000
        return self.wall_ns

    def _checkpoint(self, kind: CheckpointKind, *, advance: int, signer: Keypair) -> Checkpoint:
        self.tick += advance
        self.budget -= advance
        ck = UnsignedCheckpoint(
            agent=self.agent,
            epoch=self.epoch,
            tick=self.tick,
            prev=self.head,
            kind=kind,
            wasm_hash=WASM_HASH,
            manifest_hash=MANIFEST_HASH,
            budget=self.budget,
            price=1,
            wall_ns=self._wall(),
            state=f"{self.name}@{self.tick}".encode(),
            owner=self.owner.public_key,
            witnesses=witness_set(self.witnesses) if kind is CheckpointKind.GENESIS else (),
        ).sign(signer)
        self.entries.append(ck)
        return ck

    def genesis(self, owner: Keypair = NODE_A, witnesses: Sequence[Keypair] = ()) -> Checkpoint:
        self.owner = owner
        self.witnesses = tuple(witnesses) or WITNESS_KEYS[:3]
        ck = self._checkpoint(CheckpointKind.GENESIS, advance=0, signer=self.agent_key)
        self.starts.append(genesis_start(ck))
        return ck

    def tick_checkpoint(self) -> Checkpoint:
        return self._checkpoint(CheckpointKind.TICK, advance=1, signer=self.owner)

    def ticks(self, n: int) -> list[Checkpoint]:
        return [self.tick_checkpoint() for _ in range(n)]

    def handoff(self) -> Checkpoint:
        return self._checkpoint(CheckpointKind.HANDOFF, advance=0, signer=self.owner)

    def final(self) -> Checkpoint:
        return self._checkpoint(CheckpointKind.FINAL, advance=0, signer=self.owner)

    def transfer(self, to: Keypair, witnesses: Sequence[Keypair] = ()) -> TransferRecord:
        """A transfer (or, to the owner itself, a resume) record for the next epoch; not yet
        certified (call :meth:`certify`)."""
        record = UnsignedTransferRecord(
            agent=self.agent,
            from_epoch=self.epoch,
            to_epoch=self.epoch + 1,
            from_node=self.owner.public_key,
            to_node=to.public_key,
            prev=self.head,
            migration_id=bytes([len(self.entries) % 256]) * 16,
            wall_ns=self._wall(),
            witnesses=witness_set(witnesses or self.witnesses),
        ).sign(self.owner)
        self.entries.append(record)
        return record

    def forced(self, node: Keypair, witnesses: Sequence[Keypair] = ()) -> ForcedRecovery:
        record = UnsignedForcedRecovery(
            agent=self.agent,
            from_epoch=self.epoch,
            to_epoch=self.epoch + 1,
            node=node.public_key,
            prev=self.head,
            forced_by="operator@example",
            reason="the owner is gone",
            wall_ns=self._wall(),
            witnesses=witness_set(witnesses or self.witnesses),
        ).sign(node)
        self.entries.append(record)
        return record

    def certify(self, new_witnesses: Sequence[Keypair] = ()) -> WitnessCert:
        """The certificate of the record at the end of the chain: votes of every witness of the
        old and the new set (a joint quorum), signed by the witness keys."""
        record = self.entries[-1]
        assert isinstance(record, TransferRecord | ForcedRecovery)
        new = tuple(new_witnesses) or self.witnesses
        self._ballots += 1
        ballot = Ballot(self._ballots, record.owner, bytes(8))
        voters = {k.public_key: k for k in (*self.witnesses, *new)}
        votes = [
            sign_vote(k, self.agent, record.to_epoch, ballot, record.digest())
            for k in voters.values()
        ]
        cert = WitnessCert.build(self.agent, record.to_epoch, ballot, record.digest(), votes)
        self.entries.append(cert)
        self.starts.append(next_start(self.starts[-1], record.encode(), cert.encode()))
        self.owner = key_of(record.owner)
        self.witnesses = new
        self.epoch = record.to_epoch
        return cert

    def migrate(self, to: Keypair, witnesses: Sequence[Keypair] = ()) -> None:
        """HANDOFF checkpoint, transfer to ``to`` and its certificate."""
        self.handoff()
        self.transfer(to, witnesses)
        self.certify(witnesses)


KNOWN_NODES = {k.public_key: k for k in (NODE_A, NODE_B, NODE_C)}


def key_of(public_key: bytes) -> Keypair:
    return KNOWN_NODES[public_key]
