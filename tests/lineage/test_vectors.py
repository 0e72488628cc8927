"""The stored protocol test vectors still decode, verify, and match their generator."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.cert import WitnessCert, vote_bytes
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint, CorruptCheckpoint
from igor_p2p.lineage.identity import BadSignature, Keypair, verify_signature
from igor_p2p.lineage.igor_go import parse_go_checkpoint, verify_go_history, verify_go_signature
from igor_p2p.lineage.verify import verify_lineage

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors"
INDEX = json.loads((VECTORS / "vectors.json").read_text())


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stored_vectors_are_exactly_what_the_generator_produces() -> None:
    generator = _generator()
    files = generator.build_vectors()
    for name, data in files.items():
        assert (VECTORS / name).read_bytes() == data, f"{name} is stale: rerun generate.py"
    assert generator.stored_vector_names() == set(files), "stray vector files: rerun generate.py"


def test_stored_lineage_vectors_decode_and_match_their_index() -> None:
    for item in INDEX["lineage"]:
        data = (VECTORS / item["file"]).read_bytes()
        entry = decode_entry(data)
        assert type(entry).__name__ == item["type"]
        assert entry.digest().hex() == item["digest"] == hashlib.sha256(data).hexdigest()
        assert entry.prev.hex() == item["prev"]
        assert entry.signer.hex() == item["signer"]
        if isinstance(entry, WitnessCert):
            assert entry.slot == item["slot"]
            for vote, indexed in zip(entry.votes, item["votes"], strict=True):
                assert vote.witness.hex() == indexed["witness"]
                message = bytes.fromhex(indexed["signing_bytes"])
                assert message == vote_bytes(entry.agent, entry.slot, entry.ballot, entry.prev)
                verify_signature(vote.witness, message, bytes.fromhex(indexed["signature"]))
        else:
            assert entry.signing_bytes().hex() == item["signing_bytes"]
        entry.verify_signature()


def test_stored_lineage_is_v2_with_a_certificate_after_every_custody_record() -> None:
    types = [item["type"] for item in INDEX["lineage"]]
    for i, kind in enumerate(types):
        if kind in ("TransferRecord", "ForcedRecovery"):
            assert types[i + 1] == "WitnessCert", INDEX["lineage"][i]["file"]
    genesis = decode_entry((VECTORS / INDEX["lineage"][0]["file"]).read_bytes())
    assert isinstance(genesis, Checkpoint) and len(genesis.witnesses) == 3


def test_stored_lineage_verifies_valid_with_the_indexed_head() -> None:
    files = [(VECTORS / item["file"]).read_bytes() for item in INDEX["lineage"]]
    report = verify_lineage(reversed(files), expected_agent=INDEX["agent_did"])
    assert report.valid, report.problems
    assert report.head.hex() == INDEX["head"]
    assert len(report.forced) == 1
    assert report.certs == 2 and report.pending_record is None


def test_indexed_keys_derive_the_indexed_public_keys_and_did() -> None:
    for key in INDEX["keys"].values():
        assert Keypair.from_seed(bytes.fromhex(key["seed"])).public_key.hex() == key["public_key"]
    agent_seed = bytes.fromhex(INDEX["keys"]["agent"]["seed"])
    assert Keypair.from_seed(agent_seed).did == INDEX["agent_did"]


def test_invalid_vectors_fail_the_way_the_index_says() -> None:
    bad_sig = Checkpoint.decode((VECTORS / "invalid-bad-signature.bin").read_bytes())
    with pytest.raises(BadSignature):
        bad_sig.verify_signature()
    with pytest.raises(CorruptCheckpoint):
        Checkpoint.decode((VECTORS / "invalid-non-canonical.bin").read_bytes())


def test_go_v4_vectors_parse_verify_and_chain(tmp_path: Path) -> None:
    for item in INDEX["go_v4"]:
        data = (VECTORS / item["file"]).read_bytes()
        verify_go_signature(parse_go_checkpoint(data))
        (tmp_path / item["file"].removeprefix("go-v4-")).write_bytes(data)
    assert verify_go_history(tmp_path).valid


def test_bundle_vector_decodes_and_verifies() -> None:
    bundle = AgentBundle.decode((VECTORS / "bundle.bin").read_bytes())
    assert bundle.wasm.hex() == INDEX["bundle"]["wasm"]
    assert bundle.verify(expected_agent=INDEX["agent_did"]).valid
