"""The authority states a node can hold an agent in (OA-2)."""

from __future__ import annotations

import enum


class AuthorityState(enum.StrEnum):
    """What one node believes about its own authority over one agent."""

    ACTIVE_OWNER = "ACTIVE_OWNER"
    """This node owns the current epoch and is the only node that may tick."""
    HANDOFF_INITIATED = "HANDOFF_INITIATED"
    """Source side: ticking stopped, a handoff is in flight, the decision is not yet taken."""
    HANDOFF_PENDING = "HANDOFF_PENDING"
    """Target side: validated and durably prepared, waiting for the source's commit."""
    RETIRED = "RETIRED"
    """Authority was durably given away (or never held); this node never ticks the agent."""
    RECOVERY_REQUIRED = "RECOVERY_REQUIRED"
    """Ambiguity or damage was detected; halted until a resolution or an operator acts."""
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    """Terminal: the budget reached zero; the final checkpoint is loadable."""
    HALTED = "HALTED"
    """Halted on request (or by a failing tick): not ticking; an operator may resume it, which
    claims a new epoch."""
    EXPORTED = "EXPORTED"
    """Terminal: the agent left for Go Igor (a signed export record ends its lineage here)."""

    @property
    def may_tick(self) -> bool:
        return self is AuthorityState.ACTIVE_OWNER
