"""``igor node …``: run a node, and ask a running one for its status and peers."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import trio
import typer
from rich.table import Table

from igor_p2p.cli.common import DataDirOption, JsonOption, console, emit_json, typed_errors
from igor_p2p.logs import configure_logging
from igor_p2p.node.admin_client import call_admin
from igor_p2p.node.config import load_node_config
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.metering import format_micro
from igor_p2p.runtime.services import default_peer_id

app = typer.Typer(no_args_is_help=True, help="Run a node and query a running one.")

ListOption = Annotated[list[str] | None, typer.Option(help="Repeatable.")]


def admin(data: Path, method: str, timeout_s: float = 30.0, **params: Any) -> Any:
    """One admin call to the node that owns ``data`` (its admin.sock)."""
    return call_admin(DataDir(data).admin_socket, method, params or None, timeout_s=timeout_s)


@app.command("run")
def run_cmd(
    data: Annotated[
        Path | None, typer.Option("--data-dir", "-d", help="Data directory (store, keys).")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML config file ([node] table).")
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
    price: Annotated[int | None, typer.Option("--price", help="µ per 1,000 fuel.")] = None,
    capacity: Annotated[int | None, typer.Option("--capacity", help="Most agents.")] = None,
    wander: Annotated[
        str | None, typer.Option("--wander", help="Placement policy: random|cheapest|least-loaded.")
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every")] = None,
    tick_interval: Annotated[
        float | None, typer.Option("--tick-interval", help="Idle tick interval in seconds.")
    ] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="json or console.")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
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
                "idle_interval_s": tick_interval,
                "log_format": log_format,
                "log_level": log_level,
                "metrics": metrics,
                "test_disable_fencing": test_disable_fencing or None,
            },
        )
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


@app.command("id")
def id_cmd(data: DataDirOption = Path("igor-data")) -> None:
    """Print this data directory's node peer ID (creating the node key if needed)."""
    with typed_errors():
        console.print(default_peer_id(DataDir(data).node_keypair()))


@app.command("status")
def status_cmd(data: DataDirOption = Path("igor-data"), as_json: JsonOption = False) -> None:
    """Status of the running node that owns the data directory."""
    with typed_errors():
        status = admin(data, "status")
    if as_json:
        emit_json(status)
        return
    console.print(f"node     {status['name'] or '-'}  {status['peer_id']}")
    for addr in status["addrs"]:
        console.print(f"addr     {addr}")
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


@app.command("peers")
def peers_cmd(data: DataDirOption = Path("igor-data"), as_json: JsonOption = False) -> None:
    """The running node's peer table."""
    with typed_errors():
        peers = admin(data, "peers")
    if as_json:
        emit_json(peers)
    else:
        console.print(_peer_table(peers))


@app.command("stop")
def stop_cmd(data: DataDirOption = Path("igor-data")) -> None:
    """Ask the running node to stop cleanly."""
    with typed_errors():
        admin(data, "stop")
    console.print("stopping")


def describe_budget(value: object) -> str:
    return format_micro(value) if isinstance(value, int) else "-"
