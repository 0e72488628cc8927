"""Shared builders for the store tests: real, signed lineages (see tests/core/builders.py)."""

from __future__ import annotations

from core.builders import AgentLife

from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.states import AuthorityState
from igor_p2p.store import AppendEntries, AppendTicks, PutRecord, Store

OWNER = AuthorityState.ACTIVE_OWNER


def owner(epoch: int = 1, version: int = 1) -> AuthorityRecord:
    return AuthorityRecord(state=OWNER, epoch=epoch, version=version)


def launch(store: Store, name: str = "agent", ticks: int = 3) -> AgentLife:
    """An agent launched on ``store``: its genesis and ``ticks`` tick checkpoints committed as
    the owner of epoch 1."""
    life = AgentLife(name)
    life.genesis()
    store.apply([PutRecord(life.agent, owner()), AppendEntries(life.agent, life.blobs())])
    if ticks:
        store.apply([AppendTicks.of(life.agent, 1, life.ticks(ticks))])
    return life
