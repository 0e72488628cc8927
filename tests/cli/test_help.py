"""Help a newcomer can use: examples everywhere, every option explained, -h, --version."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import typer.main
from typer.testing import CliRunner

from igor_p2p.cli.main import app

from .clitools import igor

ROOT = typer.main.get_command(app)


def leaf_commands() -> list[tuple[list[str], object]]:
    out = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                walk(sub, [*path, name])
        else:
            out.append((path, cmd))

    walk(ROOT, [])
    return out


LEAVES = leaf_commands()
IDS = [" ".join(p) for p, _ in LEAVES]


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=IDS)
def test_every_command_help_shows_an_example(path: list[str], command: object) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    assert f"$ igor {' '.join(path)}" in result.output, "an example runs this very command"


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=IDS)
def test_every_option_and_argument_has_help_text(path: list[str], command: object) -> None:
    params = [
        p
        for p in command.params  # type: ignore[attr-defined]
        if not getattr(p, "hidden", False) and p.name != "help"
    ]
    missing = [p.name for p in params if not (getattr(p, "help", None) or "").strip()]
    assert not missing, f"igor {' '.join(path)}: no help for {missing}"


def test_config_help_shows_the_node_table_literally() -> None:
    result = CliRunner().invoke(app, ["node", "run", "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "[node] table" in result.output


def test_version_prints_the_package_version_and_exits_0() -> None:
    run = igor("--version")
    assert run.rc == 0
    assert run.stdout.startswith(f"igor {version('igor-p2p')}")


def test_dash_h_is_help_at_every_level() -> None:
    for args in ([], ["agent"], ["testnet", "watch"]):
        result = CliRunner().invoke(app, [*args, "-h"])
        assert result.exit_code == 0, args
        assert "Usage:" in result.output


def test_shell_completion_is_offered() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in result.output
