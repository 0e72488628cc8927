"""The node's signing key and its libp2p identity come from one seed."""

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from libp2p.peer.id import ID
from nacl.signing import SigningKey

from igor_p2p.net.errors import InvalidPeerId
from igor_p2p.net.keys import (
    key_pair_from_seed,
    peer_id_from_public_key,
    peer_id_from_seed,
    public_key_from_peer_id,
    verify_peer_signature,
)


@given(seed=st.binary(min_size=32, max_size=32))
@settings(max_examples=30, deadline=None)
def test_libp2p_key_and_nacl_signing_key_of_a_seed_are_the_same(seed: bytes) -> None:
    nacl_key = SigningKey(seed)
    kp = key_pair_from_seed(seed)
    assert kp.public_key.to_bytes() == bytes(nacl_key.verify_key)
    assert kp.private_key.sign(b"m") == nacl_key.sign(b"m").signature


@given(seed=st.binary(min_size=32, max_size=32))
@settings(max_examples=30, deadline=None)
def test_public_key_round_trips_through_the_peer_id(seed: bytes) -> None:
    pk = bytes(SigningKey(seed).verify_key)
    peer_id = peer_id_from_public_key(pk)
    assert peer_id == peer_id_from_seed(seed)
    assert peer_id == ID.from_pubkey(key_pair_from_seed(seed).public_key).to_base58()
    assert peer_id.startswith("12D3KooW")
    assert public_key_from_peer_id(peer_id) == pk
    assert public_key_from_peer_id(ID.from_base58(peer_id)) == pk


def test_signature_by_the_node_key_verifies_against_its_peer_id() -> None:
    seed = bytes(range(32))
    peer_id = peer_id_from_seed(seed)
    sig = SigningKey(seed).sign(b"record").signature
    assert verify_peer_signature(peer_id, b"record", sig)
    assert not verify_peer_signature(peer_id, b"other", sig)
    assert not verify_peer_signature(peer_id_from_seed(bytes(32)), b"record", sig)
    assert not verify_peer_signature("not a peer id", b"record", sig)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0OIl",  # not base58
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # sha256 (RSA-style) peer ID
        "12D3KooW",
    ],
)
def test_peer_id_without_an_embedded_ed25519_key_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidPeerId):
        public_key_from_peer_id(bad)


def test_wrong_sized_seed_or_public_key_is_rejected() -> None:
    with pytest.raises(ValueError):
        key_pair_from_seed(b"short")
    with pytest.raises(InvalidPeerId):
        peer_id_from_public_key(b"\x01" * 31)
