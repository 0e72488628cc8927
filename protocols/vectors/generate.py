"""Generate the checkpoint-envelope test vectors in this directory from fixed seeds.

Run from the repository root::

    .venv/bin/python protocols/vectors/generate.py          # (re)write the vectors
    .venv/bin/python protocols/vectors/generate.py --check  # exit 1 if the stored files differ

Ed25519 signatures and canonical msgpack are deterministic, so the output is byte-for-byte stable.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.custody import UnsignedForcedRecovery, UnsignedTransferRecord
from igor_p2p.lineage.entries import LineageEntry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.igor_go import GoCheckpointFields, encode_go_v4

HERE = Path(__file__).resolve().parent

SEEDS = {
    "agent": bytes(range(32)),
    "node_a": bytes([0xA0]) * 32,
    "node_b": bytes([0xB0]) * 32,
    "node_c": bytes([0xC0]) * 32,
}
WASM = b"\x00asm\x01\x00\x00\x00"
MANIFEST = b'{"capabilities":["clock","log"]}'
T0 = 1_700_000_000_000_000_000


def _keys() -> dict[str, Keypair]:
    return {name: Keypair.from_seed(seed) for name, seed in SEEDS.items()}


def build_lineage() -> list[tuple[str, LineageEntry]]:
    """Genesis on A, a tick, handoff, transfer A→B, a tick on B, forced recovery by C, final."""
    k = _keys()
    agent = k["agent"].did
    wasm_hash = hashlib.sha256(WASM).digest()
    manifest_hash = hashlib.sha256(MANIFEST).digest()
    out: list[tuple[str, LineageEntry]] = []

    def head() -> bytes:
        return out[-1][1].digest() if out else ZERO_HASH

    def ck(
        name: str, kind: CheckpointKind, epoch: int, tick: int, budget: int, owner: str, signer: str
    ) -> None:
        entry = UnsignedCheckpoint(
            agent=agent,
            epoch=epoch,
            tick=tick,
            prev=head(),
            kind=kind,
            wasm_hash=wasm_hash,
            manifest_hash=manifest_hash,
            budget=budget,
            price=1000,
            wall_ns=T0 + len(out) * 1_000_000_000,
            state=tick.to_bytes(8, "little"),
            owner=k[owner].public_key,
        ).sign(k[signer])
        out.append((name, entry))

    ck("01-genesis", CheckpointKind.GENESIS, 1, 0, 5_000_000, "node_a", "agent")
    ck("02-tick", CheckpointKind.TICK, 1, 10, 4_990_000, "node_a", "node_a")
    ck("03-handoff", CheckpointKind.HANDOFF, 1, 12, 4_988_000, "node_a", "node_a")
    transfer = UnsignedTransferRecord(
        agent=agent,
        from_epoch=1,
        to_epoch=2,
        from_node=k["node_a"].public_key,
        to_node=k["node_b"].public_key,
        prev=head(),
        migration_id=bytes(range(16)),
        wall_ns=T0 + 3_000_000_000,
    ).sign(k["node_a"])
    out.append(("04-transfer", transfer))
    ck("05-tick", CheckpointKind.TICK, 2, 20, 4_980_000, "node_b", "node_b")
    forced = UnsignedForcedRecovery(
        agent=agent,
        from_epoch=2,
        to_epoch=4,
        node=k["node_c"].public_key,
        prev=head(),
        forced_by="operator@example",
        reason="node_b unreachable for 10 minutes",
        wall_ns=T0 + 5_000_000_000,
    ).sign(k["node_c"])
    out.append(("06-forced-recovery", forced))
    ck("07-final", CheckpointKind.FINAL, 4, 20, 4_980_000, "node_c", "node_c")
    return out


def build_vectors() -> dict[str, bytes]:
    """Every vector file's name and exact content, including ``vectors.json``."""
    files: dict[str, bytes] = {}
    index: dict[str, Any] = {
        "keys": {
            name: {"seed": seed.hex(), "public_key": Keypair.from_seed(seed).public_key.hex()}
            for name, seed in SEEDS.items()
        },
        "agent_did": _keys()["agent"].did,
        "lineage": [],
        "invalid": [],
        "go_v4": [],
    }
    lineage = build_lineage()
    for name, entry in lineage:
        data = entry.encode()
        files[f"{name}.bin"] = data
        index["lineage"].append(
            {
                "file": f"{name}.bin",
                "type": type(entry).__name__,
                "kind": entry.kind.name if isinstance(entry, Checkpoint) else None,
                "prev": entry.prev.hex(),
                "digest": entry.digest().hex(),
                "signer": entry.signer.hex(),
                "signing_bytes": entry.signing_bytes().hex(),
                "signature": entry.signature.hex(),
            }
        )
    index["head"] = lineage[-1][1].digest().hex()

    tick = lineage[1][1].encode()
    tampered = bytearray(tick)
    tampered[-1] ^= 0x01  # last byte of the signature
    files["invalid-bad-signature.bin"] = bytes(tampered)
    index["invalid"].append(
        {"file": "invalid-bad-signature.bin", "expect": "decodes; signature does not verify"}
    )
    # epoch 1 re-encoded as uint64 (0xcf …): same value, not canonical.
    agent_len = 2 + len(index["agent_did"])  # str8 header + DID
    epoch_at = 1 + len("igor/ckpt/1") + 1 + agent_len
    assert tick[epoch_at] == 0x01
    files["invalid-non-canonical.bin"] = (
        tick[:epoch_at] + b"\xcf" + (1).to_bytes(8, "big") + tick[epoch_at + 1 :]
    )
    index["invalid"].append({"file": "invalid-non-canonical.bin", "expect": "CorruptCheckpoint"})

    go_key = Keypair.from_seed(bytes([0x60]) * 32)
    prev = ZERO_HASH
    for i, go_tick in enumerate((0, 5)):
        blob = encode_go_v4(
            GoCheckpointFields(
                budget=1_000_000 - 1_000 * i,
                price=1000,
                tick=go_tick,
                wasm_hash=hashlib.sha256(b"known-wasm-binary-for-golden-test").digest(),
                major=1,
                prev_hash=prev,
                state=go_tick.to_bytes(8, "little"),
            ),
            go_key,
        )
        name = f"go-v4-{go_tick:010d}.ckpt"
        files[name] = blob
        index["go_v4"].append({"file": name, "sha256": hashlib.sha256(blob).hexdigest()})
        prev = hashlib.sha256(blob).digest()
    index["go_v4_key_seed"] = (bytes([0x60]) * 32).hex()

    bundle = AgentBundle(
        wasm=WASM, manifest=MANIFEST, entries=tuple(e.encode() for _, e in lineage)
    )
    files["bundle.bin"] = bundle.encode()
    index["bundle"] = {"file": "bundle.bin", "wasm": WASM.hex(), "manifest": MANIFEST.decode()}

    files["vectors.json"] = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
    return files


def main(argv: list[str]) -> int:
    files = build_vectors()
    if "--check" in argv:
        stale = [
            n for n, d in files.items() if not (HERE / n).exists() or (HERE / n).read_bytes() != d
        ]
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    for name, data in files.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(files)} files to {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
