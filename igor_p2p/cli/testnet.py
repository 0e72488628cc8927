"""``igor testnet …``: a local testnet of real node processes, its nemesis, and the checker.

Every command takes ``--dir``; without it, ``IGOR_TESTNET_DIR``, else the testnet last brought
up (remembered in ``$XDG_STATE_HOME/igor/last-testnet``), else ``./testnet-data``. The
testnet's state lives in ``DIR/testnet.json`` so separate invocations drive the same processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from igor_p2p.cli.common import (
    ExitCode,
    JsonOption,
    OutputOption,
    QuietOption,
    WideOption,
    console,
    emit_json,
    err_console,
    error_out,
    examples,
    fail,
    humanize,
    is_wide,
    print_table,
    typed_errors,
)

app = typer.Typer(no_args_is_help=True, help="Run a local testnet, inject faults, check it.")

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        envvar="IGOR_TESTNET_DIR",
        help="The testnet's directory (state, node data, logs). Default: $IGOR_TESTNET_DIR, "
        "else the testnet last brought up, else ./testnet-data.",
        show_default=False,
    ),
]
NodeArgument = Annotated[str, typer.Argument(help="Node name, e.g. n3.")]
DEFAULT_DIR = Path("testnet-data")
LAST_FILE = "last-testnet"
OWNER_LOOKUP_S = 5.0


def _state_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "igor"


def remember(dir: Path) -> None:
    """Remember ``dir`` as the last testnet (best effort: a read-only home is fine)."""
    try:
        home = _state_home()
        home.mkdir(parents=True, exist_ok=True)
        (home / LAST_FILE).write_text(str(dir.absolute()) + "\n", encoding="utf-8")
    except OSError:
        pass


def last_testnet() -> Path | None:
    try:
        text = (_state_home() / LAST_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = Path(text)
    return path if text and (path / "testnet.json").exists() else None


def resolve_dir(dir: Path | None) -> Path:
    """``--dir`` (or ``IGOR_TESTNET_DIR``), else the last testnet, else ``./testnet-data``."""
    if dir is not None:
        return dir
    return last_testnet() or DEFAULT_DIR


def _testnet(dir: Path | None, *, must_exist: bool = True):  # type: ignore[no-untyped-def]
    from testnet.harness import Testnet

    where = resolve_dir(dir)
    tn = Testnet(where)
    if must_exist and not tn.state.nodes:
        fail(
            f"no testnet in {tn.dir} (start one with: igor testnet up -n 5 --dir {where})",
            ExitCode.NOT_FOUND,
        )
    return tn


def _runner(tn):  # type: ignore[no-untyped-def]
    from testnet.nemesis_runner import NemesisRunner

    return NemesisRunner(tn)


def _step(action: str, **args: Any):  # type: ignore[no-untyped-def]
    from testnet.nemesis import NemesisError, NemesisStep

    try:
        return NemesisStep(0.0, action, {k: v for k, v in args.items() if v is not None})
    except NemesisError as exc:
        fail(str(exc))


def _node_name(tn, node: str) -> str:  # type: ignore[no-untyped-def]
    if node not in tn.names:
        fail(f"no node {node!r} in {tn.dir} (nodes: {', '.join(tn.names)})", ExitCode.NOT_FOUND)
    return node


def _apply(dir: Path | None, action: str, **args: Any) -> Any:
    from testnet.nemesis import NemesisError, validate_step

    with typed_errors():
        tn = _testnet(dir)
        if isinstance(args.get("node"), str):
            _node_name(tn, args["node"])
        step = _step(action, **args)
        try:
            validate_step(step, tn.names)
        except NemesisError as exc:
            fail(str(exc))
        applied = _runner(tn).apply(step)
        told = ", ".join(applied.nodes) or "-"
        if action == "partition":
            told = f"{_groups_text(tn, args.get('shape'), args.get('groups'))} (told: {told})"
    console.print(f"{action}: {told}", markup=False)
    for node, why in applied.skipped.items():
        console.print(f"  [yellow]{node}[/yellow] not told: {humanize(why)}")
    return tn


def _state_cell(r: dict[str, Any]) -> str:
    return {"up": "[green]up[/green]", "paused": "[yellow]paused[/yellow]"}.get(
        r["state"], "[red]down[/red]"
    )


def _status_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("name", "state", "peer ID", "address", "agents", "peers up", "ticks", "down")
    for r in rows:
        table.add_row(
            r["name"],
            _state_cell(r),
            r["peer_id"],
            r["addr"].split("/p2p/")[0],
            ", ".join(r["agents"]) or "-",
            "-" if r["peers_up"] is None else str(r["peers_up"]),
            "-" if r["ticks_total"] is None else str(r["ticks_total"]),
            ", ".join(r.get("peers_down", [])) or "-",
        )
    return table


@app.command(
    "up",
    epilog=examples(
        "igor testnet up -n 5",
        "igor testnet up -n 3 --dir /tmp/tn --base-port 4101 --no-wander",
        "sudo igor testnet up -n 8 --netns    # kernel partitions between namespaces",
    ),
)
def up_cmd(
    n: Annotated[int, typer.Option("-n", "--nodes", min=1, help="Number of nodes.")] = 5,
    dir: DirOption = None,
    tick_interval: Annotated[
        float, typer.Option("--tick-interval", help="Seconds between an idle agent's ticks.")
    ] = 0.1,
    wander: Annotated[
        bool,
        typer.Option(
            "--wander/--no-wander", help="Let agents that ask to move hop to a random peer."
        ),
    ] = True,
    base_port: Annotated[
        int | None,
        typer.Option("--base-port", help="Listen on BASE, BASE+1, … (default: any free ports)."),
    ] = None,
    wide: WideOption = False,
    netns: Annotated[
        bool,
        typer.Option(
            "--netns",
            help="Each node in its own network namespace on a bridge; partitions by the "
            "kernel (needs root and iproute2; refused with the reason otherwise).",
        ),
    ] = False,
) -> None:
    """Start N nodes (n1 bootstraps the others) and wait until every peer table is complete.

    Ctrl-C while it starts stops the nodes it started."""
    args = ["--log-format", "json", "--tick-interval", f"{tick_interval:g}"]
    if wander:
        args += ["--wander", "random"]
    where = dir if dir is not None else DEFAULT_DIR
    with typed_errors():
        tn = _testnet(where, must_exist=False)
        if netns:
            from testnet.netns import check_available

            check_available()  # NetnsUnavailable says what is missing (not root, no iproute2)
        remember(tn.dir)
        try:
            with console.status(f"starting {n} node(s) in {tn.dir}…"):
                seconds = tn.up(n, args, base_port=base_port, netns=netns)
        except KeyboardInterrupt:
            tn.down(grace_s=5.0)
            err_console.print(
                f"[yellow]interrupted: stopped the {n} node(s) it had started[/yellow] "
                f"(data kept in {tn.dir})"
            )
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        rows = tn.status()
    print_table(_status_table(rows), wide)
    console.print(f"{n} node(s) connected in {seconds:.1f} s; state in {tn.state_path}")
    console.print("next: igor testnet launch wanderer --count 3; igor testnet watch", markup=False)


@app.command(
    "status",
    epilog=examples(
        "igor testnet status",
        "igor testnet status --wide          # full peer IDs",
        "igor testnet status -q              # peer IDs only",
        "igor testnet status --json",
    ),
)
def status_cmd(
    dir: DirOption = None,
    as_json: JsonOption = False,
    wide: WideOption = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Each node: process state, peer ID, address, agents ticking, peers up."""
    wide = is_wide(wide, output)
    with typed_errors(as_json):
        rows = _testnet(dir).status()
    if as_json:
        emit_json(rows)
    elif quiet:
        for r in rows:
            console.print(r["peer_id"], markup=False)
    else:
        print_table(_status_table(rows), wide)


@app.command("down", epilog=examples("igor testnet down", "igor testnet down --dir /tmp/tn"))
def down_cmd(dir: DirOption = None) -> None:
    """Stop every node (SIGTERM, SIGKILL after a grace period). Data dirs are kept."""
    with typed_errors():
        tn = _testnet(dir)
        tn.down()
    console.print(f"down; data kept in {tn.dir}", markup=False)


@app.command(
    "logs",
    epilog=examples(
        "igor testnet logs n1 --lines 20",
        "igor testnet logs n3 -f            # follow, Ctrl-C to stop",
    ),
)
def logs_cmd(
    node: NodeArgument,
    dir: DirOption = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Last N lines (0: all).")] = 0,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
) -> None:
    """Print a node's log (its stdout and stderr, JSON lines)."""
    with typed_errors():
        tn = _testnet(dir)
        path = tn.logs(_node_name(tn, node))
        if not path.exists():
            fail(f"{node} has no log yet ({path})", ExitCode.NOT_FOUND)
        with path.open("rb") as f:
            text = f.read().decode(errors="replace")
            offset = f.tell()
    out = text.splitlines()[-lines:] if lines else text.splitlines()
    for line in out:
        print(line)
    if not follow:
        return
    partial = b""
    try:
        while True:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                if size < offset:
                    offset = 0
                f.seek(offset)
                data = f.read()
            offset += len(data)
            chunks = (partial + data).split(b"\n")
            partial = chunks.pop()
            for chunk in chunks:
                print(chunk.decode(errors="replace"), flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        return


def _groups_text(tn, shape: str | None, groups: str | None) -> str:  # type: ignore[no-untyped-def]
    from testnet.nemesis import partition_groups

    parts = partition_groups(shape or "groups", tn.names, groups=groups)
    return " | ".join(" ".join(sorted(g, key=tn.names.index)) for g in parts)


@app.command(
    "partition",
    epilog=examples(
        "igor testnet partition --shape halves",
        "igor testnet partition --shape isolate:n3",
        "igor testnet partition --groups n1,n2/n3,n4,n5",
    ),
)
def partition_cmd(
    dir: DirOption = None,
    shape: Annotated[
        str | None,
        typer.Option("--shape", help="halves | isolate:NODE | bridge | ring | majority-ring"),
    ] = None,
    groups: Annotated[
        str | None, typer.Option("--groups", help="Disjoint groups, e.g. n1,n2/n3,n4,n5.")
    ] = None,
) -> None:
    """Cut the links between groups of nodes (every node is told its cut: symmetric)."""
    if (shape is None) == (groups is None):
        fail("give exactly one of --shape or --groups")
    _apply(dir, "partition", shape=shape, groups=groups)


@app.command("heal", epilog=examples("igor testnet heal"))
def heal_cmd(dir: DirOption = None) -> None:
    """Remove every partition."""
    _apply(dir, "heal")


@app.command("kill", epilog=examples("igor testnet kill n3", "igor testnet restart n3"))
def kill_cmd(node: NodeArgument, dir: DirOption = None) -> None:
    """SIGKILL a node."""
    _apply(dir, "kill", node=node)


@app.command("restart", epilog=examples("igor testnet restart n3"))
def restart_cmd(node: NodeArgument, dir: DirOption = None) -> None:
    """Start a killed node again (same data dir, port and arguments: same peer ID)."""
    with typed_errors():
        tn = _testnet(dir)
        _node_name(tn, node)
        with console.status(f"starting {node}…"):
            tn.restart(node)
        _runner(tn).log_event(node, "restart", {"pid": tn.node(node).pid})
    console.print(f"restart: {node} ({tn.node(node).peer_id})", markup=False)


@app.command("pause", epilog=examples("igor testnet pause n2", "igor testnet unpause n2"))
def pause_cmd(node: NodeArgument, dir: DirOption = None) -> None:
    """SIGSTOP a node."""
    _apply(dir, "pause", node=node)


@app.command("unpause", epilog=examples("igor testnet unpause n2"))
def unpause_cmd(node: NodeArgument, dir: DirOption = None) -> None:
    """SIGCONT a paused node."""
    _apply(dir, "unpause", node=node)


@app.command(
    "faults",
    epilog=examples(
        "igor testnet faults --drop 0.1 --delay 50 --nodes n1,n2",
        "igor testnet faults --clear",
    ),
)
def faults_cmd(
    dir: DirOption = None,
    drop: Annotated[
        float, typer.Option("--drop", min=0, max=1, help="Probability of dropping a frame.")
    ] = 0.0,
    dup: Annotated[
        float, typer.Option("--dup", min=0, max=1, help="Probability of sending a frame twice.")
    ] = 0.0,
    delay: Annotated[
        int, typer.Option("--delay", min=0, help="Delay every frame by this many milliseconds.")
    ] = 0,
    reorder: Annotated[bool, typer.Option("--reorder", help="Reorder frames.")] = False,
    nodes: Annotated[str | None, typer.Option("--nodes", help="n1,n2 (default: all).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove message faults.")] = False,
) -> None:
    """Message faults on /igor/* frames sent by the chosen nodes (or --clear them)."""
    if clear:
        _apply(dir, "clear_faults", nodes=nodes)
        return
    _apply(
        dir,
        "faults",
        drop=drop,
        dup=dup,
        delay_ms=delay,
        reorder=1.0 if reorder else 0.0,
        nodes=nodes,
    )


@app.command("skew", epilog=examples("igor testnet skew n2 30", "igor testnet skew n2 0"))
def skew_cmd(
    node: NodeArgument,
    seconds: Annotated[float, typer.Argument(help="Wall-clock offset (0 removes it).")],
    dir: DirOption = None,
) -> None:
    """Shift a node's wall clock."""
    _apply(dir, "skew", node=node, seconds=seconds)


@app.command(
    "launch",
    epilog=examples(
        "igor testnet launch wanderer --count 3", "igor testnet launch counter --node n2"
    ),
)
def launch_cmd(
    agent: Annotated[str, typer.Argument(help="Shipped example name or .wasm/.wat path.")],
    dir: DirOption = None,
    node: Annotated[str, typer.Option("--node", help="The node to launch on.")] = "n1",
    count: Annotated[int, typer.Option("--count", min=1, help="How many agents.")] = 1,
) -> None:
    """Launch COUNT agents on NODE; they are labelled a1, a2, … for nemesis steps."""
    from igor_p2p.agent.errors import AgentSourceNotFound
    from igor_p2p.agent.examples import list_examples

    with typed_errors():
        tn = _testnet(dir)
        _node_name(tn, node)
        for _ in range(count):
            label = f"a{len(tn.state.agents) + 1}"
            try:
                did = tn.launch_labelled(label, node, agent)
            except AgentSourceNotFound:
                fail(
                    f"no .wasm/.wat file and no shipped example named {agent!r}; shipped "
                    f"examples: {', '.join(list_examples())}",
                    ExitCode.NOT_FOUND,
                )
            console.print(f"{label}  {did}  on {node}", markup=False)


def _agent_did(tn, agent: str) -> str:  # type: ignore[no-untyped-def]
    """A label (``a1``), a whole DID, or a unique suffix of a labelled agent's DID."""
    from igor_p2p.cli.common import resolve_agent_id

    if agent in tn.state.agents:
        return str(tn.state.agents[agent])
    return resolve_agent_id(list(tn.state.agents.values()), agent)


@app.command(
    "migrate",
    epilog=examples("igor testnet migrate a1 n4", "igor testnet migrate a2 n1 --json"),
)
def migrate_cmd(
    agent: Annotated[str, typer.Argument(help="Agent label (a1…), DID or unique DID suffix.")],
    node: Annotated[str, typer.Argument(help="Target node name, e.g. n4.")],
    dir: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move an agent to a node, by label: finds its owner and asks it to migrate (with
    progress, like igor agent migrate)."""
    from igor_p2p.cli.agent import follow_migration

    with typed_errors(as_json):
        tn = _testnet(dir)
        _node_name(tn, node)
        did = _agent_did(tn, agent)
        end = time.monotonic() + OWNER_LOOKUP_S
        owners = tn.owners(did)
        while not owners and time.monotonic() < end:  # between owners while it hops
            time.sleep(0.1)
            owners = tn.owners(did)
        if not owners:
            fail(
                f"no reachable node owns {tn.label_of(did)} right now (paused, killed, or "
                "between owners); try again, or see igor testnet watch",
                ExitCode.NOT_FOUND,
            )
        source = owners[0]
        if source == node:
            fail(f"{tn.label_of(did)} is already on {node}", ExitCode.USAGE)
        if not as_json:
            console.print(f"{tn.label_of(did)} ({did}) is on {source}", markup=False)
    follow_migration(
        Path(tn.node(source).data_dir), did, tn.peer_id(node), as_json=as_json, target_name=node
    )


@app.command(
    "scenarios",
    epilog=examples("igor testnet scenarios", "igor testnet run partition-during-migration"),
)
def scenarios_cmd(as_json: JsonOption = False) -> None:
    """The shipped scenarios for igor testnet run, with what each does."""
    from testnet.scenario import list_scenarios, load_scenario

    with typed_errors(as_json):
        found = [load_scenario(name) for name in list_scenarios()]
    if as_json:
        emit_json(
            [
                {
                    "name": s.name,
                    "nodes": s.nodes,
                    "agents": s.agents,
                    "duration_s": s.duration_s,
                    "description": " ".join(s.description.split()),
                }
                for s in found
            ]
        )
        return
    table = Table("scenario", "nodes", "agents", "faults for", "what it does")
    for s in found:
        table.add_row(
            s.name,
            str(s.nodes),
            str(s.agents),
            f"{s.duration_s:g} s",
            " ".join(s.description.split()),
        )
    console.print(table)


@app.command(
    "check",
    epilog=examples("igor testnet check", "igor testnet check --json --liveness-bound 8"),
)
def check_cmd(
    dir: DirOption = None,
    as_json: JsonOption = False,
    liveness_bound: Annotated[
        float,
        typer.Option("--liveness-bound", help="Seconds after the heal an agent has to tick again."),
    ] = 5.0,
) -> None:
    """Check every history and store; write DIR/report.html; exit 1 on a violation."""
    from testnet.checker import CheckConfig
    from testnet.collect import check_dir

    with typed_errors(as_json):
        tn = _testnet(dir, must_exist=False)
        if not (tn.dir / "testnet.json").exists() and not list(tn.dir.glob("*/history.jsonl")):
            fail(f"nothing to check in {tn.dir} (no testnet there)", ExitCode.NOT_FOUND)
        started = time.monotonic()
        with console.status("checking…") as spin:

            def phase(text: str) -> None:
                if not as_json:
                    console.print(f"  {time.monotonic() - started:5.1f}s  {text}", markup=False)
                spin.update(f"{text}…")

            checked = check_dir(
                tn.dir,
                config=CheckConfig(liveness_bound_s=liveness_bound),
                freeze=tn.frozen if tn.state.nodes else None,
                on_phase=phase,
            )
    result = checked.result
    if as_json:
        emit_json({**result.to_dict(), "report": str(checked.report)})
    else:
        console.print(result.to_text(), markup=False)
        console.print(f"report: {checked.report}", markup=False)
    if not result.ok:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command(
    "run",
    epilog=examples(
        "igor testnet run partition-during-migration",
        "igor testnet run random --seed 42 --duration 20 --json",
        "igor testnet scenarios            # the list of scenarios",
    ),
)
def run_cmd(
    scenario: Annotated[str, typer.Argument(help="A name from igor testnet scenarios, or a path.")],
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the random schedule.")] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Length of the fault phase, seconds.")
    ] = None,
    dir: DirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Jepsen-style run: up, workload, nemesis, final heal, wait, check, report, down."""
    from testnet.run import run_scenario, summary_lines, with_overrides
    from testnet.scenario import list_scenarios, load_scenario

    where = dir if dir is not None else DEFAULT_DIR
    with typed_errors(as_json):
        bare = "/" not in scenario and not scenario.endswith(".toml")
        if bare and scenario not in list_scenarios():
            fail(
                f"no scenario {scenario!r}; shipped scenarios: {', '.join(list_scenarios())}",
                ExitCode.NOT_FOUND,
            )
        sc = with_overrides(load_scenario(scenario), seed=seed, duration_s=duration)
        log = (lambda _m: None) if as_json else (lambda m: console.print(m, markup=False))
        remember(Path(where).absolute())
        try:
            outcome = run_scenario(sc, where, log=log)
        except KeyboardInterrupt:
            error_out(
                "interrupted: the run stopped its nodes; nothing was checked",
                ExitCode.INTERRUPTED,
                hint=f"igor testnet check --dir {where} checks what was recorded",
            )
    if as_json:
        emit_json(outcome.to_dict())
    else:
        console.print()
        for line in summary_lines(outcome):
            console.print(line, markup=False)
    if not outcome.ok:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command(
    "watch",
    epilog=examples("igor testnet watch", "igor testnet watch --count 10 --interval 0.5"),
)
def watch_cmd(
    dir: DirOption = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between redraws.")] = 0.25,
    count: Annotated[int, typer.Option("--count", help="Redraws (0: until Ctrl-C).")] = 0,
) -> None:
    """A live view: nodes up/paused/partitioned/killed, agents with owner, epoch and tick,
    handoffs as they happen. A slow or paused node never holds the view up."""
    from igor_p2p.cli.testnet_watch import Watcher

    with typed_errors():
        tn = _testnet(dir)
        watcher = Watcher(tn.dir)
        done = 0
        try:
            with Live(watcher.render(), console=console, auto_refresh=False) as live:
                while count == 0 or done < count:
                    time.sleep(interval)
                    live.update(watcher.render(), refresh=True)
                    done += 1
        except KeyboardInterrupt:
            pass
        finally:
            watcher.stop()
