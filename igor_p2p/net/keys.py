"""One seed, two identities: the node's Ed25519 signing key is its libp2p peer identity.

An Ed25519 libp2p peer ID is an *identity* multihash of the protobuf-encoded public key, so the
32-byte public key can be read back from the peer ID without any lookup.
"""

from libp2p.crypto.ed25519 import Ed25519PublicKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from igor_p2p.net import peerid
from igor_p2p.net.errors import InvalidPeerId

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32

# identity multihash (0x00), length 36, then protobuf PublicKey{Type: Ed25519 (1), Data: 32 bytes}
_ED25519_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def key_pair_from_seed(seed: bytes) -> KeyPair:
    """Build the libp2p Ed25519 key pair of a 32-byte seed (the same seed PyNaCl signs with)."""
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_SIZE:
        raise ValueError(f"an Ed25519 seed is exactly {SEED_SIZE} bytes")
    return create_new_key_pair(bytes(seed))


def peer_id_from_public_key(pk32: bytes) -> str:
    """The base58 peer ID (``12D3KooW…``) of a raw 32-byte Ed25519 public key."""
    return peerid.peer_id_from_public_key(pk32)


def peer_id_from_seed(seed: bytes) -> str:
    """The base58 peer ID of the key pair derived from ``seed``."""
    return ID.from_pubkey(key_pair_from_seed(seed).public_key).to_base58()


def public_key_from_peer_id(peer_id: str | ID) -> bytes:
    """The raw 32-byte Ed25519 public key embedded in an Ed25519 identity peer ID.

    Raises :class:`InvalidPeerId` for anything else (bad base58, hashed RSA/secp IDs, junk).
    """
    if isinstance(peer_id, ID):
        peer_id = peer_id.to_base58()
    return peerid.public_key_from_peer_id_text(peer_id)


def verify_peer_signature(peer_id: str | ID, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``message`` by ``peer_id``'s key."""
    try:
        key = Ed25519PublicKey.from_bytes(public_key_from_peer_id(peer_id))
    except InvalidPeerId:
        return False
    except Exception:
        return False
    if not isinstance(signature, bytes) or len(signature) != 64:
        return False
    return key.verify(message, signature)
