"""A bench-only gossip peer process: one host with gossipsub, driven over stdin/stdout.

``python -m igor_p2p.bench.gossip_peer`` prints ``addr <multiaddr>``, then reads commands, one
per line: ``dial <multiaddr>``, ``publish <n>`` (a small message, like an announcement), and
``quit``. Every message it receives on the bench topic (its own included) is reported as
``recv <n> <time.time()>``; every command is answered ``ok`` (or ``error <why>``). The node
bench starts 16 of these to measure propagation between separate processes, as nodes run.
``IGOR_BENCH_GOSSIP`` (JSON, ``GossipConfig`` fields) overrides the gossip parameters, to
compare them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import trio

from igor_p2p.net.errors import NetError
from igor_p2p.net.gossip import GossipConfig, gossip_service, publish_message, subscribe_messages
from igor_p2p.net.host import HostConfig, build_host, dial, full_addrs, running_host
from igor_p2p.net.logs import route_libp2p_logs

TOPIC = "igor/bench/gossip/1"
PAD = "x" * 300
"""About an announcement's size."""


def _config() -> GossipConfig:
    return GossipConfig(**json.loads(os.environ.get("IGOR_BENCH_GOSSIP", "{}")))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _commands() -> trio.abc.ReceiveStream:
    return trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))


async def main() -> None:
    route_libp2p_logs(logging.getLogger("igor_p2p.bench.peer"))
    logging.getLogger("igor_p2p.bench.peer").setLevel(logging.CRITICAL)
    host = build_host(HostConfig(key_seed=os.urandom(32)))
    async with (
        running_host(host),
        gossip_service(
            host, GossipConfig(**json.loads(os.environ.get("IGOR_BENCH_GOSSIP", "{}")))
        ) as gossip,
        trio.open_nursery() as nursery,
    ):
        subscription = await subscribe_messages(gossip, TOPIC)

        async def report() -> None:
            async for message in subscription:
                _say(f"recv {message.message.get('n')} {time.time():.6f}")

        nursery.start_soon(report)
        _say(f"addr {full_addrs(host)[0]}")
        stdin = await _commands()
        buffer = b""
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                command, _, arg = raw.decode().strip().partition(" ")
                try:
                    if command == "dial":
                        await dial(host, arg, timeout_s=10)
                    elif command == "publish":
                        message = {"type": "bench", "n": int(arg), "t": time.time(), "pad": PAD}
                        await publish_message(gossip, TOPIC, message)
                    elif command == "quit":
                        nursery.cancel_scope.cancel()
                        return
                    _say("ok")
                except (NetError, ValueError) as exc:
                    _say(f"error {type(exc).__name__}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
