"""Typed errors of the network layer.

Every failure a peer or the network can cause in :mod:`igor_p2p.net` ends in one of these
classes. Errors caused by bytes a peer sent us also subclass :class:`InvalidInput`.
"""

from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.net.peerid import InvalidPeerId

__all__ = ["InvalidPeerId"]  # re-exported: its home is the libp2p-free igor_p2p.net.peerid


class NetError(IgorError):
    """Base class of every error raised by :mod:`igor_p2p.net`."""


class InvalidAddress(NetError, InvalidInput):
    """A multiaddr is malformed or lacks the ``/p2p/<peer id>`` part needed to dial it."""


class DialFailed(NetError):
    """A dial did not produce a connection (refused, unreachable, handshake failed, timed out)."""


class InvalidFaultSpec(NetError, InvalidInput):
    """A fault-injection setting is out of range (probability outside [0, 1], negative delay)."""


class FrameError(NetError):
    """Base class of framing errors."""


class FrameTooLarge(FrameError, InvalidInput):
    """A frame announces (or a writer tried to send) more bytes than the allowed maximum."""


class TruncatedFrame(FrameError, InvalidInput):
    """The stream ended (EOF or reset) in the middle of a frame.

    G4: a remote reset reads as EOF on py-libp2p, so a reader can never take EOF as success;
    every protocol ends with an explicit ack.
    """


class ConnectionClosedCleanly(FrameError):
    """EOF at a frame boundary: the peer closed (or reset, see G4) between two frames."""


class StreamBroken(FrameError):
    """The stream failed at a frame boundary (reset, closed, transport error), or a write failed."""


class FrameTimeout(FrameError):
    """Reading or writing a frame did not complete within its timeout."""


class MalformedMessage(FrameError, InvalidInput):
    """A frame is not a valid message: bad msgpack, not a map, no str ``type``, bad types."""


class GossipError(NetError):
    """Base class of gossip errors."""


class GossipMessageTooLarge(GossipError):
    """A gossip payload exceeds the limit that py-libp2p would silently drop (G7)."""


class InvalidLocationRecord(NetError, InvalidInput):
    """A ``/igor-loc/`` DHT record is malformed, unsigned or forged."""
