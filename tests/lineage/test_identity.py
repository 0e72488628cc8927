"""Keys, did:key and key files."""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from pathlib import Path

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.lineage.identity import (
    KEY_FILE_MAGIC,
    BadSignature,
    CorruptKeyFile,
    IdentityError,
    InvalidDID,
    KeyFileExists,
    Keypair,
    did_from_public_key,
    did_short,
    load_go_identity,
    load_key_file,
    load_or_create_key_file,
    public_key_from_did,
    save_key_file,
    verify_signature,
)

ZERO_SEED_DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


def test_did_is_multicodec_ed01_base58btc_like_go_igor() -> None:
    kp = Keypair.from_seed(bytes(32))
    did = did_from_public_key(kp.public_key)
    assert did == ZERO_SEED_DID
    assert did.startswith("did:key:z6Mk")
    assert base58.b58decode(did[len("did:key:z") :]) == b"\xed\x01" + kp.public_key


@given(st.binary(min_size=32, max_size=32))
@settings(max_examples=50)
def test_did_round_trips_every_public_key(pk: bytes) -> None:
    did = did_from_public_key(pk)
    assert did.startswith("did:key:z6Mk")
    assert public_key_from_did(did) == pk


@pytest.mark.parametrize(
    "did",
    [
        "",
        "did:key:",
        "did:key:z",
        "did:web:example.com",
        "did:key:m6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",  # other multibase
        ZERO_SEED_DID[:-1],  # one character short
        ZERO_SEED_DID + "a",  # one character long
        ZERO_SEED_DID.replace("z6Mk", "z0Mk"),  # '0' is not base58
        "did:key:z" + base58.b58encode(b"\xec\x01" + bytes(32)).decode(),  # x25519 multicodec
        "did:key:z" + base58.b58encode(b"\xed\x01" + bytes(31)).decode(),  # short key
        "did:key:z1" + ZERO_SEED_DID[len("did:key:z") :],  # leading zero byte: not canonical
        "did:key:z" + "é" * 44,
        "did:key:z" + "1" * 5000,
    ],
)
def test_malformed_did_is_rejected_with_invalid_did(did: str) -> None:
    with pytest.raises(InvalidDID):
        public_key_from_did(did)


def test_non_string_did_is_rejected() -> None:
    with pytest.raises(InvalidDID):
        public_key_from_did(b"did:key:z6Mk")  # type: ignore[arg-type]


@given(st.text(max_size=80))
@settings(max_examples=200)
def test_arbitrary_text_never_crashes_did_parsing(text: str) -> None:
    with contextlib.suppress(InvalidDID):
        public_key_from_did("did:key:z" + text)


def test_invalid_did_is_both_identity_error_and_invalid_input() -> None:
    assert issubclass(InvalidDID, IdentityError)
    assert issubclass(InvalidDID, InvalidInput)
    assert issubclass(BadSignature, IgorError)


def test_did_short_keeps_first_sixteen_and_last_four() -> None:
    assert did_short(ZERO_SEED_DID) == "did:key:z6MkiTBz...ooWp"


def test_signature_verifies_and_tampering_is_rejected() -> None:
    kp = Keypair.from_seed(b"\x01" * 32)
    sig = kp.sign(b"hello")
    assert len(sig) == 64 and len(kp.public_key) == 32
    verify_signature(kp.public_key, b"hello", sig)
    with pytest.raises(BadSignature):
        verify_signature(kp.public_key, b"hellO", sig)
    with pytest.raises(BadSignature):
        verify_signature(Keypair.from_seed(b"\x02" * 32).public_key, b"hello", sig)
    with pytest.raises(BadSignature):
        verify_signature(kp.public_key, b"hello", sig[:63])
    with pytest.raises(BadSignature):
        verify_signature(kp.public_key[:31], b"hello", sig)
    with pytest.raises(BadSignature):
        verify_signature(bytes(32), b"hello", bytes(64))


def test_keypair_rejects_wrong_seed_length_and_hides_seed_in_repr() -> None:
    with pytest.raises(IdentityError):
        Keypair.from_seed(b"short")
    kp = Keypair.from_seed(b"\x42" * 32)
    assert (b"\x42" * 32).hex() not in repr(kp)
    assert Keypair.generate().public_key != Keypair.generate().public_key


def test_key_file_round_trips_with_mode_0600(tmp_path: Path) -> None:
    kp = Keypair.generate()
    path = tmp_path / "node.key"
    save_key_file(path, kp)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == KEY_FILE_MAGIC + kp.seed
    assert load_key_file(path) == kp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]  # no temp file left


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = Keypair.generate()
    save_key_file(path, first)
    with pytest.raises(KeyFileExists):
        save_key_file(path, Keypair.generate())
    assert load_key_file(path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


@pytest.mark.parametrize(
    "content",
    [b"", KEY_FILE_MAGIC, KEY_FILE_MAGIC + bytes(31), KEY_FILE_MAGIC + bytes(33), b"x" * 44],
)
def test_corrupt_key_file_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(CorruptKeyFile):
        load_key_file(path)


def test_missing_key_file_is_an_identity_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError):
        load_key_file(tmp_path / "absent.key")


def test_load_or_create_creates_once_then_loads_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    created = load_or_create_key_file(path)
    assert load_or_create_key_file(path) == created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _go_identity(seed: bytes, public_key: bytes, prefix: int = 64) -> bytes:
    return struct.pack("<I", prefix) + seed + public_key


def test_go_identity_file_loads_the_same_key(tmp_path: Path) -> None:
    kp = Keypair.from_seed(b"\x09" * 32)
    path = tmp_path / "agent.identity"
    path.write_bytes(_go_identity(kp.seed, kp.public_key))
    assert load_go_identity(path) == kp


@pytest.mark.parametrize("defect", ["wrong_pub", "wrong_prefix", "truncated"])
def test_go_identity_file_with_defects_is_rejected(tmp_path: Path, defect: str) -> None:
    kp = Keypair.from_seed(b"\x09" * 32)
    data = {
        "wrong_pub": _go_identity(kp.seed, bytes(32)),
        "wrong_prefix": _go_identity(kp.seed, kp.public_key, prefix=32),
        "truncated": _go_identity(kp.seed, kp.public_key)[:-1],
    }[defect]
    path = tmp_path / "agent.identity"
    path.write_bytes(data)
    with pytest.raises(CorruptKeyFile):
        load_go_identity(path)
