"""Loading agent code and its manifest sidecar from a path or a shipped example name."""

from __future__ import annotations

from pathlib import Path

from wasmtime import WasmtimeError, wat2wasm

from igor_p2p.agent.errors import AgentSourceNotFound, InvalidModule, ModuleTooLarge
from igor_p2p.agent.examples import example_path, list_examples
from igor_p2p.agent.manifest import MAX_MANIFEST_BYTES, Manifest, parse_manifest

DEFAULT_MAX_SOURCE_BYTES = 32 * 1024 * 1024


def _read_capped(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModuleTooLarge(len(data), limit)
    return data


def _wat_to_wasm(text: bytes) -> bytes:
    try:
        return bytes(wat2wasm(text.decode("utf-8")))
    except (WasmtimeError, UnicodeDecodeError) as exc:
        raise InvalidModule(f"invalid WAT: {exc}") from exc


def resolve_agent_path(path_or_name: str | Path) -> Path:
    """A ``.wasm``/``.wat`` file path, or the ``.wat`` of a shipped example."""
    path = Path(path_or_name)
    if path.suffix in (".wasm", ".wat") and path.is_file():
        return path
    if isinstance(path_or_name, str) and path_or_name in list_examples():
        return example_path(path_or_name)
    raise AgentSourceNotFound(f"no .wasm/.wat file or shipped example named {str(path_or_name)!r}")


def load_agent_source(path_or_name: str | Path, max_bytes: int = DEFAULT_MAX_SOURCE_BYTES) -> bytes:
    """Binary wasm from a ``.wasm`` file, a ``.wat`` file, or a shipped example name."""
    path = resolve_agent_path(path_or_name)
    data = _read_capped(path, max_bytes)
    return _wat_to_wasm(data) if path.suffix == ".wat" else data


def load_agent_manifest(path_or_name: str | Path) -> Manifest:
    """The sidecar ``<path minus .wasm/.wat>.manifest.json``; absent = the empty manifest."""
    path = resolve_agent_path(path_or_name)
    sidecar = path.with_suffix(".manifest.json")
    if not sidecar.is_file():
        return parse_manifest(b"")
    with sidecar.open("rb") as f:
        return parse_manifest(f.read(MAX_MANIFEST_BYTES + 1))
