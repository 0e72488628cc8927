"""Real, signed custody for the authority tests (fixed seeds, no randomness).

An agent, seven nodes (A…G), genesis checkpoints, custody records and witness certificates, and
:class:`Custody`, which grows a verified chain of :class:`EpochStart` links one certified epoch at
a time. Everything here goes through the production codecs and :func:`next_start`, so a link the
helpers build is a link the core would accept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from igor_p2p.authority.custody import EpochStart, chain_after, genesis_start, next_start
from igor_p2p.lineage.cert import Ballot, WitnessCert, sign_vote
from igor_p2p.lineage.custody import (
    ForcedRecovery,
    TransferRecord,
    UnsignedForcedRecovery,
    UnsignedTransferRecord,
)
from igor_p2p.lineage.entries import EpochRecord
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair

AGENT_KEY = Keypair.from_seed(b"\x11" * 32)
AGENT = AGENT_KEY.did
OTHER_AGENT_KEY = Keypair.from_seed(b"\x12" * 32)

NODES = {name: Keypair.from_seed(bytes([0x41 + i]) * 32) for i, name in enumerate("ABCDEFG")}
A, B, C, D, E, F, G = (NODES[n] for n in "ABCDEFG")
KEY_OF = {k.public_key: k for k in NODES.values()}
NAME_OF = {k.public_key: n for n, k in NODES.items()}

WASM = b"\x00asm\x01\x00\x00\x00"
MANIFEST = b'{"capabilities":["clock"]}'
WASM_HASH = hashlib.sha256(WASM).digest()
MANIFEST_HASH = hashlib.sha256(MANIFEST).digest()
NONCE = b"nonce-01"


def pks(*keys: Keypair) -> tuple[bytes, ...]:
    """A witness set as the records name it: sorted node keys."""
    return tuple(sorted({k.public_key for k in keys}))


def keys_of(members: Iterable[bytes]) -> tuple[Keypair, ...]:
    return tuple(KEY_OF[m] for m in members)


def make_genesis(
    owner: Keypair = A,
    witnesses: Sequence[Keypair] = (B, C, D),
    *,
    agent_key: Keypair = AGENT_KEY,
    budget: int = 1_000_000,
    state: bytes = b"genesis",
) -> Checkpoint:
    return UnsignedCheckpoint(
        agent=agent_key.did,
        epoch=1,
        tick=0,
        prev=bytes(32),
        kind=CheckpointKind.GENESIS,
        wasm_hash=WASM_HASH,
        manifest_hash=MANIFEST_HASH,
        budget=budget,
        price=1000,
        wall_ns=1_700_000_000_000_000_000,
        state=state,
        owner=owner.public_key,
        witnesses=pks(*witnesses),
    ).sign(agent_key)


def make_checkpoint(
    start: EpochStart,
    prev: bytes,
    *,
    kind: CheckpointKind = CheckpointKind.HANDOFF,
    tick: int = 10,
    budget: int = 900_000,
    signer: Keypair | None = None,
    **changes: object,
) -> Checkpoint:
    """A checkpoint of ``start``'s epoch by its owner (a HANDOFF by default)."""
    values: dict[str, object] = dict(
        agent=start.agent,
        epoch=start.epoch,
        tick=tick,
        prev=prev,
        kind=kind,
        wasm_hash=WASM_HASH,
        manifest_hash=MANIFEST_HASH,
        budget=budget,
        price=1000,
        wall_ns=1_700_000_000_000_000_000 + tick,
        state=b"state@%d" % tick,
        owner=start.owner,
    )
    values.update(changes)
    return UnsignedCheckpoint(**values).sign(signer or KEY_OF[start.owner])  # type: ignore[arg-type]


def make_transfer(
    previous: EpochStart,
    to: Keypair,
    *,
    witnesses: Sequence[Keypair] | None = None,
    signer: Keypair | None = None,
    prev: bytes | None = None,
    migration_id: bytes = b"\x07" * 16,
    **changes: object,
) -> TransferRecord:
    """The transfer of ``previous``'s epoch to ``to`` (a resume when ``to`` is the owner)."""
    values: dict[str, object] = dict(
        agent=previous.agent,
        from_epoch=previous.epoch,
        to_epoch=previous.epoch + 1,
        from_node=previous.owner,
        to_node=to.public_key,
        prev=previous.digest if prev is None else prev,
        migration_id=migration_id,
        wall_ns=1_700_000_001_000_000_000,
        witnesses=previous.witnesses if witnesses is None else pks(*witnesses),
    )
    values.update(changes)
    unsigned = UnsignedTransferRecord(**values)  # type: ignore[arg-type]
    return unsigned.sign(signer or KEY_OF[previous.owner])


def make_forced(
    previous: EpochStart,
    node: Keypair,
    *,
    witnesses: Sequence[Keypair] | None = None,
    prev: bytes | None = None,
    operator: str = "operator@example",
) -> ForcedRecovery:
    return UnsignedForcedRecovery(
        agent=previous.agent,
        from_epoch=previous.epoch,
        to_epoch=previous.epoch + 1,
        node=node.public_key,
        prev=previous.digest if prev is None else prev,
        forced_by=operator,
        reason="the operator says so",
        wall_ns=1_700_000_002_000_000_000,
        witnesses=previous.witnesses if witnesses is None else pks(*witnesses),
    ).sign(node)


def ballot(proposer: Keypair, round_: int = 1, nonce: bytes = NONCE) -> Ballot:
    return Ballot(round_, proposer.public_key, nonce)


def make_cert(
    record: EpochRecord,
    voters: Iterable[Keypair],
    *,
    proposer: Keypair | None = None,
    round_: int = 1,
) -> WitnessCert:
    b = ballot(proposer or KEY_OF[record.signer], round_)
    digest = record.digest()
    votes = [sign_vote(k, record.agent, record.to_epoch, b, digest) for k in voters]
    return WitnessCert.build(record.agent, record.to_epoch, b, digest, votes)


def default_voters(previous: EpochStart, record: EpochRecord, proposer: bytes) -> list[Keypair]:
    """Every member of the old and the new witness set except the proposer."""
    members = set(previous.witnesses) | set(record.witnesses)
    return [KEY_OF[m] for m in sorted(members) if m != proposer]


def certify(
    previous: EpochStart,
    record: EpochRecord,
    *,
    voters: Iterable[Keypair] | None = None,
    proposer: Keypair | None = None,
    round_: int = 1,
) -> EpochStart:
    """The verified start of the epoch ``record`` begins, certified by ``voters``."""
    who = proposer or KEY_OF[record.signer]
    chosen = default_voters(previous, record, who.public_key) if voters is None else voters
    cert = make_cert(record, chosen, proposer=who, round_=round_)
    return next_start(previous, record.encode(), cert.encode())


class Custody:
    """One agent's verified chain of custody, grown one certified epoch at a time."""

    def __init__(
        self,
        owner: Keypair = A,
        witnesses: Sequence[Keypair] = (B, C, D),
        *,
        agent_key: Keypair = AGENT_KEY,
        state: bytes = b"genesis",
    ) -> None:
        self.genesis = make_genesis(owner, witnesses, agent_key=agent_key, state=state)
        self.starts: list[EpochStart] = [genesis_start(self.genesis)]

    @property
    def agent(self) -> str:
        return self.genesis.agent

    @property
    def latest(self) -> EpochStart:
        return self.starts[-1]

    def at(self, epoch: int) -> EpochStart:
        return self.starts[epoch - 1]

    def copy(self) -> Custody:
        twin = Custody.__new__(Custody)
        twin.genesis, twin.starts = self.genesis, list(self.starts)
        return twin

    def add(self, record: EpochRecord, **certify_args: object) -> EpochStart:
        start = certify(self.latest, record, **certify_args)  # type: ignore[arg-type]
        self.starts.append(start)
        return start

    def hand(
        self,
        to: Keypair,
        *,
        witnesses: Sequence[Keypair] | None = None,
        prev: bytes | None = None,
        **certify_args: object,
    ) -> EpochStart:
        """The owner hands the agent to ``to`` (certified); returns the new epoch's start."""
        record = make_transfer(self.latest, to, witnesses=witnesses, prev=prev)
        return self.add(record, **certify_args)

    def resume(self, **kwargs: object) -> EpochStart:
        """The owner claims the next epoch for itself (a self-transfer)."""
        return self.hand(KEY_OF[self.latest.owner], **kwargs)  # type: ignore[arg-type]

    def force(self, node: Keypair, **certify_args: object) -> EpochStart:
        return self.add(make_forced(self.latest, node), **certify_args)

    def wire(self, after: int = 0) -> tuple[int, tuple[bytes, ...]]:
        """The custody after epoch ``after`` as it travels on the wire."""
        return chain_after(self.starts, after)
