"""Write-ahead ordering of authority actions, and their translation into wire messages.

An :class:`AuthorityPort` wraps one :class:`AuthorityMachine`: ``handle(event)`` returns the
actions that may run now and holds back every action that follows a ``PersistAuthority``
until ``durable(version)`` reports that write done. Writes themselves are never held (the
store applies them in order).
"""

from __future__ import annotations

from igor_p2p.authority.table import (
    Action,
    AuthorityMachine,
    Event,
    PersistAuthority,
    SendAbort,
    SendAck,
    SendCommit,
    SendConfirm,
    SendReject,
)
from igor_p2p.handoff.messages import Abort, Ack, Commit, Confirm, Message, Reject

ZERO_DIGEST = bytes(32)


class AuthorityPort:
    """A machine plus the queue that enforces write-ahead on its actions."""

    def __init__(self, machine: AuthorityMachine) -> None:
        self.machine = machine
        self._barrier: int | None = None
        self._held: list[tuple[int, Action]] = []

    @property
    def waiting_for(self) -> int | None:
        """The version of the newest write not yet durable, if any."""
        return self._barrier

    def handle(self, event: Event) -> list[Action]:
        return self.push(self.machine.handle(event))

    def push(self, actions: list[Action]) -> list[Action]:
        runnable: list[Action] = []
        for action in actions:
            if isinstance(action, PersistAuthority):
                runnable.append(action)
                self._barrier = action.record.version
            elif self._barrier is not None:
                self._held.append((self._barrier, action))
            else:
                runnable.append(action)
        return runnable

    def durable(self, version: int) -> list[Action]:
        self.machine.mark_durable(version)
        released = [action for tag, action in self._held if tag <= version]
        self._held = [(tag, action) for tag, action in self._held if tag > version]
        if self._barrier is not None and version >= self._barrier:
            self._barrier = None
        return released


def message_for(
    action: Action, *, agent: str, sender: str, machine: AuthorityMachine
) -> Message | None:
    """The wire message for an authority send action (None for SendOffer and non-sends)."""
    if isinstance(action, SendAck):
        ctx = machine.migration
        digest = ctx.head_digest if ctx and ctx.migration_id == action.migration_id else None
        return Ack(sender, agent, action.epoch, action.migration_id, digest or ZERO_DIGEST)
    if isinstance(action, SendReject):
        return Reject(sender, agent, action.migration_id, action.code)
    if isinstance(action, SendCommit):
        return Commit(sender, agent, action.migration_id, action.transfer_record)
    if isinstance(action, SendConfirm):
        return Confirm(sender, agent, action.migration_id, action.new_epoch)
    if isinstance(action, SendAbort):
        return Abort(sender, agent, action.migration_id)
    return None
