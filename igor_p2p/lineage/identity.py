"""Ed25519 keypairs, did:key identifiers and key files.

A DID is ``"did:key:z" + base58btc(0xed 0x01 ‖ public key)``, byte for byte what Go Igor writes,
so every Ed25519 DID starts with ``did:key:z6Mk``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

import base58
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from igor_p2p.errors import IgorError, InvalidInput

log = logging.getLogger(__name__)

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

DID_PREFIX = "did:key:z"
ED25519_MULTICODEC = b"\xed\x01"
MAX_DID_CHARS = 128
"""A did:key for an Ed25519 key is 56 characters; anything much longer is rejected unparsed."""

KEY_FILE_MAGIC = b"igor-key-v1\n"
"""Our key file: this magic followed by the 32-byte Ed25519 seed (44 bytes in all)."""
KEY_FILE_MODE = 0o600

GO_IDENTITY_LEN_PREFIX = 64
"""Go Igor's ``<agent>.identity``: ``[u32 LE = 64][seed32 ‖ pub32]``."""


LARGE_MESSAGE_BYTES = 16 * 1024
"""Messages at least this long are signed and verified with OpenSSL (faster hashing of big
checkpoints); shorter ones with libsodium (less call overhead). Ed25519 is deterministic, so
both give the same signature and the same verdict."""

MAX_KEY_FILE_BYTES = 4096
"""Key files (ours and Go Igor's identities) are read with this hard cap."""


class IdentityError(IgorError):
    """A key, DID or key file cannot be used."""


class InvalidDID(IdentityError, InvalidInput):
    """A string is not a did:key for an Ed25519 public key."""


class KeyFileExists(IdentityError):
    """Refused to overwrite an existing key file."""


class CorruptKeyFile(IdentityError, InvalidInput):
    """A key file is truncated, has the wrong magic, or its public key does not match its seed."""


class BadSignature(IgorError):
    """A signature does not verify under the given public key."""


@dataclass(frozen=True)
class Keypair:
    """An Ed25519 keypair, held as its 32-byte seed."""

    seed: bytes = field(repr=False)
    _signing_key: nacl.signing.SigningKey = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if type(self.seed) is not bytes or len(self.seed) != SEED_BYTES:
            raise IdentityError("an Ed25519 seed is exactly 32 bytes")
        object.__setattr__(self, "_signing_key", nacl.signing.SigningKey(self.seed))

    @classmethod
    def generate(cls) -> Keypair:
        return cls(secrets.token_bytes(SEED_BYTES))

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        return cls(bytes(seed))

    @functools.cached_property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @functools.cached_property
    def did(self) -> str:
        return did_from_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte pure Ed25519 signature of ``message``."""
        if len(message) >= LARGE_MESSAGE_BYTES:
            return self._openssl_key.sign(message)
        return self._signing_key.sign(bytes(message)).signature

    @functools.cached_property
    def _openssl_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def __repr__(self) -> str:
        return f"Keypair(public_key={self.public_key.hex()})"


_VERIFIED: dict[tuple[bytes, bytes, bytes], None] = {}
"""Signatures that verified (Ed25519 is deterministic, so a verdict on exact bytes never
changes): a bounded memo, so one certificate checked by several witnesses, or one custody chain
checked again, costs one verification. Only successes are kept."""
_VERIFIED_MAX = 8192


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`BadSignature` unless ``signature`` is ``public_key``'s over ``message``."""
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        raise BadSignature("public key is not 32 bytes")
    if type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
        raise BadSignature("signature is not 64 bytes")
    if len(message) >= LARGE_MESSAGE_BYTES:
        # A checkpoint with a big state: hashing it for the memo would cost as much as the
        # check, and OpenSSL's SHA-512 is about 3× libsodium's (the verdict is the same).
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError, TypeError):
            raise BadSignature("signature does not verify") from None
        return
    message = bytes(message)
    key = (public_key, hashlib.sha256(message).digest(), signature)
    if key in _VERIFIED:
        return
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise BadSignature("signature does not verify") from None
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.pop(next(iter(_VERIFIED)))
    _VERIFIED[key] = None


def did_from_public_key(public_key: bytes) -> str:
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        raise IdentityError("an Ed25519 public key is exactly 32 bytes")
    return DID_PREFIX + base58.b58encode(ED25519_MULTICODEC + public_key).decode("ascii")


def public_key_from_did(did: str) -> bytes:
    """The 32-byte public key in a canonical Ed25519 did:key, or :class:`InvalidDID`.

    Valid DIDs are cached (a node decodes the same few DIDs for every checkpoint it builds or
    checks); an invalid one raises every time.
    """
    if type(did) is not str:
        raise InvalidDID("a DID is a string")
    if len(did) > MAX_DID_CHARS:
        raise InvalidDID("DID too long")
    return _decode_did(did)


@functools.lru_cache(maxsize=4096)
def _decode_did(did: str) -> bytes:
    if not did.startswith(DID_PREFIX):
        raise InvalidDID("DID does not start with did:key:z")
    encoded = did[len(DID_PREFIX) :]
    if not encoded or not encoded.isascii():
        raise InvalidDID("DID has no base58btc payload")
    try:
        raw = base58.b58decode(encoded)
    except ValueError:
        raise InvalidDID("DID payload is not base58btc") from None
    if len(raw) != len(ED25519_MULTICODEC) + PUBLIC_KEY_BYTES:
        raise InvalidDID("DID payload is not a 0xed01 multicodec plus a 32-byte key")
    if raw[:2] != ED25519_MULTICODEC:
        raise InvalidDID("DID multicodec is not ed25519-pub (0xed01)")
    public_key = raw[2:]
    if did_from_public_key(public_key) != did:
        raise InvalidDID("DID is not the canonical encoding of its key")
    return public_key


def did_short(did: str) -> str:
    """Go Igor's short form: the first 16 characters, ``...``, the last 4."""
    if len(did) <= 23:
        return did
    return f"{did[:16]}...{did[-4:]}"


# --- key files --------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_key_file(path: Path | str, keypair: Keypair) -> None:
    """Write ``keypair`` durably to a new file with mode 0600.

    Written to a temporary file in the same directory, fsynced, then linked into place (a rename
    that cannot clobber) and the directory fsynced. Raises :class:`KeyFileExists` if ``path``
    already exists.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise KeyFileExists(f"{path} already exists")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        try:
            os.fchmod(fd, KEY_FILE_MODE)
            os.write(fd, KEY_FILE_MAGIC + keypair.seed)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyFileExists(f"{path} already exists") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _read_private_file(path: Path) -> bytes:
    from igor_p2p.files import BadInputFile, InputFileTooLarge, read_regular_file

    try:
        data = read_regular_file(path, max_bytes=MAX_KEY_FILE_BYTES, what="key file")
        st = path.stat()
    except InputFileTooLarge:
        raise CorruptKeyFile(f"{path} is too large to be a key file") from None
    except BadInputFile as exc:
        raise IdentityError(str(exc)) from None
    except OSError as exc:
        raise IdentityError(f"cannot read key file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        log.warning("key file %s has mode %o, looser than 0600", path, stat.S_IMODE(st.st_mode))
    return data


def load_key_file(path: Path | str) -> Keypair:
    """Read a key file written by :func:`save_key_file`."""
    path = Path(path)
    data = _read_private_file(path)
    if len(data) != len(KEY_FILE_MAGIC) + SEED_BYTES or not data.startswith(KEY_FILE_MAGIC):
        raise CorruptKeyFile(f"{path} is not an igor-key-v1 file")
    return Keypair(data[len(KEY_FILE_MAGIC) :])


def load_or_create_key_file(path: Path | str) -> Keypair:
    """Load the key at ``path``, or create one there if no file exists. Never replaces a file."""
    path = Path(path)
    if path.exists():
        return load_key_file(path)
    keypair = Keypair.generate()
    try:
        save_key_file(path, keypair)
    except KeyFileExists:
        return load_key_file(path)  # someone else created it first; theirs wins
    return keypair


def encode_go_identity(keypair: Keypair) -> bytes:
    """Go Igor's ``<agent>.identity`` bytes: ``[u32 LE = 64][seed32 ‖ pub32]``."""
    return struct.pack("<I", GO_IDENTITY_LEN_PREFIX) + keypair.seed + keypair.public_key


def load_go_identity(path: Path | str) -> Keypair:
    """Read Go Igor's ``<agent>.identity``: ``[u32 LE = 64][seed32 ‖ pub32]``.

    The stored public key must be the one the seed derives.
    """
    path = Path(path)
    data = _read_private_file(path)
    if len(data) != 4 + 64:
        raise CorruptKeyFile(f"{path} is not a Go Igor identity file (wrong size)")
    (length,) = struct.unpack_from("<I", data, 0)
    if length != GO_IDENTITY_LEN_PREFIX:
        raise CorruptKeyFile(f"{path}: length prefix {length}, expected 64")
    seed, public_key = data[4:36], data[36:68]
    keypair = Keypair(seed)
    if keypair.public_key != public_key:
        raise CorruptKeyFile(f"{path}: stored public key does not match the seed")
    return keypair
