"""Shared CLI plumbing: options, output, and turning typed errors into exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from igor_p2p.errors import IgorError
from igor_p2p.runtime.datadir import DataDir

console = Console(highlight=False, emoji=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)

DEFAULT_DATA_DIR = "igor-data"

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        "-d",
        envvar="IGOR_DATA_DIR",
        help="The node's data directory (store, keys, history, admin socket).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def data_dir(path: Path) -> DataDir:
    return DataDir(Path(path))


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@contextmanager
def typed_errors() -> Iterator[None]:
    """Print a typed error as one clear line and exit 2 (never a traceback)."""
    try:
        yield
    except (IgorError, OSError) as exc:
        fail(f"{type(exc).__name__}: {exc}")
    except sqlite3.Error as exc:
        fail(f"the store could not be read ({type(exc).__name__}: {exc})")
    except BaseExceptionGroup as group:
        leaf = first_leaf(group, (IgorError, OSError))
        if leaf is None:
            raise
        if isinstance(leaf, BrokenPipeError):
            raise typer.Exit(0) from None
        fail(f"{type(leaf).__name__}: {leaf}")


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


def resolve_agent_id(candidates: list[str], given: str) -> str:
    """A full did:key, or a unique suffix/prefix of one of ``candidates``."""
    if given in candidates:
        return given
    matches = [
        c for c in candidates if c.endswith(given) or c.removeprefix("did:key:").startswith(given)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        fail(f"no agent matches {given!r}")
    fail(f"{given!r} is ambiguous: {', '.join(matches)}")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


Printer = Callable[[str, dict[str, object]], None]
