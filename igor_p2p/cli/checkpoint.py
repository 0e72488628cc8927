"""``igor checkpoint …``: inspect, verify, export and import lineages and bundles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import trio
import typer

from igor_p2p.agent.manifest import MAX_MANIFEST_BYTES, parse_manifest
from igor_p2p.agent.sandbox import Sandbox
from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.cli.common import (
    DataDirOption,
    ExitCode,
    JsonOption,
    console,
    data_dir,
    emit_json,
    examples,
    fail,
    require_data_dir,
    resolve_agent_id,
    typed_errors,
)
from igor_p2p.effects.arrival import Evidence, load_evidence
from igor_p2p.effects.replay import ReplayReport, replay_lineage
from igor_p2p.files import read_regular_file
from igor_p2p.lineage.bundle import MAX_BUNDLE_BYTES, AgentBundle
from igor_p2p.lineage.entries import (
    Checkpoint,
    EffectRecord,
    ExportRecord,
    ForcedRecovery,
    LineageEntry,
    TickInputs,
    TransferRecord,
    decode_entry,
)
from igor_p2p.lineage.identity import did_from_public_key, load_go_identity
from igor_p2p.lineage.igor_go import (
    HISTORY_SUFFIX,
    GoCheckpoint,
    looks_like_go_checkpoint,
    parse_go_checkpoint,
    verify_go_history,
)
from igor_p2p.lineage.verify import ProblemCode, VerifyReport, verify_lineage
from igor_p2p.net.peerid import peer_id_from_public_key
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.go_export import export_to_go
from igor_p2p.runtime.metering import DEFAULT_PRICE, format_micro
from igor_p2p.runtime.offline import OfflineCore, offline_core
from igor_p2p.runtime.portable import (
    GoImport,
    export_copy,
    export_transfer,
    import_bundle,
    import_go_agent,
)
from igor_p2p.runtime.services import RuntimeConfig
from igor_p2p.store.adapter import SqliteAuthorityStore
from igor_p2p.store.committer import GroupCommitter
from igor_p2p.store.sqlite import Store

app = typer.Typer(no_args_is_help=True, help="Inspect, verify, export and import lineages.")

MAX_FILE_BYTES = MAX_BUNDLE_BYTES
"""Hard cap on a file read by these commands (a bundle is the largest)."""


def _read(path: Path) -> bytes:
    """A regular file's bytes, at most MAX_FILE_BYTES (devices and FIFOs are refused)."""
    return read_regular_file(path, max_bytes=MAX_FILE_BYTES, what="input file")


T = TypeVar("T")


async def _offline(
    dd: DataDir,
    work: Callable[[OfflineCore], Awaitable[T]],
    runtime: RuntimeConfig | None = None,
) -> T:
    """Run ``work`` against this data directory's authority gate (no node may run on it)."""
    async with offline_core(dd, runtime or RuntimeConfig()) as offline:
        return await work(offline)


def _resolve_here(dd: DataDir, agent_id: str) -> str:
    store = Store.open(dd.database, check_on_open=False)
    try:
        return resolve_agent_id([agent for agent, _ in store.records()], agent_id)
    finally:
        store.close()


def _open_store(data: Path) -> Store:
    db = require_data_dir(data).database
    if not db.exists():
        fail(f"no agents in {data} yet (no store at {db})", ExitCode.NOT_FOUND)
    return Store.open(db, check_on_open=False)


def _agent_in_store(data: Path, agent_id: str) -> tuple[Store, str]:
    store = _open_store(data)
    did = resolve_agent_id([agent for agent, _ in store.records()], agent_id)
    return store, did


# ---------------------------------------------------------------- inspect


def _entry_fields(entry: LineageEntry) -> dict[str, Any]:
    if isinstance(entry, Checkpoint):
        return {
            "type": "checkpoint",
            "kind": entry.kind.name,
            "agent": entry.agent,
            "epoch": entry.epoch,
            "tick": entry.tick,
            "budget": entry.budget,
            "price": entry.price,
            "wall_ns": entry.wall_ns,
            "wasm_hash": entry.wasm_hash.hex(),
            "manifest_hash": entry.manifest_hash.hex(),
            "owner": entry.owner.hex(),
            "signer": entry.signer.hex(),
            "prev": entry.prev.hex(),
            "digest": entry.digest().hex(),
            "state_bytes": len(entry.state),
            "state_head": entry.state[:64].hex(),
        }
    if isinstance(entry, TransferRecord):
        return {
            "type": "transfer",
            "agent": entry.agent,
            "from_epoch": entry.from_epoch,
            "to_epoch": entry.to_epoch,
            "from_node": entry.from_node.hex(),
            "to_node": entry.to_node.hex(),
            "migration_id": entry.migration_id.hex(),
            "prev": entry.prev.hex(),
            "digest": entry.digest().hex(),
        }
    if isinstance(entry, ExportRecord):
        return {
            "type": "export_to_go",
            "agent": entry.agent,
            "epoch": entry.epoch,
            "tick": entry.tick,
            "owner": entry.owner.hex(),
            "go_checkpoint": entry.go_checkpoint.hex(),
            "wall_ns": entry.wall_ns,
            "prev": entry.prev.hex(),
            "digest": entry.digest().hex(),
        }
    if isinstance(entry, EffectRecord):
        return {
            "type": "effect",
            "phase": entry.phase.name,
            "effect": entry.effect.name,
            "agent": entry.agent,
            "epoch": entry.epoch,
            "tick": entry.tick,
            "key": entry.key.hex(),
            "target": entry.target,
            "request": entry.request.hex(),
            "charge": entry.charge,
            "status": entry.status,
            "result_bytes": len(entry.result),
            "owner": entry.owner.hex(),
            "prev": entry.prev.hex(),
            "digest": entry.digest().hex(),
        }
    if isinstance(entry, TickInputs):
        return {
            "type": "tick_inputs",
            "agent": entry.agent,
            "epoch": entry.epoch,
            "first_tick": entry.first_tick,
            "last_tick": entry.last_tick,
            "complete": bool(entry.complete),
            "log_bytes": len(entry.log),
            "owner": entry.owner.hex(),
            "prev": entry.prev.hex(),
            "digest": entry.digest().hex(),
        }
    assert isinstance(entry, ForcedRecovery)
    return {
        "type": "forced_recovery",
        "agent": entry.agent,
        "from_epoch": entry.from_epoch,
        "to_epoch": entry.to_epoch,
        "node": entry.node.hex(),
        "forced_by": entry.forced_by,
        "reason": entry.reason,
        "prev": entry.prev.hex(),
        "digest": entry.digest().hex(),
    }


def _go_fields(ck: GoCheckpoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "go-igor-checkpoint",
        "version": ck.version,
        "budget": ck.budget,
        "price_per_second": ck.price,
        "tick": ck.tick,
        "wasm_hash": ck.wasm_hash.hex(),
        "state_bytes": len(ck.state),
        "state_head": ck.state[:64].hex(),
    }
    if ck.major is not None:
        out.update(major=ck.major, generation=ck.generation, lease_expiry=ck.lease_expiry)
    if ck.agent_pubkey is not None:
        out.update(
            prev_hash=ck.prev_hash.hex() if ck.prev_hash else None,
            agent=did_from_public_key(ck.agent_pubkey),
        )
    return out


def _print_fields(fields: dict[str, Any]) -> None:
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        if key == "budget":
            value = f"{format_micro(value)} ({value} µ)"
        console.print(f"{key:<{width}}  {value}")


@app.command(
    "inspect",
    epilog=examples(
        "igor checkpoint inspect did:key:z6Mk… --data-dir /tmp/a",
        "igor checkpoint inspect 4xQf -d /tmp/a --json",
        "igor checkpoint inspect agent.bundle",
    ),
)
def inspect_cmd(
    target: Annotated[str, typer.Argument(metavar="FILE|ID", help="A file, or an agent ID.")],
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
) -> None:
    """Show one checkpoint: a lineage entry file, a Go Igor checkpoint, a bundle's head, or
    the head of an agent in the data directory."""
    with typed_errors(as_json):
        path = Path(target)
        if path.is_file():
            raw = _read(path)
            if looks_like_go_checkpoint(raw):
                fields = _go_fields(parse_go_checkpoint(raw))
            else:
                try:
                    fields = _entry_fields(decode_entry(raw))
                except Exception:
                    bundle = AgentBundle.decode(raw)
                    report = verify_lineage(bundle.entries)
                    fields = {"type": "bundle", "entries": len(bundle.entries)}
                    if report.head is not None:
                        for blob in bundle.entries:
                            entry = decode_entry(blob)
                            if entry.digest() == report.head:
                                fields["head"] = _entry_fields(entry)
        else:
            store, did = _agent_in_store(data, target)
            try:
                lineage = store.lineage(did)
                record = store.record(did)
            finally:
                store.close()
            if not lineage or record is None:
                fail(f"{did} has no lineage here")
            fields = _entry_fields(decode_entry(lineage[-1]))
            fields["authority_state"] = str(record.state)
            fields["authority_reason"] = record.detail
        if as_json:
            emit_json(fields)
        else:
            head = fields.pop("head", None)
            _print_fields(fields)
            if head:
                console.print("head:")
                _print_fields(head)


# ---------------------------------------------------------------- verify


def _store_damage(store: Store, did: str, blobs: list[bytes]) -> list[dict[str, str]]:
    """Damage to ``did``'s stored rows that verifying the entries cannot see: the store's
    integrity check (digest columns, head record, links and compacted gaps, seq gaps)."""
    return [
        {"kind": p.kind.value, "reason": p.reason}
        for p in store.check_integrity()
        if p.agent in ("", did)
    ]


def _report_out(
    report: VerifyReport,
    as_json: bool,
    source: str,
    store_problems: list[dict[str, str]] | None = None,
) -> None:
    valid = report.valid and not store_problems
    if as_json:
        out: dict[str, Any] = {"source": source, **report.to_json(), "valid": valid}
        if store_problems is not None:
            out["store_problems"] = store_problems
        emit_json(out)
    else:
        verdict = "[green]VALID[/green]" if valid else "[red]INVALID[/red]"
        console.print(f"{verdict}  {source}")
        if report.agent:
            console.print(f"agent      {report.agent}")
        console.print(
            f"entries    {report.entries} ({report.checkpoints} checkpoints, "
            f"{report.transfers} transfers, {getattr(report, 'certs', 0)} witness certificates)"
        )
        custodian = getattr(report, "custodian", None)
        if custodian:
            witnesses = getattr(report, "witnesses", ())
            named = ", ".join(peer_id_from_public_key(w) for w in witnesses) or "none"
            console.print(
                f"custody    epoch {report.last_epoch} owned by "
                f"{peer_id_from_public_key(custodian)}"
            )
            console.print(f"witnesses  {named}")
            if not witnesses:
                console.print(
                    "[yellow]note[/yellow]       no witnesses: a copy restored from a backup "
                    "is not stopped by a quorum (an agent launched without peers)"
                )
        for gap in getattr(report, "compacted", ()):
            console.print(
                f"compacted  epoch {gap.epoch}: entries before {gap.before.hex()[:12]} were "
                f"dropped here; they rest on {peer_id_from_public_key(gap.signer)}'s signature"
            )
        if report.first_tick is not None:
            console.print(f"ticks      {report.first_tick} → {report.last_tick}")
        if report.first_epoch is not None:
            console.print(f"epochs     {report.first_epoch} → {report.last_epoch}")
        if report.budget_start is not None and report.budget_end is not None:
            spent = report.budget_start - report.budget_end
            console.print(
                f"budget     {format_micro(report.budget_start)} → "
                f"{format_micro(report.budget_end)} (spent {format_micro(spent)})"
            )
        for forced in report.forced:
            console.print(
                f"[yellow]forced[/yellow]     epoch {forced.from_epoch} → {forced.to_epoch} "
                f"by {forced.forced_by!r}: {forced.reason}"
            )
        for export in report.exports:
            console.print(
                f"[yellow]exported[/yellow]   to Go Igor at tick {export.tick} (epoch "
                f"{export.epoch}); Go checkpoint sha256 {export.go_checkpoint.hex()}"
            )
        effects = getattr(report, "effects", None)
        if effects is not None and effects.intents:
            console.print(
                f"effects    {effects.intents} ({effects.payments} payments settled, "
                f"{format_micro(effects.paid)} paid; {format_micro(effects.charged)} charged "
                f"in all; {effects.inputs} tick-input records)"
            )
            for key in effects.unknown:
                console.print(
                    f"[yellow]unknown[/yellow]    effect {key.hex()}: intent recorded, outcome "
                    "never (the owner stopped in between; it was not repeated)"
                )
        for warning in getattr(report, "warnings", ()):
            console.print(f"[yellow]warning[/yellow]    {warning.message}")
        for problem in report.problems:
            console.print(f"[red]{problem.code.value}[/red]  {problem.message}")
        for damage in store_problems or []:
            console.print(f"[red]store {damage['kind']}[/red]  {damage['reason']}")
    if not valid:
        raise typer.Exit(1)


@app.command(
    "verify",
    epilog=examples(
        "igor checkpoint verify did:key:z6Mk… --data-dir /tmp/a",
        "igor checkpoint verify 4xQf -d /tmp/a --json",
        "igor checkpoint verify agent.bundle",
        "igor checkpoint verify ./go-igor-history/",
    ),
)
def verify_cmd(
    target: Annotated[
        str, typer.Argument(metavar="ID|DIR|FILE", help="Agent ID, directory, or file.")
    ],
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Also re-execute the recorded ticks (an agent in the data directory) and "
            "report every state that comes out different (as `igor checkpoint replay`).",
        ),
    ] = False,
) -> None:
    """Verify a whole lineage: signatures, chain links, genesis, epochs, budget, custody.

    Prints VALID or INVALID with every reason (and warnings that do not make it invalid); exits 1
    when invalid. Accepts an agent in the data directory, a directory of entry files (read as
    a Go Igor history when it holds ``*.ckpt`` files), a bundle file, or a single Go Igor
    checkpoint.
    """
    with typed_errors(as_json):
        path = Path(target)
        if path.is_dir():
            if any(path.glob(f"*{HISTORY_SUFFIX}")):  # a Go Igor history: its *.ckpt files
                report = verify_go_history(path)
            else:
                files = sorted(p for p in path.iterdir() if p.is_file())
                report = verify_lineage([_read(p) for p in files])
            _report_out(report, as_json, str(path))
            return
        if path.is_file():
            raw = _read(path)
            if looks_like_go_checkpoint(raw):
                report = verify_go_history(path.parent) if path.suffix == ".ckpt" else None
                if report is None:
                    ck = parse_go_checkpoint(raw)
                    report = VerifyReport(valid=True, entries=1, checkpoints=1)
                    report.first_tick = report.last_tick = ck.tick
                    if ck.agent_pubkey is not None:
                        from igor_p2p.lineage.igor_go import verify_go_signature

                        report.agent = did_from_public_key(ck.agent_pubkey)
                        verify_go_signature(ck)
                _report_out(report, as_json, str(path))
                return
            try:
                bundle = AgentBundle.decode(raw)
            except Exception:
                report = verify_lineage([raw])
            else:
                report = bundle.verify()
            _report_out(report, as_json, str(path))
            return
        store = _open_store(data)
        evidence = load_evidence(data)  # of offers this node refused (replay on arrival)
        try:
            known = {agent for agent, _ in store.records()} | {e.agent for e in evidence}
            did = resolve_agent_id(sorted(known), target)
            evidence = [e for e in evidence if e.agent == did]
            blobs = store.lineage(did)
            if not blobs and store.record(did) is None:
                if not evidence:
                    fail(f"no agent here matches {target!r}", ExitCode.NOT_FOUND)
                report = VerifyReport(valid=False, agent=did)
                _add_evidence(report, evidence)
                _report_out(report, as_json, did)
                return
            damage = _store_damage(store, did, blobs)
            head = store.last_checkpoint(did)
            wasm = store.module(head.wasm_hash) if head is not None else None
            manifest_bytes = store.manifest(head.manifest_hash) if head is not None else None
        finally:
            store.close()
        report = verify_lineage(blobs, expected_agent=did, ordered=True)
        if replay and wasm is not None and manifest_bytes is not None:
            for interval in _replay(blobs, wasm, manifest_bytes, None).mismatches:
                report.add(
                    ProblemCode.REPLAY_MISMATCH,
                    f"ticks {interval.first_tick}–{interval.last_tick}: {interval.detail}",
                    interval.checkpoint,
                )
            report.valid = not report.problems
        if evidence:
            _add_evidence(report, evidence)
        _report_out(report, as_json, did, damage)


def _add_evidence(report: VerifyReport, evidence: list[Evidence]) -> None:
    """Replay-on-arrival evidence: an offered copy whose recorded ticks did not give the state
    its owner signed (docs/effects.md#replay-on-arrival)."""
    for found in evidence:
        report.add(
            ProblemCode.REPLAY_MISMATCH,
            f"refused on arrival: {found.describe()}",
            bytes.fromhex(found.checkpoint),
        )
    report.valid = False


# ---------------------------------------------------------------- replay


def _replay(
    blobs: list[bytes], wasm: bytes, manifest_bytes: bytes, from_tick: int | None
) -> ReplayReport:
    entries = [decode_entry(b) for b in blobs]
    with Sandbox() as sandbox:
        return replay_lineage(
            entries,
            sandbox.compile(wasm),
            parse_manifest(manifest_bytes),
            sandbox,
            from_tick=from_tick,
        )


@app.command(
    "replay",
    epilog=examples(
        "igor checkpoint replay did:key:z6Mk… --data-dir /tmp/a",
        "igor checkpoint replay 4xQf -d /tmp/a --from 900",
        "igor checkpoint replay 4xQf -d /tmp/a --json",
    ),
)
def replay_cmd(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="Agent ID (a unique end works).")],
    from_tick: Annotated[
        int | None,
        typer.Option("--from", min=0, help="Start at the last checkpoint at or before this tick."),
    ] = None,
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
) -> None:
    """Re-execute an agent's recorded ticks offline and check every resulting state.

    Each tick's clock readings, random bytes, http responses and payment results come from the
    lineage (its tick-input and effect records); nothing is sent or paid. Every checkpoint's
    state must come out the same; a difference is evidence (a tampered input, a lying node, or
    a nondeterministic agent) and exits 1. Intervals whose inputs were not kept (compacted, or
    a HANDOFF/FINAL snapshot) are listed as unverifiable.
    """
    with typed_errors(as_json):
        store, did = _agent_in_store(data, agent_id)
        try:
            blobs = store.lineage(did)
            head = store.last_checkpoint(did)
            wasm = store.module(head.wasm_hash) if head is not None else None
            manifest_bytes = store.manifest(head.manifest_hash) if head is not None else None
        finally:
            store.close()
        if head is None or wasm is None or manifest_bytes is None:
            fail(f"{did}: no checkpoint, module or manifest stored here", ExitCode.NOT_FOUND)
        report = _replay(blobs, wasm, manifest_bytes, from_tick)
        if as_json:
            emit_json(report.to_json())
        else:
            verdict = "[green]REPLAYED[/green]" if report.ok else "[red]MISMATCH[/red]"
            console.print(
                f"{verdict}  {did}: {report.ticks_verified} ticks re-executed to identical "
                f"states from tick {report.start_tick} ({len(report.intervals)} checkpoints)"
            )
            for interval in report.mismatches:
                console.print(
                    f"[red]mismatch[/red]   ticks {interval.first_tick}–{interval.last_tick} "
                    f"(epoch {interval.epoch}): {interval.detail}; checkpoint "
                    f"{interval.checkpoint.hex()[:12]} holds {interval.expected.hex()[:12]}"
                    + (f", replay gave {interval.actual.hex()[:12]}" if interval.actual else "")
                )
            for interval in report.unverifiable:
                console.print(
                    f"[yellow]unverifiable[/yellow] ticks {interval.first_tick}–"
                    f"{interval.last_tick}: {interval.detail}"
                )
        if not report.ok:
            raise typer.Exit(ExitCode.FAILED)


# ---------------------------------------------------------------- export / import


@app.command(
    "export",
    epilog=examples(
        "igor checkpoint export $DID -o agent.bundle --data-dir /tmp/a",
        "igor checkpoint export 4xQf -o agent.bundle -d /tmp/a --transfer-to 12D3KooW…",
    ),
)
def export_cmd(
    agent_id: Annotated[
        str, typer.Argument(metavar="ID", help="The agent's DID, or a unique suffix of one.")
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Bundle file to write.")
    ] = None,
    data: DataDirOption = Path("igor-data"),
    transfer_to: Annotated[
        str | None,
        typer.Option(
            "--transfer-to",
            help="Peer ID of the node that will own the agent. Retires it here durably and "
            "signs the transfer; without it the bundle is a read-only copy.",
        ),
    ] = None,
    go: Annotated[
        Path | None,
        typer.Option(
            "--go",
            help="Hand the agent to Go Igor: write a v0x04 checkpoint continuing its Go chain, "
            "its .identity, module and manifest into this directory, after durably recording "
            "the export (the agent is EXPORTED here). Only on the node holding the agent key.",
        ),
    ] = None,
) -> None:
    """Write one portable file with the agent's module, manifest and whole lineage, or (with
    --go) hand the agent over to Go Igor."""
    if (output is None) == (go is None):
        fail("give either -o FILE (a bundle) or --go DIR (Go Igor)")
    if go is not None:
        _export_go(data, agent_id, go)
        return
    assert output is not None
    with typed_errors():
        dd = data_dir(data)
        if transfer_to is None:
            store, did = _agent_in_store(data, agent_id)
            try:
                bundle = trio.run(_read_only_copy, store, did)
            finally:
                store.close()
        else:
            did = _resolve_here(dd, agent_id)
            to = transfer_to
            bundle = trio.run(_offline, dd, lambda o: export_transfer(o, did, to))
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_bytes(bundle.encode())
        tmp.replace(output)
    what = f"transferred to {transfer_to}" if transfer_to else "read-only copy"
    console.print(f"exported {did} ({what}) → {output}")


async def _read_only_copy(store: Store, did: str) -> AgentBundle:
    """A read-only bundle, read without the data directory's lock (a node may be running)."""
    committer = GroupCommitter(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        try:
            return await export_copy(SqliteAuthorityStore(store, committer), did)
        finally:
            await committer.aclose()
            nursery.cancel_scope.cancel()


def _export_go(data: Path, agent_id: str, directory: Path) -> None:
    with typed_errors():
        dd = data_dir(data)
        if not dd.database.exists():
            fail(f"no store at {dd.database}")
        did = _resolve_here(dd, agent_id)
        done = trio.run(_offline, dd, lambda o: export_to_go(o, did, directory))
    again = " (files written again)" if done.rewritten else ""
    console.print(f"exported {did} to Go Igor at tick {done.tick}{again}; EXPORTED here")
    for path in done.files:
        console.print(f"  {path}")
    console.print(f"resume it with: {done.resume_command}")


@app.command(
    "import",
    epilog=examples(
        "igor checkpoint import agent.bundle --data-dir /tmp/b",
        "igor checkpoint import agent.ckpt -d /tmp/b --wasm agent.wasm --identity agent.identity",
    ),
)
def import_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            help="A bundle, a Go Igor checkpoint, or a Go Igor history directory (*.ckpt: "
            "verified, then its last checkpoint is imported)."
        ),
    ],
    data: DataDirOption = Path("igor-data"),
    wasm: Annotated[
        Path | None, typer.Option("--wasm", help="Go Igor import: the agent's module.")
    ] = None,
    identity: Annotated[
        Path | None, typer.Option("--identity", help="Go Igor import: the .identity key file.")
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="Go Igor import: the manifest JSON (default: the module's sidecar "
            "<wasm minus .wasm>.manifest.json, as Go Igor finds it, else none).",
        ),
    ] = None,
    module_upgrade: Annotated[
        bool,
        typer.Option(
            "--module-upgrade",
            help="Go Igor import: continue the checkpoint's state with a module other than the "
            "one that wrote it (its hash differs).",
        ),
    ] = False,
    price: Annotated[int, typer.Option("--price", help="µ per 1,000 fuel.")] = DEFAULT_PRICE,
) -> None:
    """Import a bundle (owner if its custody ends at this node) or a Go Igor agent.

    Nothing is written unless the module compiles, instantiates and resumes from the imported
    state on this node (as starting it would); otherwise the import is refused with the reason.
    """
    with typed_errors():
        raw = _read(_go_history_tip(file) if file.is_dir() else file)
        dd = data_dir(data).ensure()
        with Sandbox() as sandbox:
            if looks_like_go_checkpoint(raw):
                if wasm is None or identity is None:
                    fail("a Go Igor import needs --wasm and --identity")
                request = GoImport(
                    checkpoint=raw,
                    wasm=load_agent_source(wasm),
                    identity=load_go_identity(identity),
                    manifest=(
                        read_regular_file(manifest, max_bytes=MAX_MANIFEST_BYTES, what="manifest")
                        if manifest
                        else load_agent_manifest(wasm).canonical_bytes
                    ),
                    module_upgrade=module_upgrade,
                )
                outcome = trio.run(
                    _offline,
                    dd,
                    lambda o: import_go_agent(o, request, sandbox),
                    RuntimeConfig(price=price),
                )
            else:
                bundle = AgentBundle.decode(raw)
                outcome = trio.run(_offline, dd, lambda o: import_bundle(o, bundle, sandbox))
    reason = f" ({outcome.reason})" if outcome.reason else ""
    console.print(f"imported {outcome.did}: {outcome.state.value} at epoch {outcome.epoch}{reason}")


def _go_history_tip(directory: Path) -> Path:
    """The last checkpoint of a Go history directory, once the history verifies."""
    files = sorted(directory.glob(f"*{HISTORY_SUFFIX}"))
    if not files:
        fail(f"{directory} holds no Go Igor history (*{HISTORY_SUFFIX} files)")
    report = verify_go_history(directory)
    if not report.valid:
        problems = "; ".join(f"{p.code.value}: {p.message}" for p in report.problems)
        fail(f"the Go history in {directory} does not verify: {problems}")
    return files[-1]
