"""A lying node for e2e tests: ``python tests/e2e/liar_node.py LIE -- <igor node run args>``.

It is the real ``igor node run`` (same CLI, same config, same libp2p stack) with its transport
rewriting what it sends, through the simulation's liars (``igor_p2p/sim/lies.py``):

- ``TYPE.field[.variant]``: that field of every TYPE message it sends is wrong (requests and
  replies);
- ``every_field``: half of all messages it sends carry one random wrong field;
- ``forge_claims``: it answers honestly, but every authority claim it hears on gossip is
  echoed back forged (a bare ``{agent, epoch: 99}``, the real proof replayed for epoch 99, a
  damaged proof for the next epoch, and junk), at most ``MAX_FORGED`` times.

Every lie it tells is printed as ``LIE <what>`` on stdout (the node log), so tests can wait for
positive evidence that a lie was told.
"""

from __future__ import annotations

import random
import sys
from typing import Any

from igor_p2p.cli.main import main
from igor_p2p.net.transport import Libp2pTransport
from igor_p2p.node.claims import CLAIMS_TOPIC, Claim, ClaimGossip
from igor_p2p.sim.lies import FieldLiar, OneLie
from igor_p2p.wire.codec import Message

MAX_FORGED = 50


def _say(what: str) -> None:
    print(f"LIE {what}", flush=True)


def install_message_lie(lie: Any) -> None:
    request, serve = Libp2pTransport.request, Libp2pTransport.serve

    def told(message: Message) -> Message:
        before = message
        after = lie(message)
        if after != before:
            _say(f"{message.TYPE}")
        return after

    async def lying_request(self: Libp2pTransport, peer: bytes, message: Message, timeout: float):  # type: ignore[no-untyped-def]
        return await request(self, peer, told(message), timeout)

    def lying_serve(self: Libp2pTransport, handler):  # type: ignore[no-untyped-def]
        async def lying(sender: bytes, message: Message) -> Message:
            return told(await handler(sender, message))

        serve(self, lying)

    Libp2pTransport.request = lying_request  # type: ignore[method-assign]
    Libp2pTransport.serve = lying_serve  # type: ignore[method-assign]


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:] if data else b"\x01"


def install_claim_forger() -> None:
    observe = ClaimGossip.observe
    forged = [0]

    async def forge(self: ClaimGossip, claim: Claim) -> None:
        if claim.agent in self.mine or forged[0] >= MAX_FORGED or claim.epoch >= 99:
            return  # (never forge from its own forgeries)
        forged[0] += 1
        lies: list[Any] = [
            {"agent": claim.agent, "epoch": 99},
            Claim(claim.agent, 99, claim.record, claim.cert).to_wire(),
            Claim(claim.agent, claim.epoch + 1, _flip(claim.record), claim.cert).to_wire(),
            Claim(claim.agent, claim.epoch + 1, claim.record, _flip(claim.cert)).to_wire(),
            Claim(claim.agent, 2**63 - 1, b"", b"").to_wire(),
            "junk",
        ]
        for lie in lies:
            try:
                await self.gossip.publish(CLAIMS_TOPIC, {"type": "claims", "claims": [lie]})
            except Exception as exc:  # a liar that cannot even encode its lie says so
                _say(f"could not publish {lie!r:.40}: {exc}")
        _say(f"forged claims for {claim.agent} epoch {claim.epoch}")

    async def observing(self: ClaimGossip, claim: Claim) -> None:
        await observe(self, claim)
        if self._nursery is not None:
            self._nursery.start_soon(forge, self, claim)

    ClaimGossip.observe = observing  # type: ignore[method-assign]


def install(lie: str) -> None:
    if lie == "forge_claims":
        install_claim_forger()
        return
    others = [b"\x01" * 32]
    if lie == "every_field":
        install_message_lie(FieldLiar(b"", random.Random(7), others, rate=0.5))
        return
    kind, field, *variant = lie.split(".")
    install_message_lie(OneLie(b"", kind, field, int(variant[0]) if variant else 0, others))


if __name__ == "__main__":
    lie_name, separator, *node_args = sys.argv[1:]
    assert separator == "--", "usage: liar_node.py LIE -- node run ARGS"
    install(lie_name)
    sys.argv = ["igor", *node_args]
    main()
