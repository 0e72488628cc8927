"""Builders for inline ABI test agents and loaders for the shipped examples."""

from __future__ import annotations

from wasmtime import wat2wasm

from igor_p2p.agent import (
    AgentInstance,
    LocalEnvironment,
    Sandbox,
    load_agent_manifest,
    load_agent_source,
    parse_manifest,
)

FUEL = 10_000_000


def agent_wat(
    imports: str = "",
    tick: str = "(i32.const 0)",
    extra: str = "",
    init: str = "",
    resume: str = "",
    checkpoint: str = "(i32.const 0)",
    checkpoint_ptr: str = "(i32.const 0)",
    malloc: str | None = "(i32.const 1024)",
    tick_result: str = "(result i32)",
    memory: str = '(memory (export "memory") 1)',
) -> bytes:
    """A minimal ABI-complete agent with the given pieces swapped in."""
    malloc_fn = f'(func (export "malloc") (param $n i32) (result i32) {malloc})' if malloc else ""
    text = f"""
    (module
      {imports}
      {memory}
      {extra}
      (func (export "agent_init") {init})
      (func (export "agent_tick") {tick_result} {tick})
      (func (export "agent_checkpoint") (result i32) {checkpoint})
      (func (export "agent_checkpoint_ptr") (result i32) {checkpoint_ptr})
      (func (export "agent_resume") (param $ptr i32) (param $len i32) {resume})
      {malloc_fn}
    )"""
    return bytes(wat2wasm(text))


def manifest_with(*capabilities: str, extra: str = "") -> bytes:
    caps = ",".join(f'"{c}": {{"version": 1}}' for c in capabilities)
    return f'{{"capabilities": {{{caps}}}{extra}}}'.encode()


def load_example(sandbox: Sandbox, name: str, env: LocalEnvironment | None = None) -> AgentInstance:
    module = sandbox.compile(load_agent_source(name))
    return sandbox.instantiate(module, load_agent_manifest(name), env or LocalEnvironment())


def load_wat(
    sandbox: Sandbox,
    wasm: bytes,
    manifest: bytes = b"",
    env: LocalEnvironment | None = None,
) -> AgentInstance:
    return sandbox.instantiate(
        sandbox.compile(wasm), parse_manifest(manifest), env or LocalEnvironment()
    )
