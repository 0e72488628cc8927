"""Shared builders for the store tests."""

from __future__ import annotations

import hashlib

from igor_p2p.authority.states import AuthorityState
from igor_p2p.store import AppendEntries, AuthorityRecord, NewEntry, PutAuthority

ZERO = bytes(32)


def entry(prev: bytes, payload: bytes, epoch: int = 1, tick: int = 0) -> NewEntry:
    return NewEntry(hashlib.sha256(payload).digest(), prev, "CHECKPOINT", epoch, tick, payload)


def chain(n: int, prev: bytes = ZERO, tag: bytes = b"x") -> list[NewEntry]:
    out = []
    for i in range(n):
        e = entry(prev, tag + b":%d" % i, tick=i)
        out.append(e)
        prev = e.digest
    return out


def record(
    agent: str,
    head: NewEntry | None,
    head_seq: int,
    state: AuthorityState = AuthorityState.ACTIVE_OWNER,
    epoch: int = 1,
) -> AuthorityRecord:
    return AuthorityRecord(
        agent=agent,
        state=state,
        epoch=epoch,
        owner=b"node-a",
        head=head.digest if head is not None else None,
        head_seq=head_seq,
        wasm_hash=b"w" * 32,
        manifest_hash=b"m" * 32,
        reason="",
        peer=None,
        migration_id=None,
        confirmed=False,
        updated_ns=1,
    )


def launch(agent: str, n: int) -> tuple[list, list[NewEntry]]:
    """Ops creating an agent with ``n`` entries and an ACTIVE_OWNER record at the last one."""
    entries = chain(n, tag=agent.encode())
    return [AppendEntries(agent, entries), PutAuthority(record(agent, entries[-1], n - 1))], entries
