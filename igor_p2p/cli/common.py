"""Shared CLI plumbing: options, output, exit codes, and turning typed errors into words.

Every command wraps its work in :func:`typed_errors`: a typed error becomes one line of words on
stderr (never a Python class name), plus a JSON object on stdout under ``--json``, and the
process exits with one of the documented :class:`ExitCode` values.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sqlite3
import string
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.runtime.datadir import DataDir

console = Console(highlight=False, emoji=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)

DEFAULT_DATA_DIR = "igor-data"
DEBUG_ENV = "IGOR_DEBUG"
"""When set (``1``), error lines also name the exception class: for tests and bug reports."""


class ExitCode(enum.IntEnum):
    """The exit status of every ``igor`` command (the table in docs/cli.md is made from this)."""

    OK = 0
    """The command did what was asked."""
    FAILED = 1
    """The command ran and the answer is no: violations found, a lineage INVALID, a migration
    that did not transfer the agent."""
    USAGE = 2
    """Bad usage or bad input: an unknown option, a value out of range, not a DID, a malformed
    file."""
    SAFETY_HALT = 3
    """An agent stopped for safety: HALTED, RECOVERY_REQUIRED, or a handoff left unresolved."""
    NOT_FOUND = 4
    """No such agent, node, example, scenario, file or data directory."""
    UNREACHABLE = 5
    """The node (or a peer it needed) did not answer: not running, paused, timed out."""
    REFUSED = 6
    """A node or peer refused: not the owner, fenced off, the target rejected the offer."""
    INTERRUPTED = 130
    """Stopped with Ctrl-C."""


EXIT_CODE_WORDS: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "failed",
    ExitCode.USAGE: "bad usage",
    ExitCode.SAFETY_HALT: "safety halt",
    ExitCode.NOT_FOUND: "not found",
    ExitCode.UNREACHABLE: "node unreachable",
    ExitCode.REFUSED: "refused",
    ExitCode.INTERRUPTED: "interrupted",
}

# Exception class names (ours, the node's, and the few foreign ones that reach the CLI) → exit
# code. Matched along the class's MRO, so a subclass inherits its parent's code; an admin error
# is matched by the node-side class name it carries.
_CODES: dict[str, ExitCode] = {
    # not found
    "UnknownAgent": ExitCode.NOT_FOUND,
    "AgentNotFound": ExitCode.NOT_FOUND,
    "AgentSourceNotFound": ExitCode.NOT_FOUND,
    "ScenarioNotFound": ExitCode.NOT_FOUND,
    "MissingDataDir": ExitCode.NOT_FOUND,
    "UnknownTestnetNode": ExitCode.NOT_FOUND,
    "NoTestnet": ExitCode.NOT_FOUND,
    "FileNotFoundError": ExitCode.NOT_FOUND,
    "NotADirectoryError": ExitCode.NOT_FOUND,
    # unreachable
    "AdminUnavailable": ExitCode.UNREACHABLE,
    "AdminTimeout": ExitCode.UNREACHABLE,
    "AdminConnectionLost": ExitCode.UNREACHABLE,
    "RequestTimedOut": ExitCode.UNREACHABLE,
    "NodeNotReady": ExitCode.UNREACHABLE,
    "DialFailed": ExitCode.UNREACHABLE,
    "SwarmException": ExitCode.UNREACHABLE,
    "ConnectionError": ExitCode.UNREACHABLE,
    "TestnetTimeout": ExitCode.UNREACHABLE,
    "TooSlowError": ExitCode.UNREACHABLE,
    "TimeoutError": ExitCode.UNREACHABLE,
    # refused
    "NotOwner": ExitCode.REFUSED,
    "FencedOff": ExitCode.REFUSED,
    "LocationConflict": ExitCode.REFUSED,
    "TooManyClients": ExitCode.REFUSED,
    "MigrationRefused": ExitCode.REFUSED,
    # safety halt
    "TableInconsistency": ExitCode.SAFETY_HALT,
    "LineageRejected": ExitCode.SAFETY_HALT,
    "SafetyHalt": ExitCode.SAFETY_HALT,
    # bad usage / bad input
    "InvalidInput": ExitCode.USAGE,
    "BadParams": ExitCode.USAGE,
    "ConfigError": ExitCode.USAGE,
    "ForceNotConfirmed": ExitCode.USAGE,
    "DataDirBusy": ExitCode.USAGE,
    "ImportRefused": ExitCode.USAGE,
    "NemesisError": ExitCode.USAGE,
    "ScenarioError": ExitCode.USAGE,
    "UnknownMethod": ExitCode.USAGE,
    "IsADirectoryError": ExitCode.USAGE,
    "PermissionError": ExitCode.USAGE,
}

# Words for foreign exception names that show up inside messages (py-libp2p, trio, OS).
_FOREIGN_WORDS = {
    "SwarmException": "could not connect",
    "StreamReset": "the stream was reset",
    "StreamEOF": "the stream ended early",
    "TooSlowError": "timed out",
    "TimeoutError": "timed out",
    "Cancelled": "cancelled",
    "ConnectionRefusedError": "connection refused",
    "ConnectionResetError": "connection reset",
    "BrokenResourceError": "connection lost",
    "ClosedResourceError": "connection closed",
    "OSError": "system error",
}
_CLASS_PREFIX = re.compile(r"\b([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)(?:: |\b)")


def humanize(text: str) -> str:
    """``text`` without exception class names: a ``ClassName: `` prefix is dropped and a known
    foreign class name alone becomes words (``owner unreachable: SwarmException`` →
    ``owner unreachable: could not connect``)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _FOREIGN_WORDS:
            return _FOREIGN_WORDS[name] + (" " if match.group(0).endswith(" ") else "")
        looks_like_class = (
            name.endswith(
                ("Error", "Exception", "Failed", "Timeout", "Unavailable", "Lost", "Refused")
            )
            or name in _CODES
        )
        if looks_like_class and match.group(0).endswith(": "):
            return ""
        if looks_like_class:
            return re.sub(r"(?<!^)([A-Z])", r" \1", name).lower()
        return match.group(0)

    out = _CLASS_PREFIX.sub(one, text).strip()
    return out or text


def _names(exc: BaseException) -> list[str]:
    names = []
    error_type = getattr(exc, "error_type", None)
    if isinstance(error_type, str):
        names.append(error_type)
    names += [cls.__name__ for cls in type(exc).__mro__]
    return names


def exit_code_of(exc: BaseException) -> ExitCode:
    """The documented exit code for a typed error (ours, the node's, or the OS's)."""
    explicit = getattr(exc, "exit_code", None)
    if isinstance(explicit, ExitCode):
        return explicit
    for name in _names(exc):
        if name in _CODES:
            return _CODES[name]
    if isinstance(exc, InvalidInput):
        return ExitCode.USAGE
    return ExitCode.FAILED


def words_of(exc: BaseException) -> str:
    """What went wrong, in words: the message without class names, the admin wrapper removed."""
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        message = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        message = f"{exc.strerror.lower()}{where}"
    if isinstance(exc, sqlite3.Error):
        message = f"the store could not be read ({message})"
    return humanize(message) or "failed"


class CliError(IgorError):
    """A command could not do what was asked; ``exit_code`` says which kind of failure."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class MissingDataDir(CliError):
    """The data directory a command needs does not exist."""

    def __init__(self, path: Path, hint: str = "") -> None:
        super().__init__(
            f"missing data dir: {path} does not exist{hint}", exit_code=ExitCode.NOT_FOUND
        )


_json_errors = False


def error_out(message: str, code: ExitCode, *, type_name: str = "", hint: str = "") -> NoReturn:
    """Print the error (words on stderr; a JSON object on stdout under ``--json``) and exit."""
    if _json_errors:
        body: dict[str, Any] = {
            "message": message,
            "code": code.name.lower(),
            "exit_code": int(code),
        }
        if type_name:
            body["type"] = type_name
        if hint:
            body["hint"] = hint
        emit_json({"error": body})
    prefix = f"{type_name}: " if type_name and os.environ.get(DEBUG_ENV) else ""
    err_console.print(f"[red]error:[/red] {prefix}{message}", markup=True, highlight=False)
    if hint:
        err_console.print(f"hint: {hint}", markup=False)
    raise typer.Exit(int(code))


def fail(message: str, code: int | ExitCode = ExitCode.USAGE) -> NoReturn:
    """Stop the command with ``message`` (words) and the exit ``code``."""
    error_out(message, ExitCode(code))


def _render(exc: BaseException) -> NoReturn:
    if isinstance(exc, BrokenPipeError):
        raise typer.Exit(0) from None
    name = getattr(exc, "error_type", None) or type(exc).__name__
    error_out(words_of(exc), exit_code_of(exc), type_name="" if isinstance(exc, CliError) else name)


@contextmanager
def typed_errors(as_json: bool = False) -> Iterator[None]:
    """Print a typed error as one clear line of words and exit with its code (no traceback)."""
    global _json_errors
    _json_errors = as_json
    try:
        yield
    except (IgorError, OSError, sqlite3.Error) as exc:
        _render(exc)
    except BaseExceptionGroup as group:
        leaf = first_leaf(group, (IgorError, OSError, sqlite3.Error))
        if leaf is None:
            raise
        _render(leaf)


def first_leaf(
    group: BaseExceptionGroup[BaseException], types: tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first exception of ``types`` inside a (nested) exception group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = first_leaf(exc, types)
            if found is not None:
                return found
        elif isinstance(exc, types):
            return exc
    return None


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), default=_default) + "\n")
    sys.stdout.flush()


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "value"):
        return value.value
    return str(value)


# ---------------------------------------------------------------- options

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        "-d",
        envvar="IGOR_DATA_DIR",
        help="The node's data directory (store, keys, history, admin socket).",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Print machine-readable JSON (errors too: an object with an error key)."
    ),
]
WideOption = Annotated[
    bool,
    typer.Option("--wide", "-w", help="Never cut IDs or addresses: print every column in full."),
]
OutputOption = Annotated[
    str | None,
    typer.Option("--output", "-o", help="Output format: wide (same as --wide) or table."),
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print IDs only, one per line (for scripts).")
]


def is_wide(wide: bool, output: str | None) -> bool:
    if output not in (None, "wide", "table"):
        fail(f"unknown output format {output!r} (known: wide, table)")
    return wide or output == "wide"


WIDE_COLUMNS = 10_000
"""The width a ``--wide`` table is laid out in: its natural width, nothing cut."""


def print_table(table: Any, wide: bool) -> None:
    """A rich table; ``wide`` prints it at its natural width so no cell is cut."""
    if wide:
        table.expand = False
        for column in table.columns:
            column.no_wrap = True
            column.overflow = "fold"
        Console(highlight=False, emoji=False, width=WIDE_COLUMNS).print(table)
    else:
        console.print(table)


def examples(*lines: str) -> str:
    """An ``Examples`` epilog for a command's help (one command per line)."""
    body = "\n".join(f"  $ {line}" for line in lines)
    return f"Examples:\n\n{body}"


def data_dir(path: Path) -> DataDir:
    return DataDir(Path(path))


def require_data_dir(path: Path) -> DataDir:
    """The data directory, which must exist (said plainly when it does not)."""
    if not Path(path).is_dir():
        raise MissingDataDir(Path(path), " (give the node's --data-dir, or set IGOR_DATA_DIR)")
    return DataDir(Path(path))


# ---------------------------------------------------------------- agent IDs

DID_PREFIX = "did:key:"
_BASE58 = set(string.ascii_letters + string.digits) - set("0OIl")


def looks_like_did_part(given: str) -> bool:
    """A full ``did:key:z…`` or a piece of one (base58 characters only)."""
    body = given.removeprefix(DID_PREFIX)
    return bool(body) and all(c in _BASE58 for c in body)


def resolve_agent_id(candidates: list[str], given: str) -> str:
    """A full did:key, or a unique suffix/prefix of one of ``candidates``."""
    if given in candidates:
        return given
    if not looks_like_did_part(given):
        fail(f"{given!r} is not a DID (did:key:z…) nor the end of one", ExitCode.USAGE)
    matches = [
        c for c in candidates if c.endswith(given) or c.removeprefix(DID_PREFIX).startswith(given)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        if given.startswith(DID_PREFIX + "z"):
            return given
        fail(
            f"no agent here matches {given!r} (a suffix works for agents this node knows; "
            "give the full DID otherwise)",
            ExitCode.NOT_FOUND,
        )
    fail(f"{given!r} is ambiguous: {', '.join(matches)}", ExitCode.USAGE)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


Printer = Callable[[str, dict[str, object]], None]
