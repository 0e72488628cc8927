"""Checking, before anything is written, that an agent module can run on this node."""

from __future__ import annotations

from igor_p2p.agent.environment import LocalEnvironment
from igor_p2p.agent.errors import SandboxError
from igor_p2p.agent.manifest import Manifest
from igor_p2p.agent.sandbox import Sandbox
from igor_p2p.errors import IgorError


class ModuleCannotRun(IgorError):
    """The agent's module does not compile, instantiate or accept its state on this node."""


def probe_module(
    sandbox: Sandbox, wasm: bytes, manifest: Manifest, state: bytes | None, budget: int
) -> None:
    """Do what starting the agent would: compile, instantiate (``_initialize``,
    ``agent_init``) and, unless ``state`` is ``None`` (a fresh genesis), ``agent_resume`` with
    ``state``. The instance is thrown away; what it prints is discarded.

    Raises :class:`ModuleCannotRun` naming the reason.
    """
    try:
        compiled = sandbox.compile(wasm)
        instance = sandbox.instantiate(compiled, manifest, LocalEnvironment(budget=budget))
        try:
            if state is not None:
                instance.resume(state)
        finally:
            instance.close()
    except SandboxError as exc:
        raise ModuleCannotRun(f"the agent cannot run on this node: {exc}") from exc
