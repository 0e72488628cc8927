"""Fixtures for in-process multi-host tests: every host on 127.0.0.1, all in one nursery."""

import itertools
import logging
from collections.abc import Awaitable, Callable

import pytest
import trio
from libp2p.abc import IHost

from igor_p2p.net.host import HostConfig, build_host, running_host

_seed_counter = itertools.count(1)

LOG = logging.getLogger("tests.net")


def fresh_seed() -> bytes:
    """A distinct deterministic 32-byte seed per call."""
    return next(_seed_counter).to_bytes(4, "big") * 8


async def _serve(host: IHost, *, task_status: trio.TaskStatus[IHost]) -> None:
    async with running_host(host):
        task_status.started(host)
        await trio.sleep_forever()


HostSpawner = Callable[..., Awaitable[list[IHost]]]


@pytest.fixture
def spawn_hosts(nursery: trio.Nursery) -> HostSpawner:
    """``await spawn_hosts(n)`` starts n Noise-only hosts in the test's nursery."""

    async def spawn(n: int, **config: object) -> list[IHost]:
        hosts = []
        for _ in range(n):
            host = build_host(HostConfig(key_seed=fresh_seed(), **config))  # type: ignore[arg-type]
            hosts.append(await nursery.start(_serve, host))
        return hosts

    return spawn
