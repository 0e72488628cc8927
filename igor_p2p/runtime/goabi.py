"""Giving a hosted agent's environment what Go Igor's ABI needs beyond the sandbox: the node's
log book, the agent's price in Go's units (``node_price``) and its execution receipts
(``wallet_receipt``)."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from igor_p2p.agent.manifest import Manifest
from igor_p2p.lineage.entries import LineageEntry, decode_entry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind
from igor_p2p.runtime.go_units import go_price_per_second
from igor_p2p.runtime.hosted import AgentEnvironment
from igor_p2p.runtime.receipts import receipts_from_lineage
from igor_p2p.runtime.services import NodeServices

_GENESIS_KINDS = (CheckpointKind.GENESIS, CheckpointKind.IMPORT)


def _whole_chain(entries: Sequence[LineageEntry]) -> bool:
    first = entries[0] if entries else None
    return isinstance(first, Checkpoint) and first.kind in _GENESIS_KINDS


def wire_basics(services: NodeServices, env: AgentEnvironment) -> None:
    """The log book and the price (all an agent that declares no ``wallet`` needs)."""
    env.logbook = services.agent_logs
    env.price_per_second = go_price_per_second(services.price)


async def wire_environment(
    services: NodeServices,
    env: AgentEnvironment,
    manifest: Manifest,
    entries: Sequence[LineageEntry],
) -> None:
    """Fill ``env``'s log book, price and (for agents declaring ``wallet``) receipts.

    ``entries`` is the verified chain the agent is loaded from; when it is only the head (a
    handoff target's verified copy), the lineage is read from the store.
    """
    wire_basics(services, env)
    if not manifest.declares("wallet"):
        return
    chain: Sequence[LineageEntry] = entries
    if not _whole_chain(entries):
        did = env.did
        chain = await services.committer.read(
            lambda store: [decode_entry(blob) for blob in store.lineage(did)]
        )
    env.receipts = await trio.to_thread.run_sync(
        receipts_from_lineage, chain, env.did, services.key, services.peer_id
    )
