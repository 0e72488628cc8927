"""The portable export file: an agent's module, manifest and whole lineage in one blob.

Encoding: canonical msgpack array ``["igor/bundle/1", wasm, manifest, [entry, ...]]`` where each
entry is the exact encoded bytes of one lineage entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from igor_p2p.errors import InvalidInput
from igor_p2p.lineage._codec import MAX_ENTRY_BYTES, sha256
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.lineage.verify import ProblemCode, VerifyReport, verify_lineage

BUNDLE_TAG = "igor/bundle/1"
MAX_WASM_BYTES = 32 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_BUNDLE_ENTRIES = 100_000
MAX_BUNDLE_BYTES = 512 * 1024 * 1024


class CorruptBundle(InvalidInput):
    """Bytes that are not a valid agent bundle."""


@dataclass(frozen=True)
class AgentBundle:
    wasm: bytes
    manifest: bytes
    entries: tuple[bytes, ...]
    """Encoded lineage entries, in any order."""

    def __post_init__(self) -> None:
        if type(self.wasm) is not bytes or len(self.wasm) > MAX_WASM_BYTES:
            raise CorruptBundle(f"wasm must be bytes of at most {MAX_WASM_BYTES}")
        if type(self.manifest) is not bytes or len(self.manifest) > MAX_MANIFEST_BYTES:
            raise CorruptBundle(f"manifest must be bytes of at most {MAX_MANIFEST_BYTES}")
        if type(self.entries) is not tuple or len(self.entries) > MAX_BUNDLE_ENTRIES:
            raise CorruptBundle(f"entries must be a tuple of at most {MAX_BUNDLE_ENTRIES}")
        for entry in self.entries:
            if type(entry) is not bytes or len(entry) > MAX_ENTRY_BYTES:
                raise CorruptBundle("every entry is bytes within the entry size cap")

    def encode(self) -> bytes:
        return msgpack.packb(
            [BUNDLE_TAG, self.wasm, self.manifest, list(self.entries)], use_bin_type=True
        )

    @classmethod
    def decode(cls, data: bytes) -> AgentBundle:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CorruptBundle("expected bytes")
        data = bytes(data)
        if len(data) > MAX_BUNDLE_BYTES:
            raise CorruptBundle(f"bundle larger than {MAX_BUNDLE_BYTES} bytes")
        try:
            obj: Any = msgpack.unpackb(
                data,
                raw=False,
                use_list=True,
                strict_map_key=True,
                max_bin_len=max(MAX_WASM_BYTES, MAX_ENTRY_BYTES),
                max_str_len=64,
                max_array_len=MAX_BUNDLE_ENTRIES,
                max_map_len=0,
                max_ext_len=0,
            )
        except Exception as exc:  # msgpack raises many ValueError/TypeError subclasses
            raise CorruptBundle(f"not a msgpack value: {type(exc).__name__}") from None
        if type(obj) is not list or len(obj) != 4 or obj[0] != BUNDLE_TAG:
            raise CorruptBundle("not an igor/bundle/1 array")
        _, wasm, manifest, entries = obj
        if type(entries) is not list:
            raise CorruptBundle("entries is not an array")
        bundle = cls(wasm=wasm, manifest=manifest, entries=tuple(entries))
        if bundle.encode() != data:
            raise CorruptBundle("not the canonical encoding of its fields")
        return bundle

    def verify(self, *, expected_agent: str | None = None) -> VerifyReport:
        """Verify the lineage, and that the wasm and manifest hash to what its checkpoints name."""
        report = verify_lineage(self.entries, expected_agent=expected_agent, ordered=True)
        wasm_hash, manifest_hash = sha256(self.wasm), sha256(self.manifest)
        for raw in self.entries:
            try:
                entry = decode_entry(raw)
            except InvalidInput:
                continue  # already reported as CORRUPT_ENTRY
            if not isinstance(entry, Checkpoint):
                continue
            if entry.wasm_hash != wasm_hash:
                report.add(
                    ProblemCode.MODULE_MISMATCH,
                    "checkpoint wasm_hash is not SHA-256 of the bundled wasm",
                    entry.digest(),
                )
            if entry.manifest_hash != manifest_hash:
                report.add(
                    ProblemCode.MODULE_MISMATCH,
                    "checkpoint manifest_hash is not SHA-256 of the bundled manifest",
                    entry.digest(),
                )
        report.valid = not report.problems
        return report
