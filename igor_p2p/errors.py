"""The root of Igor-P2P's typed errors.

Every error a peer, an agent, a file or an operator can cause is a subclass of
:class:`IgorError`. Callers match on classes, never on message text.
"""


class IgorError(Exception):
    """Base class of every error Igor-P2P raises on purpose."""


class InvalidInput(IgorError):
    """Data from outside the process (a peer, a file, an agent) is malformed or hostile."""
