"""Ed25519 libp2p peer IDs without importing libp2p (so the CLI starts fast).

An Ed25519 peer ID is the base58btc text of an *identity* multihash of the protobuf-encoded
public key: ``00 24`` (identity, 36 bytes) ``08 01`` (KeyType = Ed25519) ``12 20`` (Data, 32
bytes) followed by the key. The key can therefore be read back from the peer ID itself.
"""

from __future__ import annotations

import base58

from igor_p2p.errors import InvalidInput

PUBLIC_KEY_SIZE = 32
ED25519_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
MAX_PEER_ID_CHARS = 128


class InvalidPeerId(InvalidInput):
    """A peer ID is malformed or does not embed an Ed25519 public key."""


def peer_id_from_public_key(pk32: bytes) -> str:
    """The base58 peer ID (``12D3KooW…``) of a raw 32-byte Ed25519 public key."""
    if not isinstance(pk32, bytes | bytearray) or len(pk32) != PUBLIC_KEY_SIZE:
        raise InvalidPeerId(f"an Ed25519 public key is exactly {PUBLIC_KEY_SIZE} bytes")
    return base58.b58encode(ED25519_PEER_ID_PREFIX + bytes(pk32)).decode("ascii")


def public_key_from_peer_id_text(peer_id: str) -> bytes:
    """The raw 32-byte Ed25519 public key embedded in a base58 peer ID string."""
    if not isinstance(peer_id, str) or not peer_id or len(peer_id) > MAX_PEER_ID_CHARS:
        raise InvalidPeerId("peer ID must be a short non-empty string")
    try:
        raw = base58.b58decode(peer_id.encode("ascii"))
    except Exception as exc:
        raise InvalidPeerId("peer ID is not base58") from exc
    if len(raw) != len(ED25519_PEER_ID_PREFIX) + PUBLIC_KEY_SIZE or not raw.startswith(
        ED25519_PEER_ID_PREFIX
    ):
        raise InvalidPeerId("peer ID does not embed an Ed25519 public key")
    return raw[len(ED25519_PEER_ID_PREFIX) :]
