"""``igor agent …``: run and resume agents locally; launch and drive them on a running node."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import trio
import typer

from igor_p2p.agent.manifest import MAX_MANIFEST_BYTES, parse_manifest
from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.cli.common import (
    DID_PREFIX,
    DataDirOption,
    ExitCode,
    JsonOption,
    OutputOption,
    QuietOption,
    WideOption,
    console,
    data_dir,
    emit_json,
    err_console,
    error_out,
    examples,
    fail,
    humanize,
    is_wide,
    looks_like_did_part,
    print_table,
    require_data_dir,
    resolve_agent_id,
    typed_errors,
)
from igor_p2p.core.handoff import MigrationResult
from igor_p2p.errors import IgorError
from igor_p2p.files import read_regular_file
from igor_p2p.logs import configure_logging
from igor_p2p.node.progress import HandoffProgress, HandoffStep
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.runtime.local import (
    LaunchHere,
    LocalRunOptions,
    LocalRunResult,
    ResumeHere,
    run_local,
)
from igor_p2p.runtime.metering import DEFAULT_PRICE, format_micro, units_to_micro
from igor_p2p.runtime.scheduler import SchedulerConfig
from igor_p2p.runtime.services import RuntimeConfig
from igor_p2p.store.retention import parse_retention
from igor_p2p.store.sqlite import Store

app = typer.Typer(no_args_is_help=True, help="Run, resume, launch and inspect agents.")

MIN_FULL_DID = 48
"""A ``did:key:z…`` at least this long is taken as a whole DID, not as a prefix."""


def _read_manifest(path: Path) -> bytes:
    return read_regular_file(path, max_bytes=MAX_MANIFEST_BYTES, what="manifest")


BudgetOption = Annotated[
    float, typer.Option("--budget", help="Initial budget in units (1 unit = 1,000,000 µ).")
]
TicksOption = Annotated[
    int | None, typer.Option("--ticks", help="Stop after N ticks (default: run until stopped).")
]
EveryOption = Annotated[
    int, typer.Option("--checkpoint-every", min=1, help="Commit a checkpoint every K ticks.")
]
IntervalOption = Annotated[
    float | None,
    typer.Option(
        "--interval",
        help="Seconds between ticks, overriding the default schedule (1 s idle, 10 ms busy).",
    ),
]
PriceOption = Annotated[int, typer.Option("--price", help="Price in µ per 1,000 fuel.")]
RetainOption = Annotated[
    str,
    typer.Option(
        "--retain",
        metavar="N|all",
        help="Checkpoints kept: the last N (custody, effect records and each epoch's last "
        "checkpoint are always kept) or all (full archive).",
    ),
]
ManifestOption = Annotated[
    Path | None,
    typer.Option("--manifest", help="Capability manifest (JSON); default: the example's own."),
]


def _scheduler(every: int, interval: float | None) -> SchedulerConfig:
    if interval is None:
        return SchedulerConfig(checkpoint_every=every)
    return SchedulerConfig(
        checkpoint_every=every, idle_interval_s=interval, busy_interval_s=interval
    )


def _printer(as_json: bool):  # type: ignore[no-untyped-def]
    def report(event: str, fields: dict[str, object]) -> None:
        if as_json:
            emit_json({"event": event, **fields})
            return
        if event == "started":
            console.print(f"agent  {fields['agent']}")
            console.print(
                f"node   {fields['peer_id']}  epoch {fields['epoch']}  tick {fields['tick']}"
                f"  budget {format_micro(int(fields['budget']))}"  # type: ignore[call-overload]
            )
        elif event == "committed":
            console.print(
                f"tick {fields['tick']:>6}  {fields['kind']:<5}  budget "
                f"{format_micro(int(fields['budget']))}  {str(fields['digest'])[:16]}"  # type: ignore[call-overload]
            )
        elif event == "log":
            print_agent_line(fields)
        elif event == "stopped":
            reason = f" ({fields['reason']})" if fields.get("reason") else ""
            console.print(
                f"stopped: {fields['ticks']} ticks this run, last committed tick "
                f"{fields['tick']}, state {fields['state']}{reason}"
            )

    return report


def printable(text: str) -> str:
    """Agent text made safe for a terminal: control characters (escape sequences included)
    are shown as ``\\xNN``; tabs are kept."""
    return "".join(
        c
        if c.isprintable() or c == "\t"
        else f"\\x{ord(c):02x}"
        if ord(c) < 256
        else f"\\u{ord(c):04x}"
        for c in text
    )


def print_agent_line(fields: dict[str, object]) -> None:
    """One line the agent printed, set apart from the runtime's lines by a bar and its stream
    (``log``, ``stdout``, ``stderr``)."""
    console.print(f"  │ {fields['stream']:<6}  {printable(str(fields['text']))}", markup=False)


def _finish(result: LocalRunResult) -> None:
    if result.state.value not in ("ACTIVE_OWNER", "BUDGET_EXHAUSTED"):
        raise typer.Exit(int(ExitCode.SAFETY_HALT))


@app.command(
    "run",
    epilog=examples(
        "igor agent run counter --data-dir /tmp/a --ticks 20 --interval 0",
        "igor agent run ./my-agent.wasm -d /tmp/a --budget 5 --manifest my-agent.json",
    ),
)
def run_cmd(
    agent: Annotated[str, typer.Argument(help="A .wasm/.wat file or a shipped example name.")],
    data: DataDirOption = Path("igor-data"),
    budget: BudgetOption = 1.0,
    manifest: ManifestOption = None,
    ticks: TicksOption = None,
    checkpoint_every: EveryOption = 1,
    interval: IntervalOption = None,
    price: PriceOption = DEFAULT_PRICE,
    retain: RetainOption = "16",
    as_json: JsonOption = False,
) -> None:
    """Launch a new agent locally and tick it (no network). Stop with Ctrl-C; resume later."""
    configure_logging("console", "WARNING")
    with typed_errors(as_json):
        wasm = _load_source(agent)
        manifest_obj = (
            parse_manifest(_read_manifest(manifest)) if manifest else load_agent_manifest(agent)
        )
        request = LaunchRequest(
            wasm=wasm, manifest=manifest_obj.canonical_bytes, budget=units_to_micro(budget)
        )
        options = LocalRunOptions(
            data=data_dir(data),
            runtime=RuntimeConfig(price=price, retention=parse_retention(retain)),
            scheduler=_scheduler(checkpoint_every, interval),
            ticks=ticks,
        )
        result = trio.run(run_local, options, LaunchHere(request), _printer(as_json))
    _finish(result)


@app.command(
    "resume",
    epilog=examples(
        "igor agent resume did:key:z6Mk… --data-dir /tmp/a --ticks 5",
        "igor agent resume 4xQf -d /tmp/a     # a unique suffix of the DID",
    ),
)
def resume_cmd(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent's DID (or a suffix).")],
    data: DataDirOption = Path("igor-data"),
    ticks: TicksOption = None,
    checkpoint_every: EveryOption = 1,
    interval: IntervalOption = None,
    price: PriceOption = DEFAULT_PRICE,
    retain: RetainOption = "16",
    as_json: JsonOption = False,
) -> None:
    """Continue an agent from its last committed checkpoint, with the same identity."""
    configure_logging("console", "WARNING")
    with typed_errors(as_json):
        did = _resolve(data, agent_id)
        options = LocalRunOptions(
            data=data_dir(data),
            runtime=RuntimeConfig(price=price, retention=parse_retention(retain)),
            scheduler=_scheduler(checkpoint_every, interval),
            ticks=ticks,
        )
        result = trio.run(run_local, options, ResumeHere(did), _printer(as_json))
    _finish(result)


def _resolve(data: Path, agent_id: str) -> str:
    database = require_data_dir(data).database
    if not database.exists():
        fail(f"no agents in {data} yet (no store at {database})", ExitCode.NOT_FOUND)
    store = Store.open(database, check_on_open=False)
    try:
        return resolve_agent_id([agent for agent, _ in store.records()], agent_id)
    finally:
        store.close()


# ---------------------------------------------------------------- against a running node


def _admin(data: Path, method: str, timeout_s: float = 30.0, **params: object) -> Any:
    from igor_p2p.cli.node import admin

    return admin(data, method, timeout_s, **params)


def _node_did(data: Path, given: str) -> str:
    """A full DID as given, or the one agent the node at ``data`` knows that ends with (or
    starts with) ``given``."""
    if given.startswith(DID_PREFIX + "z") and len(given) >= MIN_FULL_DID:
        return given
    if not looks_like_did_part(given):
        fail(f"{given!r} is not a DID (did:key:z…) nor the end of one", ExitCode.USAGE)
    agents = _admin(data, "agents")
    return resolve_agent_id([a["agent"] for a in agents], given)


def _load_source(agent: str) -> bytes:
    """The agent's module; an unknown name is answered with the shipped examples."""
    from igor_p2p.agent.errors import AgentSourceNotFound
    from igor_p2p.agent.examples import list_examples

    try:
        return load_agent_source(agent)
    except AgentSourceNotFound:
        fail(
            f"no .wasm/.wat file and no shipped example named {agent!r}; shipped examples: "
            f"{', '.join(list_examples())}",
            ExitCode.NOT_FOUND,
        )


@app.command(
    "launch",
    epilog=examples(
        "igor agent launch counter --data-dir /tmp/n1",
        "DID=$(igor agent launch wanderer -d /tmp/n1 --budget 5)",
    ),
)
def launch_cmd(
    agent: Annotated[str, typer.Argument(help="A .wasm/.wat file or a shipped example name.")],
    data: DataDirOption = Path("igor-data"),
    budget: BudgetOption = 1.0,
    manifest: ManifestOption = None,
    as_json: JsonOption = False,
) -> None:
    """Launch an agent on the running node of the data directory; prints its DID."""
    with typed_errors(as_json):
        wasm = _load_source(agent)
        manifest_obj = (
            parse_manifest(_read_manifest(manifest)) if manifest else load_agent_manifest(agent)
        )
        result = _admin(
            data,
            "launch",
            wasm=wasm.hex(),
            manifest=manifest_obj.canonical_bytes.hex(),
            budget=units_to_micro(budget),
        )
    if as_json:
        emit_json(result)
    else:
        console.print(result["agent"])


@app.command(
    "list",
    epilog=examples(
        "igor agent list --data-dir /tmp/n1",
        "igor agent list -d /tmp/n1 --wide      # full DIDs, nothing cut",
        "igor agent list -d /tmp/n1 -q          # DIDs only, one per line",
    ),
)
def list_cmd(
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
    wide: WideOption = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Every agent the running node has a record of, with its authority state."""
    from rich.table import Table

    wide = is_wide(wide, output)
    with typed_errors(as_json):
        agents = _admin(data, "agents")
    if as_json:
        emit_json(agents)
        return
    if quiet:
        for a in agents:
            console.print(a["agent"], markup=False)
        return
    table = Table("agent", "state", "epoch", "tick", "budget", "reason")
    for a in agents:
        table.add_row(
            a["agent"],
            a["state"],
            str(a["epoch"]),
            str(a.get("tick", "-")),
            format_micro(a["budget"]) if "budget" in a else "-",
            humanize(a.get("reason") or ""),
            a.get("damaged") or a.get("reason", ""),
        )
    print_table(table, wide)


STATUS_SCHEMA: dict[str, str] = {
    "agent": "string: the agent's DID",
    "found": "boolean: some node has a record of the agent",
    "state": "string: authority state (ACTIVE_OWNER, RETIRED, RECOVERY_REQUIRED, …), or UNKNOWN "
    "when the owner did not answer",
    "epoch": "integer or null: the epoch of that state",
    "owner_peer": "string or null: peer ID of the owner (or of the node the agent left for)",
    "node": "string or null: name of the node whose record answered",
    "tick": "integer or null: the latest tick",
    "committed_tick": "integer or null: the latest committed tick",
    "budget": "integer or null: remaining budget in µ",
    "reason": "string or null: why the agent is in that state, in words",
    "source": "string: where the answer came from: local (this node's record) or network (the "
    "owner, found through the DHT location record or the agent's successor)",
    "verified": "boolean or null: the answer's custody verifies from the agent's genesis",
    "location_epoch": "integer or null: epoch of the DHT location record, when one was read",
    "hops": "integer or null: nodes asked to find the owner (network answers)",
}
"""``igor agent status --json`` prints exactly these keys, whatever the answer's source."""


def normalize_status(raw: dict[str, Any]) -> dict[str, Any]:
    """One schema (:data:`STATUS_SCHEMA`) for the local, DHT and tombstone answers."""
    out = {key: raw.get(key) for key in STATUS_SCHEMA}
    out["found"] = bool(raw.get("found", True))
    out["state"] = raw.get("state") or "UNKNOWN"
    out["source"] = raw.get("source") or "local"
    out["reason"] = humanize(raw["reason"]) if raw.get("reason") else None
    return out


@app.command(
    "status",
    epilog=examples(
        "igor agent status did:key:z6Mk… --data-dir /tmp/n1",
        "igor agent status 4xQf --data-dir /tmp/n1     # a unique suffix of a DID it knows",
        "igor agent status $DID -d /tmp/n2 --json",
    ),
)
def status_cmd(
    agent_id: Annotated[
        str, typer.Argument(metavar="DID", help="The agent's DID, or a unique suffix of one.")
    ],
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
) -> None:
    """Owner, epoch, state, tick and budget of an agent, from any node (via the DHT)."""
    with typed_errors(as_json):
        did = _node_did(data, agent_id)
        status = normalize_status(_admin(data, "agent_status", agent=did))
    if as_json:
        emit_json(status)
        return
    for key in ("agent", "state", "epoch", "owner_peer", "node", "tick", "budget", "reason"):
        value = status.get(key)
        if value in (None, ""):
            continue
        if key == "budget":
            value = format_micro(value)
        console.print(f"{key:<11} {value}", markup=False)
    console.print(f"{'source':<11} {status['source']}")


FOLLOW_POLL_S = 0.5


@app.command(
    "logs",
    epilog=examples(
        "igor agent logs did:key:z6Mk… --data-dir /tmp/n1",
        "igor agent logs 4xQf -d /tmp/n1 --follow      # keep printing until Ctrl-C",
        "igor agent logs $DID -d /tmp/n1 --json",
    ),
)
def logs_cmd(
    agent_id: Annotated[str, typer.Argument(metavar="DID", help="The agent's DID (or a suffix).")],
    data: DataDirOption = Path("igor-data"),
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """What an agent on the running node printed (log_emit, stdout, stderr), oldest first.

    The node keeps the most recent lines of each agent in memory (bounded); older lines are
    dropped and say so."""
    with typed_errors(as_json):
        after = 0
        try:
            while True:
                page: Any = _admin(data, "agent_logs", agent=agent_id, after=after)
                if page["dropped"]:
                    if as_json:
                        emit_json({"agent": page["agent"], "gap": True})
                    else:
                        console.print("  │ …       (older lines were dropped)", markup=False)
                for line in page["lines"]:
                    if as_json:
                        emit_json(line)
                    else:
                        print_agent_line(line)
                after = page["next_after"]
                if not follow:
                    return
                if not page["lines"]:
                    time.sleep(FOLLOW_POLL_S)
        except KeyboardInterrupt:
            return


@app.command(
    "halt",
    epilog=examples(
        "igor agent halt $DID --data-dir /tmp/n1",
        'igor agent halt 4xQf -d /tmp/n1 --reason "maintenance"',
    ),
)
def halt_cmd(
    agent_id: Annotated[
        str, typer.Argument(metavar="DID", help="The agent's DID, or a unique suffix of one.")
    ],
    data: DataDirOption = Path("igor-data"),
    reason: Annotated[
        str, typer.Option("--reason", help="Why, recorded with the final checkpoint.")
    ] = "halted by operator",
    as_json: JsonOption = False,
) -> None:
    """Stop an agent at a tick boundary with a final checkpoint (state HALTED)."""
    with typed_errors(as_json):
        did = _node_did(data, agent_id)
        result = _admin(data, "halt", agent=did, reason=reason)
    if as_json:
        emit_json(result)
    else:
        console.print(f"halted at tick {result['tick']}")


MIGRATE_TIMEOUT_S = 150.0
POLL_S = 0.2


class ForceNotConfirmed(IgorError):
    """A forced recovery was asked for without ``--yes-i-know``."""


OUTCOME_EXIT: dict[str, ExitCode] = {
    MigrationResult.TRANSFERRED.value: ExitCode.OK,
    MigrationResult.ABORTED.value: ExitCode.FAILED,
    MigrationResult.REJECTED.value: ExitCode.REFUSED,
    MigrationResult.SUPERSEDED.value: ExitCode.REFUSED,
    MigrationResult.UNRESOLVED.value: ExitCode.SAFETY_HALT,
}
OUTCOME_WORDS: dict[str, str] = {
    MigrationResult.TRANSFERRED.value: "the target owns the agent now",
    MigrationResult.ABORTED.value: "the handoff was aborted before the decision; "
    "the agent ticks on here again",
    MigrationResult.REJECTED.value: "the target refused the offer; the agent ticks on here",
    MigrationResult.SUPERSEDED.value: "the agent's witnesses proved a later owner: "
    "this node no longer holds it",
    MigrationResult.UNRESOLVED.value: "the transfer may have been decided but no certificate "
    "came in time: nobody ticks the agent until its witnesses answer (this node keeps asking; "
    "see `igor agent status`)",
}


def _step_line(step: HandoffStep, started_ns: int) -> str:
    at = max(0, step.mono_ns - started_ns) / 1e9
    text = step.step.replace("_", " ")
    if step.kind == "authority":
        text = f"authority → {step.step}"
    detail = step.detail or ""
    if len(detail) == 64 and all(c in "0123456789abcdef" for c in detail):
        detail = detail[:12] + "…"  # a digest
    extra = f" ({humanize(detail)})" if detail else ""
    return f"  {at:6.2f}s  {text}{extra}"


def _reason_from(steps: list[HandoffStep]) -> str | None:
    for step in reversed(steps):
        if step.step in ("aborted", "rejected", "RECOVERY_REQUIRED") and step.detail:
            return humanize(step.detail)
    return None


def _interrupted(did: str, target: str, data: Path, as_json: bool) -> NoReturn:
    message = (
        f"interrupted: the node goes on with the handoff of {did} to {target}; it ends "
        "TRANSFERRED, or ABORTED with the agent ticking here again"
    )
    hint = f"follow it with: igor agent status {did} --data-dir {data}"
    error_out(message, ExitCode.INTERRUPTED, hint=hint)


@app.command(
    "migrate",
    epilog=examples(
        "igor agent migrate $DID --to $(igor node id -d /tmp/n2) --data-dir /tmp/n1",
        "igor agent migrate 4xQf --to /ip4/10.0.0.2/tcp/4747/p2p/12D3KooW… -d /tmp/n1 --json",
    ),
)
def migrate_cmd(
    agent_id: Annotated[
        str, typer.Argument(metavar="DID", help="The agent's DID, or a unique suffix of one.")
    ],
    to: Annotated[str, typer.Option("--to", help="Target peer ID or multiaddr.")],
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
) -> None:
    """Move an agent ticking on this node to another node (offer, ack, commit, confirm).

    Shows each step as it happens; exits 0 only when the agent was transferred. Ctrl-C stops
    watching, not the handoff."""
    with typed_errors(as_json):
        require_data_dir(data)
        did = _node_did(data, agent_id)
    follow_migration(data, did, to, as_json=as_json)


def follow_migration(
    data: Path, did: str, to: str, *, as_json: bool, target_name: str | None = None
) -> None:
    """Ask the node at ``data`` to migrate ``did`` to ``to``, showing each step of the handoff
    from the node's history as it happens; exit non-zero unless the agent was transferred."""
    shown_to = f"{target_name} ({to})" if target_name else to
    with typed_errors(as_json):
        dd = require_data_dir(data)
        progress = HandoffProgress(dd.history, did, since_mono_ns=time.monotonic_ns())
        started = time.monotonic_ns()
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["result"] = _admin(data, "migrate", MIGRATE_TIMEOUT_S, agent=did, to=to)
            except BaseException as exc:  # handed to the main thread
                box["error"] = exc

        worker = threading.Thread(target=call, name="igor-migrate", daemon=True)
        steps: list[HandoffStep] = []

        def show(new: list[HandoffStep]) -> None:
            steps.extend(new)
            if not as_json:
                for s in new:
                    console.print(_step_line(s, started), markup=False)

        try:
            worker.start()
            if not as_json:
                console.print(f"migrating {did} → {shown_to}", markup=False)
            with console.status("waiting for the handoff…", spinner="dots") as spin:
                while worker.is_alive():
                    worker.join(POLL_S)
                    new = progress.poll()
                    show(new)
                    if new and not as_json:
                        spin.update(f"after {new[-1].step.replace('_', ' ')}…")
            show(progress.poll())
        except KeyboardInterrupt:
            _interrupted(did, shown_to, data, as_json)
        if "error" in box:
            raise box["error"]
    result = box["result"]
    outcome = str(result.get("outcome"))
    code = OUTCOME_EXIT.get(outcome, ExitCode.FAILED)
    reason = result.get("reason") or _reason_from(steps) or OUTCOME_WORDS.get(outcome, outcome)
    if result.get("code"):  # the target's reject code, in words
        reason = f"{str(result['code']).lower().replace('_', ' ')}: {reason}"
    if as_json:
        emit_json(
            {
                **result,
                "transferred": code is ExitCode.OK,
                "reason": humanize(str(reason)),
                "steps": [s.to_dict() for s in steps],
                "exit_code": int(code),
            }
        )
    elif code is ExitCode.OK:
        console.print(f"{outcome}  → {shown_to}", markup=False)
    else:
        err_console.print(f"[red]{outcome}[/red]: {humanize(str(reason))}")
    if code is not ExitCode.OK:
        raise typer.Exit(int(code))


@app.command(
    "recover",
    epilog=examples(
        "igor agent recover $DID --data-dir /tmp/n1",
        "igor agent recover $DID -d /tmp/n1 --force --yes-i-know --operator alice",
    ),
)
def recover_cmd(
    agent_id: Annotated[
        str, typer.Argument(metavar="DID", help="The agent's DID, or a unique suffix of one.")
    ],
    data: DataDirOption = Path("igor-data"),
    force: Annotated[
        bool, typer.Option("--force", help="Take authority here at a new epoch (operator).")
    ] = False,
    yes_i_know: Annotated[
        bool, typer.Option("--yes-i-know", help="Confirm a forced recovery.")
    ] = False,
    operator: Annotated[str, typer.Option("--operator", help="Who forces it.")] = "operator",
    as_json: JsonOption = False,
) -> None:
    """Show this node's authority state of an agent (unresolved handoffs and restarts settle on
    their own: the node asks the agent's witnesses with backoff). With --force --yes-i-know,
    claim a new epoch here through the witnesses (a forced recovery, recorded in the lineage
    with the operator's name)."""
    with typed_errors(as_json):
        if force and not yes_i_know:
            raise ForceNotConfirmed("a forced recovery needs --yes-i-know")
        did = _node_did(data, agent_id)
        params: dict[str, object] = {"agent": did}
        if force:
            params.update(force=True, confirm=True, operator=operator)
        result = _admin(data, "recover", MIGRATE_TIMEOUT_S, **params)
    if as_json:
        emit_json(result)
    elif isinstance(result, dict):
        for key, value in result.items():
            console.print(f"{key:<8} {humanize(str(value))}", markup=False)
    else:
        console.print(humanize(str(result)), markup=False)
