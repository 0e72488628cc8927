"""``igor agent …``: run and resume agents locally; launch and drive them on a running node."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import trio
import typer

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.cli.common import (
    DataDirOption,
    JsonOption,
    console,
    data_dir,
    emit_json,
    resolve_agent_id,
    typed_errors,
)
from igor_p2p.errors import IgorError
from igor_p2p.logs import configure_logging
from igor_p2p.runtime.loader import LaunchRequest, launch, resume
from igor_p2p.runtime.local import LocalRunOptions, LocalRunResult, run_local
from igor_p2p.runtime.metering import DEFAULT_PRICE, format_micro, units_to_micro
from igor_p2p.runtime.scheduler import SchedulerConfig
from igor_p2p.runtime.services import RuntimeConfig
from igor_p2p.store.sqlite import Store

app = typer.Typer(no_args_is_help=True, help="Run, resume, launch and inspect agents.")

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
        raise typer.Exit(3)


@app.command("run")
def run_cmd(
    agent: Annotated[str, typer.Argument(help="A .wasm/.wat file or a shipped example name.")],
    data: DataDirOption = Path("igor-data"),
    budget: BudgetOption = 1.0,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Capability manifest (JSON).")
    ] = None,
    ticks: TicksOption = None,
    checkpoint_every: EveryOption = 1,
    interval: IntervalOption = None,
    price: PriceOption = DEFAULT_PRICE,
    as_json: JsonOption = False,
) -> None:
    """Launch a new agent locally and tick it (no network). Stop with Ctrl-C; resume later."""
    configure_logging("console", "WARNING")
    with typed_errors():
        wasm = load_agent_source(agent)
        manifest_obj = (
            parse_manifest(manifest.read_bytes()) if manifest else load_agent_manifest(agent)
        )
        request = LaunchRequest(
            wasm=wasm, manifest=manifest_obj.canonical_bytes, budget=units_to_micro(budget)
        )
        options = LocalRunOptions(
            data=data_dir(data),
            runtime=RuntimeConfig(price=price),
            scheduler=_scheduler(checkpoint_every, interval),
            ticks=ticks,
        )
        result = trio.run(run_local, options, lambda s: launch(s, request), _printer(as_json))
    _finish(result)


@app.command("resume")
def resume_cmd(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent's DID (or a suffix).")],
    data: DataDirOption = Path("igor-data"),
    ticks: TicksOption = None,
    checkpoint_every: EveryOption = 1,
    interval: IntervalOption = None,
    price: PriceOption = DEFAULT_PRICE,
    as_json: JsonOption = False,
) -> None:
    """Continue an agent from its last committed checkpoint, with the same identity."""
    configure_logging("console", "WARNING")
    with typed_errors():
        did = _resolve(data, agent_id)
        options = LocalRunOptions(
            data=data_dir(data),
            runtime=RuntimeConfig(price=price),
            scheduler=_scheduler(checkpoint_every, interval),
            ticks=ticks,
        )
        result = trio.run(run_local, options, lambda s: resume(s, did), _printer(as_json))
    _finish(result)


def _resolve(data: Path, agent_id: str) -> str:
    store = Store.open(data_dir(data).database, check_on_open=False)
    try:
        return resolve_agent_id([r.agent for r in store.authorities()], agent_id)
    finally:
        store.close()


# ---------------------------------------------------------------- against a running node


def _admin(data: Path, method: str, timeout_s: float = 30.0, **params: object) -> object:
    from igor_p2p.cli.node import admin

    return admin(data, method, timeout_s, **params)


@app.command("launch")
def launch_cmd(
    agent: Annotated[str, typer.Argument(help="A .wasm/.wat file or a shipped example name.")],
    data: DataDirOption = Path("igor-data"),
    budget: BudgetOption = 1.0,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Capability manifest (JSON).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Launch an agent on the running node of the data directory; prints its DID."""
    with typed_errors():
        wasm = load_agent_source(agent)
        manifest_obj = (
            parse_manifest(manifest.read_bytes()) if manifest else load_agent_manifest(agent)
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
        console.print(result["agent"])  # type: ignore[index]


@app.command("list")
def list_cmd(data: DataDirOption = Path("igor-data"), as_json: JsonOption = False) -> None:
    """Every agent the running node has a record of, with its authority state."""
    from rich.table import Table

    with typed_errors():
        agents = _admin(data, "agents")
    if as_json:
        emit_json(agents)
        return
    table = Table("agent", "state", "epoch", "tick", "budget", "reason")
    for a in agents:  # type: ignore[union-attr]
        table.add_row(
            a["agent"],
            a["state"],
            str(a["epoch"]),
            str(a.get("tick", "-")),
            format_micro(a["budget"]) if "budget" in a else "-",
            a.get("reason", ""),
        )
    console.print(table)


@app.command("status")
def status_cmd(
    agent_id: Annotated[str, typer.Argument(metavar="DID")],
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
) -> None:
    """Owner, epoch, state, tick and budget of an agent, from any node (via the DHT)."""
    with typed_errors():
        status = _admin(data, "agent_status", agent=agent_id)
    if as_json:
        emit_json(status)
        return
    for key in ("agent", "state", "epoch", "owner_peer", "node", "tick", "budget", "reason"):
        value = status.get(key)  # type: ignore[union-attr]
        if value in (None, ""):
            continue
        if key == "budget":
            value = format_micro(value)  # type: ignore[arg-type]
        console.print(f"{key:<11} {value}")
    console.print(f"{'source':<11} {status.get('source')}")  # type: ignore[union-attr]


FOLLOW_POLL_S = 0.5


@app.command("logs")
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
    with typed_errors():
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


@app.command("halt")
def halt_cmd(
    agent_id: Annotated[str, typer.Argument(metavar="DID")],
    data: DataDirOption = Path("igor-data"),
    reason: Annotated[str, typer.Option("--reason")] = "halted by operator",
) -> None:
    """Stop an agent at a tick boundary with a final checkpoint (state HALTED)."""
    with typed_errors():
        result = _admin(data, "halt", agent=agent_id, reason=reason)
    console.print(f"halted at tick {result['tick']}")  # type: ignore[index]


MIGRATE_TIMEOUT_S = 150.0


class ForceNotConfirmed(IgorError):
    """A forced recovery was asked for without ``--yes-i-know``."""


@app.command("migrate")
def migrate_cmd(
    agent_id: Annotated[str, typer.Argument(metavar="DID")],
    to: Annotated[str, typer.Option("--to", help="Target peer ID or multiaddr.")],
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
) -> None:
    """Move an agent ticking on this node to another node (ack/confirm handoff)."""
    with typed_errors():
        result = _admin(data, "migrate", MIGRATE_TIMEOUT_S, agent=agent_id, to=to)
    if as_json:
        emit_json(result)
    else:
        console.print(f"{result['outcome']}  → {result['to']}")  # type: ignore[index]


@app.command("recover")
def recover_cmd(
    agent_id: Annotated[str, typer.Argument(metavar="DID")],
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
    """Run the recover exchange now; with --force --yes-i-know, force this node owner."""
    with typed_errors():
        if force and not yes_i_know:
            raise ForceNotConfirmed("a forced recovery needs --yes-i-know")
        params: dict[str, object] = {"agent": agent_id}
        if force:
            params.update(force=True, confirm=True, operator=operator)
        result = _admin(data, "recover", MIGRATE_TIMEOUT_S, **params)
    if as_json:
        emit_json(result)
    else:
        console.print(result)
