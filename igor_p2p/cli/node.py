"""``igor node …``: run a node, and ask a running one for its status and peers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import trio
import typer
from rich.table import Table

from igor_p2p.cli.common import (
    DataDirOption,
    ExitCode,
    JsonOption,
    MissingDataDir,
    OutputOption,
    QuietOption,
    WideOption,
    console,
    emit_json,
    examples,
    fail,
    is_wide,
    print_table,
    typed_errors,
)
from igor_p2p.logs import configure_logging
from igor_p2p.node.admin_client import call_admin
from igor_p2p.node.config import load_node_config
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.metering import format_micro
from igor_p2p.runtime.services import default_peer_id

app = typer.Typer(no_args_is_help=True, help="Run a node and query a running one.")

ListOption = Annotated[list[str] | None, typer.Option(help="Repeatable.")]


DETACH_DEADLINE_S = 60.0
STOP_DEADLINE_S = 30.0


def admin(data: Path, method: str, timeout_s: float = 30.0, **params: Any) -> Any:
    """One admin call to the node that owns ``data`` (its admin.sock)."""
    if not Path(data).is_dir():
        raise MissingDataDir(Path(data), "; is the node running with this --data-dir?")
    return call_admin(DataDir(data).admin_socket, method, params or None, timeout_s=timeout_s)


def _detach(data_dir: Path, log_file: Path | None) -> None:
    """Start this same ``igor node run`` in the background (its output to a log file), wait
    until its admin socket answers, print its peer ID and pid."""
    log = log_file or data_dir / "node.log"
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    if log_file is None:
        argv += ["--log-file", str(log)]
    DataDir(data_dir).ensure()
    proc = subprocess.Popen(
        [sys.executable, "-m", "igor_p2p.cli.main", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    end = time.monotonic() + DETACH_DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = (
                "\n".join(log.read_text(errors="replace").splitlines()[-10:])
                if log.exists()
                else ""
            )
            fail(f"the node exited during start-up (see {log}):\n{tail}", ExitCode.FAILED)
        try:
            status = call_admin(DataDir(data_dir).admin_socket, "status", None, timeout_s=2.0)
        except Exception:  # not answering yet
            time.sleep(0.2)
            continue
        console.print(f"node {status['peer_id']} running in the background (pid {proc.pid})")
        console.print(f"log: {log}", markup=False)
        console.print(f"stop it with: igor node stop --data-dir {data_dir}", markup=False)
        return
    fail(
        f"the node did not answer within {DETACH_DEADLINE_S:g} s (see {log})", ExitCode.UNREACHABLE
    )


@app.command(
    "run",
    epilog=examples(
        "igor node run --data-dir /tmp/n1 --name n1 --listen /ip4/127.0.0.1/tcp/4747 --detach",
        "igor node run -d /tmp/n2 --name n2 --listen /ip4/127.0.0.1/tcp/4748 "
        "--bootstrap /ip4/127.0.0.1/tcp/4747/p2p/12D3KooW… --log-file /tmp/n2.log",
        "igor node run --config node.toml",
    ),
)
def run_cmd(
    data: Annotated[
        Path | None, typer.Option("--data-dir", "-d", help="Data directory (store, keys).")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML config file (settings in a \\[node] table)."),
    ] = None,
    listen: Annotated[
        list[str] | None, typer.Option("--listen", help="Listen multiaddr (repeatable).")
    ] = None,
    announce: Annotated[
        list[str] | None, typer.Option("--announce", help="Advertised multiaddr (repeatable).")
    ] = None,
    bootstrap: Annotated[
        list[str] | None, typer.Option("--bootstrap", help="Bootstrap multiaddr (repeatable).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Short node name.")] = None,
    price: Annotated[
        int | None, typer.Option("--price", help="Price this node charges, µ per 1,000 fuel.")
    ] = None,
    capacity: Annotated[
        int | None, typer.Option("--capacity", help="Most agents this node hosts.")
    ] = None,
    wander: Annotated[
        str | None, typer.Option("--wander", help="Placement policy: random|cheapest|least-loaded.")
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", help="Commit a checkpoint every K ticks.")
    ] = None,
    tick_interval: Annotated[
        float | None, typer.Option("--tick-interval", help="Idle tick interval in seconds.")
    ] = None,
    retain: Annotated[
        str | None,
        typer.Option(
            "--retain",
            metavar="N|all",
            help="Checkpoints kept per agent: the last N (default 16; custody, effect records "
            "and each epoch's last checkpoint are always kept) or all (full archive).",
        ),
    ] = None,
    replay_on_arrival: Annotated[
        int | None,
        typer.Option(
            "--replay-on-arrival",
            metavar="K",
            help="Re-execute the last K ticks (0-64) of every incoming agent before taking "
            "it; a state that comes out different refuses it and is kept as evidence "
            "(default 0: off).",
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="Log format: json or console.")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option("--log-file", help="Append the node's output to this file, not the terminal."),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Run in the background (log in DATA_DIR/node.log unless --log-file); "
            "returns once the node answers. Stop it with igor node stop.",
        ),
    ] = False,
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="HOST:PORT for a Prometheus endpoint.")
    ] = None,
    test_disable_fencing: Annotated[
        bool, typer.Option("--test-disable-fencing", hidden=True)
    ] = False,
) -> None:
    """Run a node until SIGINT/SIGTERM (agents finish their tick and commit; exit 0)."""
    from igor_p2p.node.node import Node

    with typed_errors():
        config = load_node_config(
            config_file=config_file,
            flags={
                "data_dir": data,
                "listen": tuple(listen or ()),
                "announce": tuple(announce or ()),
                "bootstrap": tuple(bootstrap or ()),
                "name": name,
                "price": price,
                "capacity": capacity,
                "wander": wander,
                "checkpoint_every": checkpoint_every,
                "retain": retain,
                "replay_on_arrival": replay_on_arrival,
                "idle_interval_s": tick_interval,
                "log_format": log_format,
                "log_level": log_level,
                "metrics": metrics,
                "test_disable_fencing": test_disable_fencing or None,
            },
        )
        if detach:
            _detach(config.data_dir, log_file)
            return
        if log_file is not None:
            out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(out)
        configure_logging(config.log_format, config.log_level.upper())  # type: ignore[arg-type]

        async def main() -> None:
            node = Node(config)
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            node.stop()
                            return

                nursery.start_soon(on_signal)
                await node.run()
                nursery.cancel_scope.cancel()

        trio.run(main)


@app.command("id", epilog=examples("igor node id --data-dir /tmp/n1"))
def id_cmd(data: DataDirOption = Path("igor-data")) -> None:
    """Print this data directory's node peer ID (creating the node key if needed)."""
    with typed_errors():
        console.print(default_peer_id(DataDir(data).node_keypair()))


@app.command(
    "status",
    epilog=examples("igor node status --data-dir /tmp/n1", "igor node status -d /tmp/n1 --json"),
)
def status_cmd(data: DataDirOption = Path("igor-data"), as_json: JsonOption = False) -> None:
    """Status of the running node that owns the data directory."""
    with typed_errors(as_json):
        status = admin(data, "status")
    if as_json:
        emit_json(status)
        return
    console.print(f"node     {status['name'] or '-'}  {status['peer_id']}", markup=False)
    for addr in status["addrs"]:
        console.print(f"addr     {addr}", markup=False)
    console.print(
        f"agents   {status['agents_ticking']} ticking  {status['agents_by_state']}  "
        f"ticks {status['ticks_total']}"
    )
    console.print(
        f"peers    {status['peers_up']} up of {status['peers_known']} known, "
        f"{status['connections']} connections"
    )
    console.print(f"price    {status['price']} µ/kfuel  capacity {status['capacity']}")
    if status.get("ticking_suspended"):
        console.print(f"[red]ticking suspended[/red]: {status['ticking_suspended']}")


def _peer_table(peers: list[dict[str, Any]]) -> Table:
    table = Table("name", "peer ID", "up", "conn", "load", "price", "seen", "addr")
    for p in peers:
        table.add_row(
            p["name"] or "-",
            p["peer_id"],
            "yes" if p["up"] else "[red]DOWN[/red]",
            "yes" if p["connected"] else "no",
            str(p["load"]),
            str(p["price"]),
            f"{p['last_seen_s_ago']:.1f}s",
            p["addrs"][0] if p["addrs"] else "",
        )
    return table


@app.command(
    "peers",
    epilog=examples(
        "igor node peers --data-dir /tmp/n1",
        "igor node peers -d /tmp/n1 --wide     # full peer IDs and addresses",
        "igor node peers -d /tmp/n1 -q         # peer IDs only",
    ),
)
def peers_cmd(
    data: DataDirOption = Path("igor-data"),
    as_json: JsonOption = False,
    wide: WideOption = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """The running node's peer table."""
    wide = is_wide(wide, output)
    with typed_errors(as_json):
        peers = admin(data, "peers")
    if as_json:
        emit_json(peers)
    elif quiet:
        for p in peers:
            console.print(p["peer_id"], markup=False)
    else:
        print_table(_peer_table(peers), wide)


@app.command(
    "stop",
    epilog=examples("igor node stop --data-dir /tmp/n1", "igor node stop -d /tmp/n1 --no-wait"),
)
def stop_cmd(
    data: DataDirOption = Path("igor-data"),
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until the node has stopped.")
    ] = True,
) -> None:
    """Ask the running node to stop cleanly (agents finish their tick and commit)."""
    with typed_errors():
        admin(data, "stop")
        end = time.monotonic() + STOP_DEADLINE_S
        while wait and time.monotonic() < end and DataDir(data).admin_socket.exists():
            try:
                call_admin(DataDir(data).admin_socket, "status", None, timeout_s=1.0)
            except Exception:  # no longer answering: stopped
                break
            time.sleep(0.2)
    console.print("stopped" if wait else "stopping")


def describe_budget(value: object) -> str:
    return format_micro(value) if isinstance(value, int) else "-"
