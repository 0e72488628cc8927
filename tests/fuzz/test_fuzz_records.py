"""Fuzz: every record format read from a peer, the DHT or a file (checkpoint envelopes,
custody records, witness certificates, export records, bundles, Go Igor checkpoints, DHT
location records, key files) decodes or fails with a typed error, never anything else."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import msgpack
from hypothesis import strategies as st

from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.cert import Ballot, WitnessCert, sign_vote
from igor_p2p.lineage.custody import UnsignedForcedRecovery, UnsignedTransferRecord
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.export import UnsignedExportRecord
from igor_p2p.lineage.identity import Keypair, load_go_identity, load_key_file, save_key_file
from igor_p2p.lineage.igor_go import parse_go_checkpoint
from igor_p2p.net.dht import decode_location, sign_location

from .fuzzing import fuzz, hostile_bytes, packb, replaced_item, typed_only

AGENT = Keypair.from_seed(bytes([7]) * 32)
NODE = Keypair.from_seed(bytes([9]) * 32)
WITNESS = Keypair.from_seed(bytes([11]) * 32)
H = hashlib.sha256(b"x").digest()
WITNESSES = tuple(sorted([NODE.public_key, WITNESS.public_key]))


def _checkpoint(tick: int, budget: int, state: bytes, kind: CheckpointKind) -> bytes:
    return (
        UnsignedCheckpoint(
            agent=AGENT.did,
            epoch=1,
            tick=tick,
            prev=bytes(32),
            kind=kind,
            wasm_hash=H,
            manifest_hash=H,
            budget=budget,
            price=1000,
            wall_ns=1_700_000_000_000_000_000,
            state=state,
            owner=NODE.public_key,
            witnesses=WITNESSES if kind in (CheckpointKind.GENESIS, CheckpointKind.IMPORT) else (),
        )
        .sign(AGENT)
        .encode()
    )


checkpoints = st.builds(
    _checkpoint,
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**63 - 1),
    st.binary(max_size=64),
    st.sampled_from(list(CheckpointKind)),
)
transfers = st.builds(
    lambda epoch, mid: (
        UnsignedTransferRecord(
            agent=AGENT.did,
            from_epoch=epoch,
            to_epoch=epoch + 1,
            from_node=NODE.public_key,
            to_node=AGENT.public_key,
            prev=H,
            migration_id=mid,
            wall_ns=5,
            witnesses=WITNESSES,
        )
        .sign(NODE)
        .encode()
    ),
    st.integers(1, 2**62),
    st.binary(min_size=16, max_size=16),
)
forced = st.builds(
    lambda epoch, who: (
        UnsignedForcedRecovery(
            agent=AGENT.did,
            from_epoch=epoch,
            to_epoch=epoch + 2,
            node=NODE.public_key,
            prev=H,
            forced_by=who,
            reason="fuzz",
            wall_ns=5,
            witnesses=WITNESSES,
        )
        .sign(NODE)
        .encode()
    ),
    st.integers(1, 2**62),
    st.text(min_size=1, max_size=20),
)
certs = st.builds(
    lambda slot, round_, voters: (
        WitnessCert.build(
            AGENT.did,
            slot,
            Ballot(round_, NODE.public_key, b"nonce-01"),
            H,
            [sign_vote(k, AGENT.did, slot, Ballot(round_, NODE.public_key, b"nonce-01"), H)
             for k in voters],
        ).encode()
    ),
    st.integers(2, 2**62),
    st.integers(0, 2**62),
    st.lists(st.sampled_from([NODE, WITNESS]), max_size=2),
)  # fmt: skip
exports = st.builds(
    lambda epoch, tick: (
        UnsignedExportRecord(
            agent=AGENT.did,
            epoch=epoch,
            owner=NODE.public_key,
            prev=H,
            tick=tick,
            go_checkpoint=H,
            wall_ns=5,
        )
        .sign(NODE)
        .encode()
    ),
    st.integers(1, 2**62),
    st.integers(0, 2**62),
)
valid_entries = st.one_of(checkpoints, transfers, forced, certs, exports)
entry_inputs = st.one_of(
    hostile_bytes(valid_entries),
    replaced_item(valid_entries.map(lambda b: msgpack.unpackb(b, raw=False))).map(packb),
)


@fuzz(entry_inputs)
def _entries(data: bytes) -> None:
    """Checkpoints, transfer, forced-recovery and export records, witness certificates: decode
    (canonically) or CorruptEntry."""
    entry = typed_only(decode_entry, data)
    if entry is not None:
        assert entry.encode() == data  # one value, one encoding


test_lineage_entries_decode_or_fail_typed, test_lineage_entries_soak = _entries


bundles = st.builds(
    lambda wasm, manifest, entries: AgentBundle(wasm, manifest, tuple(entries)).encode(),
    st.binary(max_size=32),
    st.binary(max_size=32),
    st.lists(valid_entries, max_size=3),
)


@fuzz(
    st.one_of(
        hostile_bytes(bundles),
        replaced_item(bundles.map(lambda b: msgpack.unpackb(b, raw=False))).map(packb),
    )
)
def _bundles(data: bytes) -> None:
    """Bundle files: decode, then verify, each either works or fails typed."""
    bundle = typed_only(AgentBundle.decode, data)
    if bundle is not None:
        report = bundle.verify()
        assert report.valid in (True, False)


test_bundles_decode_or_fail_typed, test_bundles_soak = _bundles


go_checkpoints = st.builds(
    lambda version, body: bytes([version]) + body,
    st.sampled_from([0x02, 0x03, 0x04, 0x05, 0x01]),
    st.binary(min_size=0, max_size=260),
)


@fuzz(st.one_of(go_checkpoints, hostile_bytes(go_checkpoints)))
def _go(data: bytes) -> None:
    """Go Igor checkpoints (v0x02..v0x04): parse or GoCheckpointError."""
    typed_only(parse_go_checkpoint, data)


test_go_checkpoints_parse_or_fail_typed, test_go_checkpoints_soak = _go


locations = st.builds(
    lambda epoch, wall: sign_location(
        NODE.seed, agent=AGENT.did, epoch=epoch, wall_ns=wall
    ).encode(),
    st.integers(1, 2**63 - 1),
    st.integers(0, 2**63 - 1),
)


@fuzz(
    st.one_of(
        hostile_bytes(locations),
        st.builds(
            lambda d, k, v: packb({**d, k: v}),
            locations.map(lambda b: msgpack.unpackb(b, raw=False)),
            st.sampled_from(["agent", "epoch", "owner", "wall_ns", "sig"]),
            st.integers(-(2**63), 2**64 - 1) | st.text(max_size=200) | st.binary(max_size=80),
        ),
    )
)
def _locations(data: bytes) -> None:
    """DHT location records: a signed record with int64 epoch/time, or InvalidLocationRecord."""
    record = typed_only(decode_location, data)
    if record is not None:
        assert 1 <= record.epoch <= 2**63 - 1 and 0 <= record.wall_ns <= 2**63 - 1


test_dht_locations_decode_or_fail_typed, test_dht_locations_soak = _locations


_KEY_DIR = Path(tempfile.mkdtemp(prefix="igor-fuzz-keys-"))
_valid_key = _KEY_DIR / "valid.key"
save_key_file(_valid_key, AGENT)
_VALID_KEY_BYTES = _valid_key.read_bytes()


@fuzz(hostile_bytes(st.just(_VALID_KEY_BYTES)) | st.binary(min_size=60, max_size=80))
def _keys(data: bytes) -> None:
    """Key files (ours and Go Igor identities): load or fail typed."""
    path = _KEY_DIR / "fuzzed.key"
    path.write_bytes(data)
    path.chmod(0o600)
    typed_only(load_key_file, path)
    typed_only(load_go_identity, path)


test_key_files_load_or_fail_typed, test_key_files_soak = _keys
