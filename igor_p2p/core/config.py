"""Every timeout and retry bound of the node core, in one place."""

from __future__ import annotations

from dataclasses import dataclass

RESEND_BYTES_PER_S = 8 << 20
"""A slow link's rate, for the time an OFFER may take to arrive and be verified before its
ACK can be called late (a 64 MiB state: 8 s more)."""


@dataclass(frozen=True)
class CoreConfig:
    request_timeout_s: float = 5.0
    """One request to a peer (witness or handoff counterpart), without a big payload."""
    offer_timeout_s: float = 20.0
    """An OFFER (it carries the agent's state and may wait for the target's fsync)."""
    offer_resend_s: float = 1.5
    """An OFFER whose ACK has not come this long after it was sent (plus its transfer time at
    :data:`RESEND_BYTES_PER_S`) is sent again beside it, then after twice as long, …: a lost
    ACK costs about this much, not ``offer_timeout_s``."""
    handoff_deadline_s: float = 30.0
    """A source gives up a handoff it has not started to decide by then (and ticks on)."""
    settle_after_s: float = 15.0
    """A pending target asks the witnesses itself when no COMMIT or ABORT came by then; until
    then its source resends the COMMIT (backing off, at once after a network change)."""
    claim_round_s: float = 5.0
    """One ballot of a claim waits this long for a quorum."""
    backoff_min_s: float = 0.2
    backoff_max_s: float = 30.0
    """Retries of claims and settlement back off exponentially (with jitter) up to this."""
    learn_retries: int = 3
    """Best-effort repair messages to witnesses (LEARN) are tried this many times."""
    learn_delay_s: float = 0.1
    """LEARN waits this long first, so that repair traffic never competes with a handoff's
    COMMIT or the new owner's first tick (it is not on anyone's critical path)."""
    witnesses: int = 3
    """Witnesses per agent when the network is big enough (k)."""
    witness_max_agents: int = 10_000
    """Most agents this node witnesses; a request about one more is refused BUSY."""
    witness_max_bytes: int = 1 << 30
    """Most bytes of custody (records, certificates, geneses) this node keeps as a witness;
    a request about a new agent whose custody would not fit is refused BUSY."""
    test_unsafe_resume: bool = False
    """TEST ONLY (refused outside tests, see node/config.py): a restarted owner ticks its old
    epoch again without a claim — the bug witness claims prevent; e2e negative controls use it
    to show the checker catches the second owner it makes."""

    def offer_resend_after(self, offer_bytes: int) -> float:
        """Seconds without an ACK before an OFFER of ``offer_bytes`` is sent again."""
        return self.offer_resend_s + offer_bytes / RESEND_BYTES_PER_S

    def backoff(self, attempt: int, jitter: float) -> float:
        """Seconds to wait before retry ``attempt`` (0-based); ``jitter`` in [0, 1)."""
        base = min(self.backoff_max_s, self.backoff_min_s * (2**attempt))
        return base * (0.5 + jitter / 2)
