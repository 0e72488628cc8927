"""The small ports the node core drives (sans-IO core, thin interpreters over these).

The same core runs over the production adapters (SQLite, libp2p, the wasmtime scheduler, the
system clock) and over the simulator's in-memory ones (:mod:`igor_p2p.sim`). Conformance suites
(``tests/core/test_conformance_*.py``) run one behaviour contract against both.

- :class:`AuthorityStore` — durable authority records, lineages and witness state.
- :class:`Transport` — one request, one reply, to a node named by its key.
- :class:`AgentRunner` — ticks agents this node owns.
- :class:`Env` — time, randomness, the event history and fault-injection sites.
- :class:`Membership` — which nodes are up (for choosing witnesses and placement).
- :class:`Gossip` — best-effort broadcast of small messages on a topic (claims: hints only).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.errors import IgorError
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import Offer, RejectCode


class PeerUnreachable(IgorError):
    """No reply from a peer (no route, refused, reset, or timed out)."""


class StoreRefused(IgorError):
    """The store refused a write that would break a rule it guards (a fence or the chain)."""


@dataclass(frozen=True)
class AgentFiles:
    """What a node stores besides the lineage to run an agent: its module and manifest."""

    wasm_hash: bytes
    manifest_hash: bytes


class AuthorityStore(Protocol):
    """Durable state of one node. Every ``commit`` is atomic and durable when it returns."""

    async def records(self) -> list[tuple[str, AuthorityRecord]]: ...

    async def record(self, agent: str) -> AuthorityRecord | None: ...

    async def commit_authority(
        self,
        agent: str,
        record: AuthorityRecord,
        append: Sequence[bytes] = (),
        *,
        discard_copy: bool = False,
    ) -> list[bytes]:
        """Persist ``record`` and append ``append`` to the agent's lineage in one transaction.

        Entries already stored are skipped; entries may follow a compacted gap. With
        ``discard_copy`` the entries a pending copy added are dropped first. Returns the
        entries actually appended.
        """

    async def head(self, agent: str) -> bytes | None:
        """Digest of the last lineage entry stored for the agent."""

    async def lineage(self, agent: str) -> list[bytes]:
        """The stored lineage in chain order (possibly compacted)."""

    async def custody(self, agent: str) -> list[EpochStart]:
        """The verified epoch starts of the stored lineage, genesis first (empty if none)."""

    async def last_checkpoint(self, agent: str) -> Checkpoint | None: ...

    async def put_module(self, wasm: bytes, manifest: bytes) -> None: ...

    async def module(self, wasm_hash: bytes) -> bytes | None: ...

    async def manifest(self, manifest_hash: bytes) -> bytes | None: ...

    async def witness(self, agent: str) -> WitnessRecord | None: ...

    async def commit_witness(
        self, agent: str, record: WitnessRecord | None, learned: Sequence[EpochStart]
    ) -> None:
        """Persist a witness record and the custody links it learned, durably, in one go."""

    async def witness_chain(self, agent: str, after: int) -> tuple[int, tuple[bytes, ...]]:
        """The custody a witness stored after epoch ``after`` (wire form)."""

    async def witness_usage(self) -> WitnessUsage:
        """How many agents this node witnesses, and the bytes of custody it keeps for them."""


@dataclass(frozen=True)
class WitnessUsage:
    """What a node keeps as a witness (its quota counts these)."""

    agents: int
    bytes: int
    """Of every stored custody link: record, certificate and genesis (:func:`link_bytes`)."""


def link_bytes(start: EpochStart) -> int:
    """The bytes one stored custody link counts against the witness quota."""
    return len(start.record) + len(start.cert) + len(start.genesis)


Handler = Callable[[bytes, Message], Awaitable[Message]]


class Transport(Protocol):
    """Requests to other nodes. ``me`` is this node's key."""

    me: bytes

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        """Send ``message`` to ``peer`` and return its reply; raise :class:`PeerUnreachable`."""

    def serve(self, handler: Handler) -> None:
        """Answer every incoming request with ``handler(sender, message)``."""


class AgentRunner(Protocol):
    """Runs the agents this node owns; the core tells it when."""

    async def start(self, agent: str, epoch: int) -> None:
        """Start ticking ``agent`` from its last committed checkpoint at ``epoch``."""

    async def stop(self, agent: str) -> None:
        """Stop ticking at a tick boundary; returns once no tick of it runs. The instance is
        kept (paused) until :meth:`forget`, so a handoff or halt can snapshot it."""

    async def forget(self, agent: str) -> None:
        """Drop a stopped agent's instance (the node no longer owns it)."""

    async def handoff_checkpoint(self, agent: str) -> Checkpoint:
        """A HANDOFF checkpoint of a stopped agent (signed, not committed)."""

    async def final_checkpoint(self, agent: str) -> bytes | None:
        """A FINAL checkpoint of a stopped agent (signed, not committed), if it runs here."""

    async def admit_offer(
        self, wasm: bytes, manifest: bytes, incoming_bytes: int
    ) -> tuple[RejectCode, str] | None:
        """Why this node will not take an incoming agent (it cannot run the module, or has no
        room for it), as a wire code and words; None when it will."""

    async def replay_arrival(
        self, offer: Offer, custody: Sequence[EpochStart], checkpoint: Checkpoint, wasm: bytes
    ) -> None:
        """Replay on arrival (docs/effects.md): re-execute the ticks the offer's window holds
        when this node's policy or the manifest asks; raises
        :class:`~igor_p2p.core.offer_check.OfferInvalid` to refuse (REPLAY_REQUIRED,
        REPLAY_MISMATCH, …). Returns at once when nothing is asked."""

    def custody_verified(self, start: EpochStart) -> None:
        """The agent's chain of custody through ``start`` was verified from its genesis in this
        process (an offer's), so a later start of the agent need not verify it again."""

    def ticking(self) -> list[str]: ...

    def charged_without_tick(self, final_digest: bytes) -> int | None:
        """What a FINAL checkpoint this runner produced at its head's tick charged (the failing
        tick's fuel and the ticks rolled back with it: they stay paid); None if it did not
        make that checkpoint that way."""


class Gossip(Protocol):
    """Best-effort broadcast on a topic: a message (a msgpack map with a str ``type``) may be
    lost, duplicated, delayed or reordered, so it carries hints, never a protocol step."""

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every other subscriber of ``topic`` (may raise on encoding)."""

    async def subscribe(self, topic: str) -> AsyncIterator[dict[str, Any]]:
        """The decoded messages others publish on ``topic`` (malformed ones are skipped)."""


class Membership(Protocol):
    def up_nodes(self) -> list[bytes]:
        """Keys of the nodes believed up, this node included."""

    def down_nodes(self) -> list[bytes]:
        """Keys of the nodes known to be down (heard before, silent now)."""


class History(Protocol):
    def emit(self, type_: str, **fields: Any) -> None: ...


class Env(Protocol):
    """Time, randomness and the history of one node."""

    rng: random.Random
    history: History

    def now(self) -> float:
        """Monotonic seconds (never skewed)."""

    def wall_ns(self) -> int:
        """Wall-clock nanoseconds (a skew fault moves this)."""

    def token(self, n: int) -> bytes:
        """``n`` random bytes from this node's random source."""

    async def sleep(self, seconds: float) -> None: ...

    def buggify(self, site: str) -> bool:
        """Simulation only: whether to take the unusual path at ``site`` this time."""
