"""The compiled-module cache is bounded by the bytes of compiled code it holds."""

from __future__ import annotations

from wasmtime import wat2wasm

from igor_p2p.agent.sandbox import Sandbox, SandboxConfig


def _module(n: int) -> bytes:
    """A distinct valid agent module per ``n``."""
    return bytes(
        wat2wasm(
            f"""(module (memory (export "memory") 1)
  (func (export "agent_init"))
  (func (export "agent_tick") (result i32) (i32.const {n}))
  (func (export "agent_checkpoint") (result i32) (i32.const 0))
  (func (export "agent_checkpoint_ptr") (result i32) (i32.const 0))
  (func (export "agent_resume") (param i32 i32)))"""
        )
    )


def test_the_cache_never_holds_more_compiled_bytes_than_its_limit() -> None:
    with Sandbox() as probe:
        one = probe.compile(_module(0)).compiled_bytes
    assert one > 0
    limit = 3 * one + one // 2
    with Sandbox(SandboxConfig(module_cache_bytes=limit)) as sandbox:
        for n in range(20):
            sandbox.compile(_module(n))
            assert sandbox.cache_bytes <= limit
        hits = sandbox.cache_hits
        sandbox.compile(_module(19))  # the most recent one stayed
        assert sandbox.cache_hits == hits + 1
        sandbox.compile(_module(0))  # the oldest was evicted: compiled again
        assert sandbox.cache_hits == hits + 1


def test_a_module_larger_than_the_cache_is_compiled_but_not_kept() -> None:
    with Sandbox(SandboxConfig(module_cache_bytes=1)) as sandbox:
        sandbox.compile(_module(1))
        assert sandbox.cache_bytes == 0
