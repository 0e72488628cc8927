"""Generate docs/cli.md from the typer app: ``python -m igor_p2p.cli.docgen > docs/cli.md``.

A test compares the committed page with this output, so the CLI reference cannot drift.
"""

from __future__ import annotations

from typing import Any

import typer
import typer.main

from igor_p2p.cli.main import app


def _walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    out = [(path, command)]
    if hasattr(command, "commands"):
        for name in sorted(command.commands):
            out += _walk(command.commands[name], [*path, name])
    return out


def _option_line(param: Any) -> str:
    if param.param_type_name == "argument":
        name = (param.metavar or param.name or "").upper()
        help_text = (getattr(param, "help", None) or "").strip()
        return f"- `{name}` (argument){': ' + help_text if help_text else ''}"
    names = ", ".join(f"`{n}`" for n in [*param.opts, *getattr(param, "secondary_opts", [])])
    help_text = (param.help or "").strip()
    default = ""
    if getattr(param, "show_default", True) is not False and param.default not in (
        None,
        (),
        False,
        [],
        "",
    ):
        default = f" (default: `{param.default}`)"
    text = f": {help_text}" if help_text else ""
    return f"- {names}{text}{default}"


def render() -> str:
    root = typer.main.get_command(app)
    lines = [
        "# Command-line reference",
        "",
        "Generated from the code by `python -m igor_p2p.cli.docgen`; do not edit by hand.",
        "",
    ]
    for path, command in _walk(root, ["igor"]):
        if len(path) == 1:
            continue
        title = " ".join(path)
        lines += [f"## `{title}`", ""]
        if command.help:
            lines += [command.help.strip().split("\n\n")[0].replace("\n", " "), ""]
        if hasattr(command, "commands"):
            continue
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        params = [p for p in params if p.name != "help"]
        if params:
            lines += [_option_line(p) for p in params]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
