"""Export back to Go Igor: ``igor checkpoint export ID --go DIR``.

The agent leaves Igor-P2P for good. In order:

1. this node must own the agent (it claims a new epoch, which only the owner can win) and hold
   the agent's key (the node it was launched or imported on): Go Igor's
   checkpoints are signed by the agent key;
2. the agent must be runnable by Go Igor: its manifest declares only Go Igor's capabilities;
3. the v0x04 checkpoint is built: the head's tick, budget and state, the price in Go's µ¢ per
   second, lease fields 0 (as ``igord`` writes them), and a prevHash continuing the agent's Go
   chain (the Go blob its IMPORT genesis names; zero for an agent born here);
4. a signed :class:`~igor_p2p.lineage.export.ExportRecord` naming that blob's SHA-256 is
   appended to the lineage and the authority record set to EXPORTED (terminal), through the
   authority gate, in one durable store transaction — before any file is written, so the
   agent can never run in both systems;
5. Go Igor's files are written into DIR (each to a temporary file, fsynced, renamed):
   ``agent.checkpoint``, ``history/agent/<tick>.ckpt``, ``agent.identity`` (mode 0600),
   ``agent.wasm`` and ``agent.manifest.json``.

If step 5 fails after step 4, running the same command again rewrites the same files: the
blob is deterministic and must hash to what the record names.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.authority.events import ExportedToGo
from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import IgorError
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.entries import Checkpoint, LineageEntry, decode_entry
from igor_p2p.lineage.envelope import CheckpointKind
from igor_p2p.lineage.export import ExportRecord, UnsignedExportRecord
from igor_p2p.lineage.identity import IdentityError, Keypair, encode_go_identity, load_key_file
from igor_p2p.lineage.igor_go import HISTORY_SUFFIX, GoCheckpointFields, encode_go_v4
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.go_units import go_price_per_second
from igor_p2p.runtime.loader import last_checkpoint
from igor_p2p.runtime.offline import OfflineCore, claim_here

GO_AGENT_ID = "agent"
"""The agent ID the files are named by (``igord resume --agent-id agent``)."""
GO_CAPABILITIES = frozenset({"clock", "rand", "log", "wallet", "pricing", "http", "x402"})
"""Go Igor's ``NodeCapabilities``: a manifest declaring anything else does not load there."""


class ExportRefused(IgorError):
    """The agent cannot be exported to Go Igor from here (the message says why)."""


@dataclass(frozen=True)
class GoExport:
    did: str
    directory: Path
    tick: int
    go_digest: bytes
    """SHA-256 of the v0x04 blob (what the export record names)."""
    files: tuple[Path, ...]
    rewritten: bool = False
    """True when the export record already existed and only the files were (re)written."""

    @property
    def resume_command(self) -> str:
        d = self.directory
        return (
            f"igord resume --checkpoint {d / (GO_AGENT_ID + '.checkpoint')} "
            f"--wasm {d / (GO_AGENT_ID + '.wasm')} --checkpoint-dir {d} --agent-id {GO_AGENT_ID}"
        )


def _go_chain_prev(entries: list[LineageEntry]) -> bytes:
    genesis = entries[0]
    if isinstance(genesis, Checkpoint) and genesis.kind is CheckpointKind.IMPORT:
        return genesis.prev  # SHA-256 of the Go blob the agent was imported from
    return ZERO_HASH


def _agent_key(data: DataDir, did: str) -> Keypair:
    try:
        key = load_key_file(data.agent_key_path(did))
    except IdentityError:
        raise ExportRefused(
            f"this node does not hold the key of {did}; export it from the node it was "
            "launched or imported on"
        ) from None
    if key.did != did:
        raise ExportRefused(f"the key file for {did} holds another key")
    return key


def _go_blob(head: Checkpoint, entries: list[LineageEntry], agent_key: Keypair) -> bytes:
    fields = GoCheckpointFields(
        budget=head.budget,
        price=go_price_per_second(head.price),
        tick=head.tick,
        wasm_hash=head.wasm_hash,
        prev_hash=_go_chain_prev(entries),
        state=head.state,
    )
    return encode_go_v4(fields, agent_key)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _plan(directory: Path, contents: dict[str, tuple[bytes, int]]) -> None:
    """Refuse before anything is written if a target file exists with other content; create
    the directories (so a path that cannot be written fails before the record)."""
    if directory.exists() and not directory.is_dir():
        raise ExportRefused(f"{directory} is not a directory")
    (directory / "history" / GO_AGENT_ID).mkdir(parents=True, exist_ok=True)
    for name, (data, _mode) in contents.items():
        path = directory / name
        if path.is_symlink() or (path.exists() and path.read_bytes() != data):
            raise ExportRefused(f"{path} already exists; export into an empty directory")


async def export_to_go(offline: OfflineCore, did: str, directory: Path) -> GoExport:
    """Export ``did`` to Go Igor (see the module docstring). The caller holds the data
    directory lock, so no node is ticking the agent; ownership is proven by a claim first."""
    store = offline.store
    key = offline.services.key
    record = await store.record(did)
    if record is None:
        raise ExportRefused(f"no agent {did} here")
    rewritten = record.state is AuthorityState.EXPORTED
    if not rewritten and not await claim_here(offline, did):
        state = (offline.core.describe(did) or {}).get("state", record.state)
        raise ExportRefused(f"{did} is {state} here, not owned: it cannot be exported")
    entries = [decode_entry(b) for b in await store.lineage(did)]
    agent_key = _agent_key(offline.services.data, did)
    head = last_checkpoint(entries)
    manifest_bytes = await store.manifest(head.manifest_hash)
    wasm = await store.module(head.wasm_hash)
    if manifest_bytes is None or wasm is None or hashlib.sha256(wasm).digest() != head.wasm_hash:
        raise ExportRefused(f"the module or manifest of {did} is missing from the store")
    not_in_go = sorted(set(parse_manifest(manifest_bytes).capabilities) - GO_CAPABILITIES)
    if not_in_go:
        raise ExportRefused(
            f"{did} uses capabilities Go Igor does not offer: {', '.join(not_in_go)}"
        )
    blob = _go_blob(head, entries, agent_key)
    go_digest = hashlib.sha256(blob).digest()
    if rewritten:
        last = entries[-1]
        if not isinstance(last, ExportRecord) or last.go_checkpoint != go_digest:
            raise ExportRefused(f"{did} was exported, but not as this checkpoint")
    contents = {
        f"{GO_AGENT_ID}.checkpoint": (blob, 0o644),
        f"history/{GO_AGENT_ID}/{head.tick:010d}{HISTORY_SUFFIX}": (blob, 0o644),
        f"{GO_AGENT_ID}.identity": (encode_go_identity(agent_key), 0o600),
        f"{GO_AGENT_ID}.wasm": (wasm, 0o644),
        f"{GO_AGENT_ID}.manifest.json": (manifest_bytes, 0o644),
    }
    _plan(directory, contents)
    if not rewritten:
        owned = await store.record(did)
        assert owned is not None
        export = UnsignedExportRecord(
            agent=did,
            epoch=owned.epoch,
            owner=key.public_key,
            prev=entries[-1].digest(),
            tick=head.tick,
            go_checkpoint=go_digest,
            wall_ns=offline.services.clock.wall_ns(),
        ).sign(key)
        # Durable (synchronous=FULL), through the authority gate, before any Go file exists.
        await offline.core.gate.feed(did, ExportedToGo(export.encode()))
    written = []
    for name, (content, mode) in contents.items():
        path = directory / name
        _write_atomic(path, content, mode)
        written.append(path)
    return GoExport(did, directory, head.tick, go_digest, tuple(written), rewritten)
