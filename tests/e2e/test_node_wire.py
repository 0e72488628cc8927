"""A running node process against hostile wire input: plaintext dialers, fuzzed Igor streams,
garbage on the admin socket. Afterwards it still answers over admin and over a new connection.

One node process serves the whole module; the libp2p client is an in-process host built with
``build_host`` (Noise only, like a node). Hypothesis runs in a worker thread and drives each
example on the test's trio loop through ``trio.from_thread.run``, so one client host and one
connection are reused across examples.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.lineage.identity import Keypair
from igor_p2p.net.errors import DialFailed, NetError
from igor_p2p.net.framing import read_frame
from igor_p2p.net.go_igor import GO_MIGRATE_PROTOCOL
from igor_p2p.net.host import HostConfig, build_host, dial, running_host
from igor_p2p.net.keys import key_pair_from_seed
from igor_p2p.net.peerid import public_key_from_peer_id_text
from igor_p2p.net.transport import MIGRATE_PROTOCOL, WITNESS_PROTOCOL, Libp2pTransport
from igor_p2p.node.admin_client import AdminClient
from igor_p2p.node.lookup import ask
from igor_p2p.wire.codec import MAX_FRAME_BYTES, encode
from igor_p2p.wire.messages import MESSAGES, Holding, Status

from .node_procs import NodeProc, node_processes, scratch_dir

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
KNOWN_IGOR_PROTOCOLS = (
    GO_MIGRATE_PROTOCOL,
    MIGRATE_PROTOCOL,
    WITNESS_PROTOCOL,
    "/igor-p2p/module/1.0.0",
)
EXAMPLE_TIMEOUT_S = 3.0
REPLY_TIMEOUT_S = 2.0
STREAM_EXAMPLES = 300
ADMIN_EXAMPLES = 100


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[NodeProc, str]]:
    """One node process with one ticking agent; yields it and the agent's DID."""
    with scratch_dir() as root, node_processes(root, ["target"]) as (proc,):
        proc.start()
        proc.wait_ready()
        launched = proc.admin(
            "launch",
            wasm=load_agent_source("counter").hex(),
            manifest=load_agent_manifest("counter").canonical_bytes.hex(),
        )
        yield proc, launched["agent"]


def client_host() -> IHost:
    return build_host(HostConfig(key_seed=os.urandom(32)))


async def admin_call(proc: NodeProc, method: str, **params: Any) -> Any:
    async with AdminClient.connect(proc.admin_socket, timeout_s=10) as client:
        return await client.call(method, **params)


async def wait_connections(proc: NodeProc, want: int, deadline_s: float = 5.0) -> int:
    with trio.move_on_after(deadline_s):
        while (await admin_call(proc, "status"))["connections"] != want:
            await trio.sleep(0.05)
    return (await admin_call(proc, "status"))["connections"]


# ---------------------------------------------------------------- plaintext


def plaintext_only_host() -> IHost:
    kp = key_pair_from_seed(os.urandom(32))
    return new_host(
        key_pair=kp,
        sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(kp)},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


async def test_plaintext_only_dialer_cannot_connect_to_a_node_process(
    node: tuple[NodeProc, str],
) -> None:
    proc, _ = node
    before = (await admin_call(proc, "status"))["connections"]
    dialer = plaintext_only_host()
    async with running_host(dialer, LOOPBACK):
        with pytest.raises(DialFailed):
            await dial(dialer, proc.addr, timeout_s=3)
        assert ID.from_base58(proc.peer_id) not in dialer.get_network().connections
    assert (await admin_call(proc, "status"))["connections"] == before

    # Control: a Noise host (what every node is) connects to the very same process.
    control = client_host()
    async with running_host(control, LOOPBACK):
        await dial(control, proc.addr, timeout_s=3)
        assert await wait_connections(proc, before + 1) == before + 1
    # Not asserted: the node dropping the control's connection once it closed. It sometimes
    # keeps listing it for 30 s and more (reported as a py-libp2p finding).


# ---------------------------------------------------------------- fuzzing


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=64),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=10,
)
message_types = st.sampled_from([*sorted(MESSAGES.by_type), "agent_status", "", "nope"])
field_names = st.sampled_from(
    [
        "agent",
        "sender",
        "epoch",
        "slot",
        "ballot",
        "chain_after",
        "chain",
        "known",
        "record",
        "cert",
        "migration_id",
        "checkpoint",
        "wasm",
        "wasm_hash",
        "manifest",
        "prepared_digest",
        "code",
        "reason",
    ]
)
wrong_messages = st.builds(
    lambda kind, body: {"type": kind, **body},
    message_types | msgpack_values,
    st.dictionaries(field_names, msgpack_values, max_size=6),
).map(lambda m: msgpack.packb(m, use_bin_type=True))
valid_request = struct.pack(">I", 1) + encode(Status(bytes(32), "did:key:z6Mkx", 0))
"""A request number and a well-formed STATUS (naming a sender other than the dialer)."""


def numbered(payload: bytes, number: int = 1) -> bytes:
    """A frame body of the authority transport: a request number, then the message."""
    return struct.pack(">I", number) + payload


def _truncated(payload: bytes, cut: int) -> bytes:
    whole = frame(payload)
    return whole[: max(0, min(cut, len(whole) - 1))]


stream_payloads = st.one_of(
    st.binary(max_size=512),  # raw garbage
    wrong_messages.map(frame),  # a well-formed frame of a wrong message, unnumbered
    st.builds(  # numbered, as the authority transport frames a request
        lambda n, m: frame(numbered(m, n)), st.integers(0, 2**32 - 1), wrong_messages
    ),
    st.lists(wrong_messages.map(lambda m: frame(numbered(m))), min_size=2, max_size=4).map(
        b"".join
    ),
    st.builds(_truncated, wrong_messages.map(numbered), st.integers(0, 600)),  # EOF in a frame
    st.builds(_truncated, st.just(valid_request), st.integers(0, 40)),
    st.just(frame(valid_request)),  # well formed, but it speaks for another node
    st.builds(  # a length prefix far beyond any limit, then a little payload
        lambda n, tail: struct.pack(">I", n) + tail,
        st.integers(MAX_FRAME_BYTES + 1, 2**32 - 1),
        st.binary(max_size=64),
    ),
    st.binary(max_size=200).map(lambda b: frame(numbered(b))),  # a frame of non-msgpack bytes
    st.just(frame(numbered(msgpack.packb([1, 2, 3])))),  # msgpack, but not a map
    st.just(frame(valid_request + b"\x00")),  # trailing bytes
    st.binary(max_size=200).map(lambda b: b'{"Package": ' + b + b"\n"),  # Go-shaped, broken
)


async def discover_igor_protocols(client: IHost, peer: ID) -> tuple[list[str], list[str]]:
    """(served, not served) Igor protocols: from identify, plus the IDs we know of."""
    with trio.move_on_after(5):
        while MIGRATE_PROTOCOL not in client.get_peerstore().get_protocols(peer):
            await trio.sleep(0.05)
    identified = {
        p
        for p in client.get_peerstore().get_protocols(peer)
        if p.startswith(("/igor/", "/igor-p2p/"))
    }
    served, missing = [], []
    for protocol in sorted(identified | set(KNOWN_IGOR_PROTOCOLS)):
        try:
            with trio.fail_after(EXAMPLE_TIMEOUT_S):
                stream = await client.new_stream(peer, [TProtocol(protocol)])
            await stream.reset()
            served.append(protocol)
        except Exception:
            missing.append(protocol)
    return served, missing


async def poke(client: IHost, peer: ID, protocol: str, payload: bytes, half_close: bool) -> None:
    """Open a stream, send ``payload``; then reset, or half-close and read any reply frames.

    Any reply the node does send must be well formed: on the authority protocols a numbered
    Igor message (REFUSED with a typed code, not junk); on Go's migrate protocol Go's own
    answer, a JSON line refusing the agent.
    """
    with trio.fail_after(EXAMPLE_TIMEOUT_S):
        stream = await client.new_stream(peer, [TProtocol(protocol)])
    try:
        try:
            await stream.write(payload)
            if not half_close:
                return
            await stream.close_write()
        except Exception:
            return  # the node may already have reset the stream: that is a fine answer
        if protocol == GO_MIGRATE_PROTOCOL:
            with trio.move_on_after(REPLY_TIMEOUT_S):
                answer = b""
                while b"\n" not in answer and len(answer) < 1 << 16:
                    try:
                        chunk = await stream.read(4096)
                    except Exception:
                        return
                    if not chunk:
                        break
                    answer += chunk
                if answer:
                    refusal = json.loads(answer.split(b"\n")[0])
                    assert refusal["Success"] is False and refusal["Error"], refusal
            return
        for _ in range(8):
            try:
                reply = await read_frame(stream, max_size=1 << 24, timeout_s=REPLY_TIMEOUT_S)
            except NetError:
                return
            assert len(reply) > 4, reply
            MESSAGES.decode(reply[4:])
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
            await stream.reset()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=10,
)
admin_lines = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode() + b"\n"),
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "method": st.sampled_from(
                ["status", "peers", "agents", "agent_status", "launch", "halt", "ping", "nope"]
            ),
            "params": st.dictionaries(
                st.sampled_from(["agent", "wasm", "manifest", "budget", "reason"]),
                st.text(max_size=30) | st.integers() | st.none(),
                max_size=3,
            ),
        },
    ).map(lambda v: json.dumps(v).encode() + b"\n"),
)


async def poke_admin(proc: NodeProc, data: bytes) -> None:
    with trio.fail_after(EXAMPLE_TIMEOUT_S):
        sock = await trio.open_unix_socket(str(proc.admin_socket))
    try:
        with trio.move_on_after(REPLY_TIMEOUT_S):
            await sock.send_all(data)
            await sock.send_eof()
            received = b""
            while chunk := await sock.receive_some(1 << 16):
                received += chunk
            for line in received.splitlines():
                response = json.loads(line)
                assert isinstance(response, dict) and isinstance(response["ok"], bool), response
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(sock)


async def test_fuzzed_streams_and_admin_lines_leave_the_node_answering(
    node: tuple[NodeProc, str],
) -> None:
    proc, did = node
    peer = ID.from_base58(proc.peer_id)
    started = time.monotonic()
    client = client_host()
    async with running_host(client, LOOPBACK):
        await dial(client, proc.addr, timeout_s=5)
        served, missing = await discover_igor_protocols(client, peer)
        assert {MIGRATE_PROTOCOL, WITNESS_PROTOCOL} <= set(served), (served, missing)
        print(f"fuzzing {served}; not served by this node (skipped): {missing}")

        def alive() -> None:
            assert proc.alive(), proc.log_tail()

        @settings(
            max_examples=STREAM_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            protocol=st.sampled_from(served),
            payload=stream_payloads,
            half_close=st.booleans(),
        )
        def fuzz_streams(protocol: str, payload: bytes, half_close: bool) -> None:
            trio.from_thread.run(poke, client, peer, protocol, payload, half_close)
            alive()

        @settings(
            max_examples=ADMIN_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(lines=st.lists(admin_lines, min_size=1, max_size=4))
        def fuzz_admin(lines: list[bytes]) -> None:
            trio.from_thread.run(poke_admin, proc, b"".join(lines))
            alive()

        await trio.to_thread.run_sync(fuzz_streams)
        await trio.to_thread.run_sync(fuzz_admin)

    # Afterwards: status over a fresh admin connection ...
    status = await admin_call(proc, "status")
    assert status["peer_id"] == proc.peer_id
    assert status["agents_ticking"] == 1
    # ... and over a brand-new libp2p connection from a new peer: its custody of the agent,
    # verified from the genesis.
    key = Keypair.generate()
    fresh = build_host(HostConfig(key_seed=key.seed))
    async with running_host(fresh, LOOPBACK):
        await dial(fresh, proc.addr, timeout_s=5)
        transport = Libp2pTransport(fresh, key.public_key)
        node_key = public_key_from_peer_id_text(proc.peer_id)
        found = await ask(transport, node_key, did, 10.0)
        assert found is not None and found.verified and found.holding is Holding.OWNER
        assert found.latest is not None and found.latest.owner == node_key
        unknown = await ask(transport, node_key, "did:key:z6MkNobody", 10.0)
        assert unknown is not None and unknown.holding is Holding.NONE
        assert unknown.latest is None and not unknown.verified
    assert time.monotonic() - started < 60
