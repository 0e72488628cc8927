"""The ``igor`` command."""

from __future__ import annotations

import typer

from igor_p2p.cli import agent, checkpoint, node, testnet

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Igor-P2P: WebAssembly agents that checkpoint durably and wander between peers "
    "without ever running in two places at once.",
)
app.add_typer(agent.app, name="agent")
app.add_typer(checkpoint.app, name="checkpoint")
app.add_typer(node.app, name="node")
app.add_typer(testnet.app, name="testnet")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
