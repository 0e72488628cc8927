"""What a node can prove about who owns each epoch of an agent (pure).

An :class:`EpochStart` is one link of an agent's chain of custody: the entry that started an
epoch (the genesis for epoch 1, a certified custody record for every later one), the node that
owns the epoch and the epoch's witness set. :func:`genesis_start` and :func:`next_start` build
links only from evidence that verifies — the agent key's signature on the genesis, the previous
owner's signature on a transfer, and a witness certificate that is a joint quorum of the old and
new witness sets — so a chain of them is proof that no other record was chosen for those epochs.

Every function raises :class:`InvalidCustody` (an ``InvalidInput``) on anything that does not
verify; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage.cert import CorruptCert, WitnessCert
from igor_p2p.lineage.custody import CorruptCustodyRecord, ForcedRecovery, TransferRecord
from igor_p2p.lineage.entries import EpochRecord, decode_entry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, CorruptCheckpoint
from igor_p2p.lineage.identity import BadSignature, InvalidDID, public_key_from_did

MAX_CHAIN_LINKS = 100_000
"""Most epochs one custody chain is allowed to carry (a decoder cap, not a protocol limit)."""


class InvalidCustody(InvalidInput):
    """Evidence about an agent's custody that does not verify."""


@dataclass(frozen=True)
class EpochStart:
    """The verified start of one epoch of one agent."""

    agent: str
    epoch: int
    owner: bytes
    """Node key of the node that owns this epoch."""
    witnesses: tuple[bytes, ...]
    """The epoch's witness set."""
    digest: bytes
    """Digest of the starting entry: the genesis, or the certificate of the custody record (the
    epoch's first checkpoint names it as ``prev``)."""
    record: bytes = b""
    """The encoded custody record (empty for the genesis)."""
    cert: bytes = b""
    """The encoded witness certificate (empty for the genesis)."""
    forced: bool = False
    genesis: bytes = b""
    """The encoded genesis checkpoint (epoch 1 only)."""

    @property
    def is_genesis(self) -> bool:
        return not self.record

    def links(self) -> tuple[bytes, ...]:
        """This link on the wire: ``(record, cert)``, or ``(genesis,)`` for epoch 1."""
        return (self.genesis,) if self.is_genesis else (self.record, self.cert)


def genesis_start(genesis: Checkpoint, *, verified: bool = False) -> EpochStart:
    """Epoch 1 from a GENESIS or IMPORT checkpoint signed by the agent key."""
    if genesis.kind not in (CheckpointKind.GENESIS, CheckpointKind.IMPORT) or genesis.epoch != 1:
        raise InvalidCustody("the first link of a custody chain must be a genesis at epoch 1")
    try:
        agent_key = public_key_from_did(genesis.agent)
    except InvalidDID as exc:  # pragma: no cover - the envelope validated the DID
        raise InvalidCustody(str(exc)) from None
    if genesis.signer != agent_key:
        raise InvalidCustody("the genesis is not signed by the agent key")
    if not verified:
        try:
            genesis.verify_signature()
        except BadSignature:
            raise InvalidCustody("the genesis signature does not verify") from None
    return EpochStart(
        agent=genesis.agent,
        epoch=1,
        owner=genesis.owner,
        witnesses=genesis.witnesses,
        digest=genesis.digest(),
        genesis=genesis.encode(),
    )


def decode_record(blob: bytes) -> EpochRecord:
    try:
        entry = decode_entry(blob)
    except (CorruptCustodyRecord, CorruptCheckpoint, CorruptCert, InvalidInput) as exc:
        raise InvalidCustody(f"not a custody record: {exc}") from None
    if not isinstance(entry, TransferRecord | ForcedRecovery):
        raise InvalidCustody("not a custody record")
    return entry


def decode_cert(blob: bytes) -> WitnessCert:
    try:
        return WitnessCert.decode(blob)
    except InvalidInput as exc:
        raise InvalidCustody(f"not a witness certificate: {exc}") from None


def check_record(previous: EpochStart, record: EpochRecord, *, verified: bool = False) -> None:
    """Raise unless ``record`` may start epoch ``previous.epoch + 1`` (its certificate aside)."""
    if record.agent != previous.agent:
        raise InvalidCustody("the custody record names another agent")
    if record.from_epoch != previous.epoch or record.to_epoch != previous.epoch + 1:
        raise InvalidCustody(
            f"the custody record moves epoch {record.from_epoch} to {record.to_epoch}, "
            f"expected {previous.epoch} to {previous.epoch + 1}"
        )
    if isinstance(record, TransferRecord) and record.from_node != previous.owner:
        raise InvalidCustody("the transfer is not signed by the owner of the epoch it ends")
    if not verified:
        try:
            record.verify_signature()
        except BadSignature:
            raise InvalidCustody("the custody record's signature does not verify") from None


def next_start(
    previous: EpochStart, record_blob: bytes, cert_blob: bytes, *, verified: bool = False
) -> EpochStart:
    """The start of epoch ``previous.epoch + 1`` from its record and certificate."""
    record = decode_record(record_blob)
    check_record(previous, record, verified=verified)
    cert = decode_cert(cert_blob)
    if cert.agent != previous.agent or cert.slot != record.to_epoch:
        raise InvalidCustody("the certificate certifies another agent or epoch")
    if cert.record_digest != record.digest():
        raise InvalidCustody("the certificate certifies another record")
    shortfall = cert.shortfall(previous.witnesses, record.witnesses, trusted=verified)
    if shortfall is not None:
        raise InvalidCustody(f"the certificate is not a witness quorum: {shortfall}")
    return EpochStart(
        agent=previous.agent,
        epoch=record.to_epoch,
        owner=record.owner,
        witnesses=record.witnesses,
        digest=cert.digest(),
        record=record_blob,
        cert=cert_blob,
        forced=isinstance(record, ForcedRecovery),
    )


def follow(
    start: EpochStart, links: Sequence[bytes], *, verified: bool = False
) -> list[EpochStart]:
    """Verify ``links`` (record, certificate, record, certificate, …) after ``start``; returns
    the new epoch starts in order (empty when ``links`` is empty)."""
    if len(links) % 2 or len(links) > 2 * MAX_CHAIN_LINKS:
        raise InvalidCustody("a custody chain is pairs of (record, certificate)")
    out: list[EpochStart] = []
    current = start
    for i in range(0, len(links), 2):
        current = next_start(current, links[i], links[i + 1], verified=verified)
        out.append(current)
    return out


def chain_from_genesis(
    genesis_blob: bytes, links: Sequence[bytes], *, verified: bool = False
) -> list[EpochStart]:
    """Every epoch start from the genesis through ``links``."""
    try:
        genesis = decode_entry(genesis_blob)
    except InvalidInput as exc:
        raise InvalidCustody(f"not a genesis: {exc}") from None
    if not isinstance(genesis, Checkpoint):
        raise InvalidCustody("the first link of a custody chain must be a genesis checkpoint")
    first = genesis_start(genesis, verified=verified)
    return [first, *follow(first, links, verified=verified)]


def chain_after(starts: Sequence[EpochStart], after: int) -> tuple[int, tuple[bytes, ...]]:
    """The wire form of the custody in ``starts`` after epoch ``after``: ``(after, blobs)``."""
    blobs: list[bytes] = []
    for start in starts:
        if start.epoch > after:
            blobs.extend(start.links())
    return after, tuple(blobs)


def read_chain(
    after: int, blobs: Sequence[bytes], known: EpochStart | None, *, verified: bool = False
) -> list[EpochStart]:
    """The epoch starts a wire chain proves beyond ``known`` (verified; empty when none).

    ``after`` is the epoch the chain continues from (0: it starts with the genesis). Links at or
    below ``known.epoch`` are skipped, but the one at ``known.epoch`` must be ``known`` itself: a
    chain that disagrees with what the reader already proved raises :class:`InvalidCustody`.
    """
    if not blobs:
        return []
    if after == 0:
        starts = chain_from_genesis(blobs[0], blobs[1:], verified=verified)
    else:
        if known is None or after > known.epoch:
            raise InvalidCustody(f"the chain continues from epoch {after}, which is not known")
        skip = 2 * (known.epoch - after)
        if skip > len(blobs):
            raise InvalidCustody("the chain ends before the known epoch")
        if skip and decode_cert(blobs[skip - 1]).digest() != known.digest:
            raise InvalidCustody("the chain disagrees with the known custody")
        return follow(known, blobs[skip:], verified=verified)
    if known is None:
        return starts
    if len(starts) < known.epoch:
        return []
    if starts[known.epoch - 1].digest != known.digest:
        raise InvalidCustody("the chain disagrees with the known custody")
    return starts[known.epoch :]
