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


def _plain(text: str) -> str:
    """Help text as Markdown: rich markup escapes (``\\[``) undone."""
    return text.replace("\\[", "[")


def _option_line(param: Any) -> str:
    if param.param_type_name == "argument":
        name = (param.metavar or param.name or "").upper()
        help_text = _plain((getattr(param, "help", None) or "").strip())
        return f"- `{name}` (argument){': ' + help_text if help_text else ''}"
    names = ", ".join(f"`{n}`" for n in [*param.opts, *getattr(param, "secondary_opts", [])])
    help_text = _plain((param.help or "").strip())
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


def _exit_codes() -> list[str]:
    from igor_p2p.cli.common import EXIT_CODE_WORDS, ExitCode

    lines = [
        "## Exit codes",
        "",
        "Every command exits with one of these (`igor_p2p.cli.common.ExitCode`). Errors are",
        "one line of words on stderr; under `--json` they are also an object on stdout:",
        '`{"error": {"message": …, "code": "not_found", "exit_code": 4, "type": …}}`.',
        "",
        "| code | name | meaning |",
        "|---|---|---|",
    ]
    for code in ExitCode:
        doc = " ".join((_member_doc(code) or EXIT_CODE_WORDS[code]).split())
        lines.append(f"| {int(code)} | {EXIT_CODE_WORDS[code]} | {doc} |")
    return [*lines, ""]


def _member_doc(code: Any) -> str:
    import ast
    import inspect

    from igor_p2p.cli import common

    tree = ast.parse(inspect.getsource(common.ExitCode))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for i, node in enumerate(body):
        if (
            isinstance(node, ast.Assign)
            and getattr(node.targets[0], "id", None) == code.name
            and i + 1 < len(body)
            and isinstance(body[i + 1], ast.Expr)
        ):
            return str(body[i + 1].value.value)
    return ""


def _status_schema() -> list[str]:
    from igor_p2p.cli.agent import STATUS_SCHEMA

    lines = [
        "## `igor agent status --json`",
        "",
        "One object with exactly these keys, whether the answer came from the node's own store",
        "or from the owner (found through the DHT or the agent's successor, its custody verified):",
        "",
        "| key | value |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {v} |" for k, v in STATUS_SCHEMA.items()]
    return [*lines, ""]


def render() -> str:
    root = typer.main.get_command(app)
    lines = [
        "# Command-line reference",
        "",
        "Generated from the code by `python -m igor_p2p.cli.docgen`; do not edit by hand.",
        "",
        "`igor --version` prints the version; `-h` is `--help` everywhere; "
        "`igor --install-completion` installs tab completion for your shell.",
        "",
        *_exit_codes(),
        *_status_schema(),
    ]
    for path, command in _walk(root, ["igor"]):
        if len(path) == 1:
            continue
        title = " ".join(path)
        lines += [f"## `{title}`", ""]
        if command.help:
            lines += [_plain(command.help.strip().split("\n\n")[0].replace("\n", " ")), ""]
        if hasattr(command, "commands"):
            continue
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        params = [p for p in params if p.name != "help"]
        if params:
            lines += [_option_line(p) for p in params]
            lines.append("")
        if command.epilog:
            body = command.epilog.split("\n\n", 1)[-1]
            shown = [line.strip().removeprefix("$ ") for line in body.splitlines()]
            lines += ["```", *shown, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
