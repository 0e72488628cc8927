"""Tiny builders for synthetic history events used by the testnet tests."""

from __future__ import annotations

from testnet.history import (
    GENESIS_PREV,
    AuthorityEvent,
    CommitEvent,
    FaultEvent,
    HandoffEvent,
    TickEvent,
)


def _c(node: str, t: int) -> dict[str, object]:
    return {"node": node, "peer_id": f"peer-{node}", "mono_ns": t, "wall_ns": t}


def tick(node: str, start: int, end: int, *, agent="a1", epoch=1, n=1, cost=10) -> TickEvent:
    return TickEvent(
        **_c(node, end),
        agent=agent,
        epoch=epoch,
        tick=n,
        start_ns=start,
        end_ns=end,
        fuel=cost,
        cost=cost,
    )


def commit(
    node: str,
    t: int,
    digest: str,
    prev: str = GENESIS_PREV,
    *,
    agent="a1",
    epoch=1,
    n=0,
    kind="TICK",
    budget=1000,
) -> CommitEvent:
    return CommitEvent(
        **_c(node, t),
        agent=agent,
        epoch=epoch,
        tick=n,
        kind=kind,
        digest=digest,
        prev=prev,
        budget=budget,
    )


def auth(
    node: str, t: int, to: str, *, agent="a1", epoch=1, reason=None, recovery=None
) -> AuthorityEvent:
    return AuthorityEvent(
        **_c(node, t),
        agent=agent,
        epoch=epoch,
        from_state=None,
        to_state=to,
        reason=reason,
        recovery=recovery,
    )


def handoff(node: str, t: int, step: str, *, agent="a1", epoch=1, mig="m1", peer=None):
    return HandoffEvent(
        **_c(node, t),
        agent=agent,
        epoch=epoch,
        migration_id=mig,
        step=step,
        peer=peer,
        detail=None,
    )


def fault(node: str, t: int, name: str, detail=None) -> FaultEvent:
    return FaultEvent(**_c(node, t), fault=name, detail=detail)


def dg(i: int) -> str:
    """A fake 32-byte digest, hex."""
    return f"{i:064x}"
