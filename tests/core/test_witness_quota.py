"""The witness quota: no peer can fill a node's disk with custody of made-up agents.

Anyone can make an agent (a fresh key and a genesis naming any witnesses) and send a witness its
custody. A witness keeps at most ``max_agents`` agents and ``max_bytes`` of custody; a request
about one more agent is refused BUSY with nothing written, while the agents it already
witnesses are served as before.
"""

from __future__ import annotations

import random

from igor_p2p.authority.witness import WitnessCore
from igor_p2p.core.ports import WitnessUsage, link_bytes
from igor_p2p.core.witness_service import WitnessQuota, WitnessService
from igor_p2p.lineage.identity import Keypair
from igor_p2p.sim.disk import SimDisk, SimStore
from igor_p2p.wire.messages import Done, Learn, Refused, RefusedCode
from tests.authority.chain import A, B, C, Custody, D

WITNESS = B


def _agent(n: int, state: bytes = b"genesis") -> Custody:
    return Custody(A, (B, C, D), agent_key=Keypair.from_seed(bytes([0x60 + n]) * 32), state=state)


def _learn(custody: Custody) -> Learn:
    after, chain = custody.wire()
    return Learn(A.public_key, custody.agent, after, chain)


def _service(disk: SimDisk, quota: WitnessQuota) -> WitnessService:
    store = SimStore(disk, (0.0, 0.0), random.Random(1).uniform)
    return WitnessService(WitnessCore(WITNESS), store, None, quota)  # type: ignore[arg-type]


async def test_a_witness_at_its_agent_quota_refuses_new_agents_and_serves_the_ones_it_has() -> None:
    disk = SimDisk()
    service = _service(disk, WitnessQuota(max_agents=2, max_bytes=1 << 30))
    first, second, third = _agent(1), _agent(2), _agent(3)
    assert isinstance(await service.handle(_learn(first)), Done)
    assert isinstance(await service.handle(_learn(second)), Done)
    refused = await service.handle(_learn(third))
    assert isinstance(refused, Refused) and refused.code is RefusedCode.BUSY
    assert third.agent not in disk.state.witnesses  # nothing written
    assert service.refused_full == 1
    # An agent it witnesses moves on: still served.
    first.hand(C)
    assert isinstance(await service.handle(_learn(first)), Done)
    assert disk.state.witnesses[first.agent].chosen.epoch == 2


async def test_a_witness_refuses_a_new_agent_whose_custody_would_not_fit_its_byte_quota() -> None:
    small, big = _agent(1), _agent(2, state=b"x" * 100_000)
    room = link_bytes(small.latest) + 50_000
    disk = SimDisk()
    service = _service(disk, WitnessQuota(max_agents=100, max_bytes=room))
    assert isinstance(await service.handle(_learn(small)), Done)
    refused = await service.handle(_learn(big))
    assert isinstance(refused, Refused) and refused.code is RefusedCode.BUSY
    assert await service.usage() == WitnessUsage(1, link_bytes(small.latest))


async def test_the_quota_counts_what_the_store_already_holds_after_a_restart() -> None:
    disk = SimDisk()
    quota = WitnessQuota(max_agents=2, max_bytes=1 << 30)
    before = _service(disk, quota)
    for n in (1, 2):
        assert isinstance(await before.handle(_learn(_agent(n))), Done)
    after = _service(disk, quota)  # a new incarnation over the same disk
    refused = await after.handle(_learn(_agent(3)))
    assert isinstance(refused, Refused) and refused.code is RefusedCode.BUSY
