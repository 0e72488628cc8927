"""``igor testnet …``: a local testnet of real node processes, its nemesis, and the checker.

Every command takes ``--dir`` (default ``./testnet-data``); the testnet's state lives in
``DIR/testnet.json`` so separate invocations drive the same processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from igor_p2p.cli.common import JsonOption, console, emit_json, fail, typed_errors

app = typer.Typer(no_args_is_help=True, help="Run a local testnet, inject faults, check it.")

DirOption = Annotated[
    Path, typer.Option("--dir", help="The testnet's directory (state, node data, logs).")
]
DEFAULT_DIR = Path("testnet-data")


def _testnet(dir: Path, *, must_exist: bool = True):  # type: ignore[no-untyped-def]
    from testnet.harness import Testnet

    tn = Testnet(dir)
    if must_exist and not tn.state.nodes:
        fail(f"no testnet in {tn.dir} (igor testnet up -n N --dir {dir})")
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


def _apply(dir: Path, action: str, **args: Any) -> None:
    from testnet.nemesis import NemesisError, validate_step

    with typed_errors():
        tn = _testnet(dir)
        step = _step(action, **args)
        try:
            validate_step(step, tn.names)
        except NemesisError as exc:
            fail(str(exc))
        applied = _runner(tn).apply(step)
    told = ", ".join(applied.nodes) or "-"
    console.print(f"{action}: {told}")
    for node, why in applied.skipped.items():
        console.print(f"  [yellow]{node}[/yellow] not told: {why}")


def _status_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("name", "state", "peer ID", "address", "agents", "peers up", "ticks", "down")
    for r in rows:
        state = {"up": "[green]up[/green]", "paused": "[yellow]paused[/yellow]"}.get(
            r["state"], "[red]down[/red]"
        )
        table.add_row(
            r["name"],
            state,
            r["peer_id"],
            r["addr"].split("/p2p/")[0],
            ", ".join(r["agents"]) or "-",
            "-" if r["peers_up"] is None else str(r["peers_up"]),
            "-" if r["ticks_total"] is None else str(r["ticks_total"]),
            ", ".join(r.get("peers_down", [])) or "-",
        )
    return table


@app.command("up")
def up_cmd(
    n: Annotated[int, typer.Option("-n", "--nodes", min=1, help="Number of nodes.")] = 5,
    dir: DirOption = DEFAULT_DIR,
    tick_interval: Annotated[float, typer.Option("--tick-interval")] = 0.1,
    wander: Annotated[bool, typer.Option("--wander/--no-wander")] = True,
    netns: Annotated[
        bool,
        typer.Option(
            "--netns",
            help="Each node in its own network namespace on a bridge; partitions by the "
            "kernel (needs root; falls back to loopback with a warning).",
        ),
    ] = False,
) -> None:
    """Start N nodes (n1 bootstraps the others) and wait until every peer table is complete."""
    args = ["--log-format", "json", "--tick-interval", f"{tick_interval:g}"]
    if wander:
        args += ["--wander", "random"]
    with typed_errors():
        tn = _testnet(dir, must_exist=False)
        if netns:
            from testnet.netns import NetnsUnavailable, check_available

            try:
                check_available()
            except NetnsUnavailable as exc:
                console.print(f"[yellow]warning:[/] {exc}; using loopback instead")
                netns = False
        seconds = tn.up(n, args, netns=netns)
        rows = tn.status()
    console.print(_status_table(rows))
    console.print(f"{n} node(s) connected in {seconds:.1f} s; state in {tn.state_path}")


@app.command("status")
def status_cmd(dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Each node: process state, peer ID, address, agents ticking, peers up."""
    with typed_errors():
        rows = _testnet(dir).status()
    if as_json:
        emit_json(rows)
    else:
        console.print(_status_table(rows))


@app.command("down")
def down_cmd(dir: DirOption = DEFAULT_DIR) -> None:
    """Stop every node (SIGTERM, SIGKILL after a grace period). Data dirs are kept."""
    with typed_errors():
        tn = _testnet(dir)
        tn.down()
    console.print(f"down; data kept in {tn.dir}")


@app.command("logs")
def logs_cmd(
    node: Annotated[str, typer.Argument(help="Node name, e.g. n1.")],
    dir: DirOption = DEFAULT_DIR,
    lines: Annotated[int, typer.Option("--lines", help="Last N lines (0: all).")] = 0,
) -> None:
    """Print a node's log (its stdout and stderr, JSON lines)."""
    with typed_errors():
        text = _testnet(dir).logs(node).read_text(errors="replace")
    out = text.splitlines()[-lines:] if lines else text.splitlines()
    for line in out:
        print(line)


@app.command("partition")
def partition_cmd(
    dir: DirOption = DEFAULT_DIR,
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


@app.command("heal")
def heal_cmd(dir: DirOption = DEFAULT_DIR) -> None:
    """Remove every partition."""
    _apply(dir, "heal")


@app.command("kill")
def kill_cmd(node: str, dir: DirOption = DEFAULT_DIR) -> None:
    """SIGKILL a node."""
    _apply(dir, "kill", node=node)


@app.command("restart")
def restart_cmd(node: str, dir: DirOption = DEFAULT_DIR) -> None:
    """Start a killed node again (same data dir, port and arguments: same peer ID)."""
    with typed_errors():
        tn = _testnet(dir)
        tn.restart(node)
        _runner(tn).log_event(node, "restart", {"pid": tn.node(node).pid})
    console.print(f"restart: {node} ({tn.node(node).peer_id})")


@app.command("pause")
def pause_cmd(node: str, dir: DirOption = DEFAULT_DIR) -> None:
    """SIGSTOP a node."""
    _apply(dir, "pause", node=node)


@app.command("unpause")
def unpause_cmd(node: str, dir: DirOption = DEFAULT_DIR) -> None:
    """SIGCONT a paused node."""
    _apply(dir, "unpause", node=node)


@app.command("faults")
def faults_cmd(
    dir: DirOption = DEFAULT_DIR,
    drop: Annotated[float, typer.Option("--drop", min=0, max=1)] = 0.0,
    dup: Annotated[float, typer.Option("--dup", min=0, max=1)] = 0.0,
    delay: Annotated[int, typer.Option("--delay", min=0, help="Milliseconds.")] = 0,
    reorder: Annotated[bool, typer.Option("--reorder")] = False,
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


@app.command("skew")
def skew_cmd(
    node: str,
    seconds: Annotated[float, typer.Argument(help="Wall-clock offset (0 removes it).")],
    dir: DirOption = DEFAULT_DIR,
) -> None:
    """Shift a node's wall clock."""
    _apply(dir, "skew", node=node, seconds=seconds)


@app.command("launch")
def launch_cmd(
    agent: Annotated[str, typer.Argument(help="Shipped example name or .wasm/.wat path.")],
    dir: DirOption = DEFAULT_DIR,
    node: Annotated[str, typer.Option("--node")] = "n1",
    count: Annotated[int, typer.Option("--count", min=1)] = 1,
) -> None:
    """Launch COUNT agents on NODE; they are labelled a1, a2, … for nemesis steps."""
    with typed_errors():
        tn = _testnet(dir)
        for _ in range(count):
            label = f"a{len(tn.state.agents) + 1}"
            did = tn.launch_labelled(label, node, agent)
            console.print(f"{label}  {did}  on {node}")


@app.command("check")
def check_cmd(
    dir: DirOption = DEFAULT_DIR,
    as_json: JsonOption = False,
    liveness_bound: Annotated[float, typer.Option("--liveness-bound", help="Seconds.")] = 5.0,
) -> None:
    """Check every history and store; write DIR/report.html; exit 1 on a violation."""
    from testnet.checker import CheckConfig
    from testnet.collect import check_dir

    with typed_errors():
        tn = _testnet(dir, must_exist=False)
        checked = check_dir(
            dir,
            config=CheckConfig(liveness_bound_s=liveness_bound),
            freeze=tn.frozen if tn.state.nodes else None,
        )
    result = checked.result
    if as_json:
        emit_json({**result.to_dict(), "report": str(checked.report)})
    else:
        console.print(result.to_text(), markup=False)
        console.print(f"report: {checked.report}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("run")
def run_cmd(
    scenario: Annotated[str, typer.Argument(help="A name from testnet/scenarios or a path.")],
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Fault phase, s.")] = None,
    dir: DirOption = DEFAULT_DIR,
    as_json: JsonOption = False,
) -> None:
    """Jepsen-style run: up, workload, nemesis, final heal, wait, check, report, down."""
    from testnet.run import run_scenario, with_overrides
    from testnet.scenario import load_scenario

    with typed_errors():
        sc = with_overrides(load_scenario(scenario), seed=seed, duration_s=duration)
        log = (lambda _m: None) if as_json else (lambda m: console.print(m, markup=False))
        outcome = run_scenario(sc, dir, log=log)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        console.print(outcome.result.to_text(), markup=False)
        for problem in outcome.unmet:
            console.print(f"[red]unmet:[/red] {problem}")
        console.print(f"faults: {dict(outcome.faults)}")
        console.print(f"report: {outcome.report}")
    if not outcome.ok:
        raise typer.Exit(1)


def _links(tn, rows: list[dict[str, Any]]) -> str:  # type: ignore[no-untyped-def]
    cut = []
    for r in rows:
        for other in r.get("peers_down", []):
            if r["name"] < other:
                cut.append(f"{r['name']}✕{other}")
    return "links down: " + (", ".join(cut) or "none")


@app.command("watch")
def watch_cmd(
    dir: DirOption = DEFAULT_DIR,
    interval: Annotated[float, typer.Option("--interval")] = 1.0,
    count: Annotated[int, typer.Option("--count", help="Refreshes (0: until Ctrl-C).")] = 0,
) -> None:
    """A live view: nodes up/down/paused, the agents ticking on each, links down."""
    from rich.console import Group
    from rich.text import Text

    with typed_errors():
        tn = _testnet(dir)

        def render() -> Group:
            rows = tn.status()
            stamp = time.strftime("%H:%M:%S")
            return Group(_status_table(rows), Text(f"{stamp}  {_links(tn, rows)}"))

        done = 0
        try:
            with Live(render(), console=console, refresh_per_second=4) as live:
                while count == 0 or done < count:
                    time.sleep(interval)
                    live.update(render())
                    done += 1
        except KeyboardInterrupt:
            pass
