"""The ``igor`` command."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from igor_p2p.cli import agent, checkpoint, node, testnet
from igor_p2p.cli.common import examples

CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,
    context_settings=CONTEXT,
    help="Igor-P2P: WebAssembly agents that checkpoint durably and wander between peers "
    "without ever running in two places at once.",
    epilog=examples(
        "igor agent run counter --data-dir /tmp/a --ticks 20 --interval 0",
        "igor testnet up -n 5",
        "igor --install-completion   # tab completion for your shell",
    ),
)
app.add_typer(agent.app, name="agent")
app.add_typer(checkpoint.app, name="checkpoint")
app.add_typer(node.app, name="node")
app.add_typer(testnet.app, name="testnet")


def package_version() -> str:
    try:
        return version("igor-p2p")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        from igor_p2p.node.peers import PROTOCOL_VERSION

        typer.echo(f"igor {package_version()} (protocol {PROTOCOL_VERSION})")
        raise typer.Exit(0)


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            is_eager=True,
            callback=_show_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Igor-P2P: WebAssembly agents that checkpoint durably and wander between peers without
    ever running in two places at once."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
