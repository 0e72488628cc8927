"""Generate the lineage test vectors (v2 formats) in this directory from fixed seeds.

Run from the repository root::

    .venv/bin/python protocols/vectors/generate.py          # (re)write the vectors
    .venv/bin/python protocols/vectors/generate.py --check  # exit 1 if the stored files differ

Ed25519 signatures and canonical msgpack are deterministic, so the output is byte-for-byte stable.

``wire.json`` holds one example of every message of ``/igor-p2p/migrate/2.0.0``,
``/igor-p2p/witness/1.0.0`` and ``/igor-p2p/module/1.0.0`` (``igor_p2p.wire.codec.encode``), built
from the same keys and lineage: the handoff of ``03-handoff.bin`` from A to B, its transfer record
and certificate (``04``, ``05``), and B's vote in that certificate.

The lineage is v2: the genesis names the witness set {A, B, C}; every custody record is followed
by its witness certificate (the votes of the two witnesses other than the proposer, since with
three witnesses the proposer's own vote does not count).
"""

from __future__ import annotations

import enum
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.cert import Ballot, WitnessCert, sign_vote, vote_bytes
from igor_p2p.lineage.custody import UnsignedForcedRecovery, UnsignedTransferRecord
from igor_p2p.lineage.entries import EpochRecord, LineageEntry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair
from igor_p2p.lineage.igor_go import GoCheckpointFields, encode_go_v4
from igor_p2p.wire import messages as m
from igor_p2p.wire.codec import Message, encode

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
    """Genesis on A (witnesses A, B, C), a tick, handoff, transfer A→B and its certificate, a
    tick on B, forced recovery by C and its certificate, final."""
    k = _keys()
    agent = k["agent"].did
    wasm_hash = hashlib.sha256(WASM).digest()
    manifest_hash = hashlib.sha256(MANIFEST).digest()
    witnesses = tuple(sorted(k[n].public_key for n in ("node_a", "node_b", "node_c")))
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
            witnesses=witnesses if kind is CheckpointKind.GENESIS else (),
        ).sign(k[signer])
        out.append((name, entry))

    def cert(name: str, record: EpochRecord, proposer: str, voters: tuple[str, ...]) -> None:
        ballot = Ballot(1, k[proposer].public_key, b"ballot-1")
        digest = record.digest()
        votes = [sign_vote(k[v], agent, record.to_epoch, ballot, digest) for v in voters]
        out.append((name, WitnessCert.build(agent, record.to_epoch, ballot, digest, votes)))

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
        witnesses=witnesses,
    ).sign(k["node_a"])
    out.append(("04-transfer", transfer))
    cert("05-cert", transfer, "node_a", ("node_b", "node_c"))
    ck("06-tick", CheckpointKind.TICK, 2, 20, 4_980_000, "node_b", "node_b")
    forced = UnsignedForcedRecovery(
        agent=agent,
        from_epoch=2,
        to_epoch=4,
        node=k["node_c"].public_key,
        prev=head(),
        forced_by="operator@example",
        reason="node_b unreachable for 10 minutes",
        wall_ns=T0 + 5_000_000_000,
        witnesses=witnesses,
    ).sign(k["node_c"])
    out.append(("07-forced-recovery", forced))
    cert("08-cert", forced, "node_c", ("node_a", "node_b"))
    ck("09-final", CheckpointKind.FINAL, 4, 20, 4_980_000, "node_c", "node_c")
    return out


def _index_entry(name: str, entry: LineageEntry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "file": f"{name}.bin",
        "type": type(entry).__name__,
        "kind": entry.kind.name if isinstance(entry, Checkpoint) else None,
        "prev": entry.prev.hex(),
        "digest": entry.digest().hex(),
        "signer": entry.signer.hex(),
    }
    if isinstance(entry, WitnessCert):
        # A certificate carries no signature of its own: each vote signs (agent, slot, ballot,
        # record digest) under the witness-accepted domain.
        item["slot"] = entry.slot
        item["ballot"] = [entry.ballot.round, entry.ballot.proposer.hex(), entry.ballot.nonce.hex()]
        signed = vote_bytes(entry.agent, entry.slot, entry.ballot, entry.prev).hex()
        item["votes"] = [
            {"witness": v.witness.hex(), "signature": v.signature.hex(), "signing_bytes": signed}
            for v in entry.votes
        ]
    else:
        item["signing_bytes"] = entry.signing_bytes().hex()
        item["signature"] = entry.signature.hex()
    return item


def _wire_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Ballot):
        return [value.round, value.proposer.hex(), value.nonce.hex()]
    if isinstance(value, tuple):
        return [_wire_value(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def build_wire(lineage: list[tuple[str, LineageEntry]]) -> list[dict[str, Any]]:
    """One example of every wire message (A hands the agent to B; C is a witness)."""
    k = _keys()
    a, b, c = (k[n].public_key for n in ("node_a", "node_b", "node_c"))
    agent = k["agent"].did
    entries = dict(lineage)
    genesis, handoff = entries["01-genesis"], entries["03-handoff"]
    transfer, cert = entries["04-transfer"], entries["05-cert"]
    assert isinstance(handoff, Checkpoint) and isinstance(cert, WitnessCert)
    mid = bytes(range(16))
    ballot = cert.ballot
    vote_b = next(v for v in cert.votes if v.witness == b)
    record, certificate = transfer.encode(), cert.encode()
    migrate, witness, module = (
        "/igor-p2p/migrate/2.0.0",
        "/igor-p2p/witness/1.0.0",
        "/igor-p2p/module/1.0.0",
    )
    examples: list[tuple[str, Message]] = [
        (
            migrate,
            m.Offer(
                sender=a,
                agent=agent,
                migration_id=mid,
                epoch=1,
                chain_after=0,
                chain=(genesis.encode(),),
                checkpoint=handoff.encode(),
                wasm_hash=handoff.wasm_hash,
                manifest=MANIFEST,
                wasm=None,
            ),
        ),
        (migrate, m.Ack(b, agent, mid, 1, handoff.digest())),
        (
            migrate,
            m.Reject(
                b, agent, mid, m.RejectCode.BUSY, "another handoff of this agent is pending here"
            ),
        ),
        (migrate, m.Commit(a, agent, mid, record, certificate)),
        (migrate, m.Confirm(b, agent, mid, 2)),
        (migrate, m.Abort(a, agent, mid)),
        (migrate, m.Done(b, agent)),
        (
            migrate,
            m.Refused(
                b,
                m.RefusedCode.MALFORMED,
                "the message names another sender than the authenticated peer",
            ),
        ),
        (witness, m.Prepare(a, agent, 2, ballot, 0, ())),
        (witness, m.Promise(c, agent, 2, ballot, None, None)),
        (witness, m.Accept(a, agent, 2, ballot, record, 0, ())),
        (witness, m.Accepted(b, agent, 2, ballot, transfer.digest(), vote_b.signature)),
        (
            witness,
            m.Nack(c, agent, 2, m.NackCode.PROMISED, 1, Ballot(2, b, b"ballot-2"), 0, ()),
        ),
        (witness, m.Learn(a, agent, 1, (record, certificate))),
        (witness, m.Status(b, agent, 1)),
        (
            witness,
            m.StatusReply(
                c, agent, 2, 1, (record, certificate), None, None, m.Holding.NONE, 0, None
            ),
        ),
        (module, m.GetModule(b, handoff.wasm_hash)),
        (module, m.Module(a, WASM)),
    ]
    out: list[dict[str, Any]] = []
    for protocol, message in examples:
        data = encode(message)
        assert m.MESSAGES.decode(data) == message, message.TYPE
        out.append(
            {
                "protocol": protocol,
                "type": message.TYPE,
                "fields": {name: _wire_value(getattr(message, name)) for name in message.FIELDS},
                "hex": data.hex(),
            }
        )
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
        files[f"{name}.bin"] = entry.encode()
        index["lineage"].append(_index_entry(name, entry))
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
    epoch_at = 3 + 1 + len("igor/ckpt/2") + agent_len  # array16 header, fixstr tag, agent
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
    wire = {"keys": "as in vectors.json", "messages": build_wire(lineage)}
    files["wire.json"] = (json.dumps(wire, indent=2) + "\n").encode()
    return files


def stored_vector_names() -> set[str]:
    """Every vector file in this directory (what the generator must account for)."""
    return {p.name for p in HERE.iterdir() if p.suffix in (".bin", ".ckpt", ".json")}


def main(argv: list[str]) -> int:
    files = build_vectors()
    if "--check" in argv:
        stale = [
            n for n, d in files.items() if not (HERE / n).exists() or (HERE / n).read_bytes() != d
        ]
        stale += sorted(stored_vector_names() - set(files))
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    for name in stored_vector_names() - set(files):
        (HERE / name).unlink()  # a vector the generator no longer produces
    for name, data in files.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(files)} files to {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
