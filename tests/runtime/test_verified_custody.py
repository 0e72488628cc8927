"""A load verifies only the custody its process has not verified yet (igor_p2p.runtime.
verified_custody): an agent that wanders back to a node does not pay again for every epoch it
ever had, and a new process verifies everything from the genesis."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.custody import EpochStart
from igor_p2p.runtime import loader
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.loader import LaunchRequest, LineageRejected, load_hosted, verify_for_load
from igor_p2p.runtime.offline import core_over
from igor_p2p.runtime.services import open_services
from igor_p2p.runtime.verified_custody import VerifiedCustody
from tests.authority.chain import A, Custody, F, make_checkpoint

from .hosting import launch_hosted


def _aged(epochs: int) -> Custody:
    custody = Custody(A)
    for i in range(epochs - 1):
        custody.hand((F, A)[i % 2])
    return custody


def _tail(custody: Custody) -> list[bytes]:
    latest = custody.latest
    return [make_checkpoint(latest, latest.digest).encode()]


def _counting_follow(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    followed: list[int] = []
    real = loader.follow

    def counting(base: EpochStart, links: Sequence[bytes]) -> list[EpochStart]:
        followed.append(len(links))
        return real(base, links)

    monkeypatch.setattr(loader, "follow", counting)
    return followed


def test_a_load_after_a_verified_prefix_checks_only_the_later_links(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    custody = _aged(9)
    latest = custody.latest
    followed = _counting_follow(monkeypatch)
    monkeypatch.setattr(loader, "chain_from_genesis", None)  # never called
    head, _, current = verify_for_load(
        custody.agent, latest.owner, latest.epoch, custody.starts, _tail(custody), verified=7
    )
    assert followed == [4]  # the record and certificate of epochs 8 and 9
    assert current == latest and head.epoch == 9


def test_without_a_verified_prefix_the_whole_chain_is_checked_from_the_genesis() -> None:
    custody = _aged(5)
    latest = custody.latest
    broken = list(custody.starts)
    bad_record = bytearray(broken[2].record)
    bad_record[-1] ^= 1  # the transfer's signature, in the middle of the chain
    broken[2] = dataclasses.replace(broken[2], record=bytes(bad_record))
    with pytest.raises(LineageRejected):
        verify_for_load(custody.agent, latest.owner, latest.epoch, broken, _tail(custody))


def test_the_mark_holds_only_for_the_very_start_that_was_verified() -> None:
    custody = _aged(4)
    marks = VerifiedCustody()
    marks.remember(custody.at(3))
    assert marks.verified_prefix(custody.agent, custody.starts) == 3
    other = _aged(2)
    other.hand(F)  # another epoch 3 of the same agent (F keeps it)
    assert marks.verified_prefix(custody.agent, other.starts) == 0
    assert marks.verified_prefix(custody.agent, custody.starts[:2]) == 0  # shorter than the mark
    assert marks.verified_prefix("did:key:zsomeoneelse", custody.starts) == 0


def test_the_marks_are_bounded_and_forget_the_least_recently_used() -> None:
    marks = VerifiedCustody(capacity=2)
    first, second, third = (dataclasses.replace(_aged(1).latest, agent=f"a{i}") for i in range(3))
    marks.remember(first)
    marks.remember(second)
    assert marks.verified_prefix("a0", [first]) == 1  # used: "a1" is now the oldest
    marks.remember(third)
    assert len(marks) == 2
    assert marks.verified_prefix("a1", [second]) == 0
    assert marks.verified_prefix("a0", [first]) == 1
    assert marks.verified_prefix("a2", [third]) == 1


async def test_a_process_verifies_an_agents_custody_from_the_genesis_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = LaunchRequest(
        load_agent_source("counter"), load_agent_manifest("counter").canonical_bytes, 10**9
    )
    from_genesis: list[str] = []
    real = loader.chain_from_genesis

    def counting(genesis: bytes, links: Sequence[bytes]) -> list[EpochStart]:
        from_genesis.append("checked")
        return real(genesis, links)

    monkeypatch.setattr(loader, "chain_from_genesis", counting)
    async with open_services(DataDir(tmp_path)) as services:
        agent = await launch_hosted(services, request)
        async with core_over(services) as offline:
            again = await load_hosted(services, offline.store, agent.did, 1)
        assert again.head == agent.head
    assert from_genesis == ["checked"]  # the second load trusted what the first verified
    async with open_services(DataDir(tmp_path)) as restarted, core_over(restarted) as offline:
        await load_hosted(restarted, offline.store, agent.did, 1)
    assert from_genesis == ["checked", "checked"]  # a new process verifies from the genesis
