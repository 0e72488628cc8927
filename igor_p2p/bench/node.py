"""Bench area ``node``: node processes, DHT lookups, gossip propagation, framed throughput.

Every figure has a baseline measured in the same run:

* 16 ``igor node run`` processes to complete peer tables, against one process's start-up
  (spawn → admin socket answers). RSS per node process, against a Python process that only
  imports the node code.
* One node process's start-up (spawn → admin socket answers) against ``python -c pass``.
* A node stopped, marked down everywhere, and started again with no bootstrap list (its
  known-peers file): seconds until every other table has it up again.
* DHT location lookup p50/p99 on 16 in-process hosts with the local copy removed before each
  lookup (so every lookup goes to the network), against a one-stream request/reply round trip.
* Gossip propagation p50/p99 (publish → every subscriber) between 16 separate processes
  (:mod:`igor_p2p.bench.gossip_peer`; in one process all 16 hosts share one core and one trio
  loop, which measures CPU, not propagation), against the same request/reply round trip.
* ``write_frame``/``read_frame`` of 1 MiB frames against raw ``stream.write``/``read`` of the
  same bytes on the same kind of libp2p connection.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from igor_p2p.bench.core import BenchArea, BenchContext, BenchRow, make_row, register
from igor_p2p.errors import IgorError
from igor_p2p.net.dht import (
    DhtService,
    dht_service,
    get_location,
    location_key,
    put_location,
    sign_location,
)
from igor_p2p.net.framing import read_frame, write_frame
from igor_p2p.net.gossip import (
    GossipConfig,
    GossipService,
    gossip_service,
)
from igor_p2p.net.host import HostConfig, build_host, dial, full_addrs, running_host
from igor_p2p.net.logs import route_libp2p_logs

AREA = "node"
LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)
FULL_TABLES_RATIO = 8.0
RSS_RATIO = 1.2
REJOIN_TARGET_S = 5.0
DHT_P50_RATIO = 30.0
GOSSIP_P99_TARGET_MS = 100.0
FRAMED_VS_RAW_TARGET = 0.90
ECHO_PROTOCOL = TProtocol("/igor-bench/echo/1.0.0")
SINK_PROTOCOL = TProtocol("/igor-bench/sink/1.0.0")
MIB = 1 << 20


@dataclass(frozen=True)
class NodeBenchSizes:
    processes: int
    hosts: int
    lookups: int
    gossip_messages: int
    frames: int
    rtt_samples: int


def sizes_for(ctx: BenchContext) -> NodeBenchSizes:
    return NodeBenchSizes(
        processes=ctx.size(16, 4),
        hosts=ctx.size(16, 6),
        lookups=ctx.size(200, 30),
        gossip_messages=ctx.size(100, 20),
        frames=ctx.size(64, 8),
        rtt_samples=ctx.size(200, 30),
    )


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# ---------------------------------------------------------------- node processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(data: Path, method: str) -> Any:
    from igor_p2p.node.admin_client import call_admin
    from igor_p2p.runtime.datadir import DataDir

    return call_admin(DataDir(data).admin_socket, method, timeout_s=5.0)


def _poll(probe: Callable[[], bool], deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if probe():
                return True
        except (IgorError, OSError):
            pass
        time.sleep(0.05)
    return False


@dataclass
class _Proc:
    data: Path
    port: int
    peer_id: str
    popen: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}"

    def start(self, bootstrap: str | None) -> None:
        args = [sys.executable, "-m", "igor_p2p.cli.main", "node", "run", "-d", str(self.data)]
        args += ["--name", self.data.name, "--listen", f"/ip4/127.0.0.1/tcp/{self.port}"]
        args += ["--log-level", "WARNING"]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IGOR_")}
        with open(self.data / "node.log", "ab") as log:
            self.popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)


def _make_procs(root: Path, count: int) -> list[_Proc]:
    from igor_p2p.runtime.datadir import DataDir
    from igor_p2p.runtime.services import default_peer_id

    procs = []
    for i in range(count):
        data = root / f"b{i}"
        peer_id = default_peer_id(DataDir(data).ensure().node_keypair())
        procs.append(_Proc(data, _free_port(), peer_id))
    return procs


def _stop_all(procs: Sequence[_Proc]) -> None:
    for p in procs:
        if p.popen is not None and p.popen.poll() is None:
            p.popen.send_signal(signal.SIGKILL)
    for p in procs:
        if p.popen is not None:
            p.popen.wait(timeout=10)


def _import_floor_rss_mb() -> float:
    """RSS of a Python process that imports the node code and does nothing else."""
    import psutil

    code = "import sys, igor_p2p.node.node; print('ok', flush=True); sys.stdin.read()"
    popen = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert popen.stdout is not None
        popen.stdout.readline()
        return psutil.Process(popen.pid).memory_info().rss / MIB
    finally:
        popen.kill()
        popen.wait(timeout=10)


def _python_pass_s(runs: int = 3) -> float:
    """Wall time of ``python -c pass`` (best of ``runs``): the floor of any process start."""
    best = float("inf")
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        best = min(best, time.monotonic() - started)
    return best


def process_rows(ctx: BenchContext, sizes: NodeBenchSizes) -> list[BenchRow]:
    """Process start-up against ``python -c pass``; N cold processes (each importing) to full
    tables; RSS; a restarted node back in every peer table."""
    from testnet.harness import Testnet

    root = ctx.workdir / "procs"
    root.mkdir(parents=True, exist_ok=True)
    floor_s = _python_pass_s()
    solo, *_ = _make_procs(root / "solo", 1)
    started = time.monotonic()
    solo.start(None)
    try:
        ok = _poll(lambda: bool(_call(solo.data, "status")), 60)
        single_s = time.monotonic() - started if ok else float("nan")
    finally:
        _stop_all([solo])
    ctx.log(f"node: one process up in {single_s:.2f} s (python -c pass {floor_s:.3f} s)")

    tn = Testnet(root / "tn")
    rss: list[float] = []
    rejoin_s = float("nan")
    try:
        full_s = tn.up(sizes.processes, preload=False)  # cold: every process imports
        rss = [_rss_mb(info.pid) for info in tn.state.nodes if info.pid is not None]
        ctx.log(f"node: {sizes.processes} cold processes to full tables in {full_s:.2f} s")
        rejoin_s = _rejoin_s(ctx, tn)
    finally:
        tn.down(grace_s=5.0)
    floor_mb = _import_floor_rss_mb()
    worst = max(rss) if rss else float("nan")
    return [
        make_row(
            AREA,
            "node process start-up (spawn to admin answering)",
            single_s,
            "s",
            "python -c pass",
            floor_s,
            details={"note": "imports dominate: py-libp2p's __init__ imports every transport"},
        ),
        make_row(
            AREA,
            f"{sizes.processes} node processes to full peer tables (cold starts)",
            full_s,
            "s",
            "one node process start-up",
            single_s,
            target=f"≤ {FULL_TABLES_RATIO:g}× one start",
            met=full_s <= FULL_TABLES_RATIO * single_s,
            details={"cpus": os.cpu_count() or 0, "processes": sizes.processes},
        ),
        make_row(
            AREA,
            "RSS per node process (max)",
            worst,
            "MB",
            "python importing the node code",
            floor_mb,
            target=f"≤ {RSS_RATIO:g}× the import baseline",
            met=worst <= RSS_RATIO * floor_mb,
            details={"median_mb": round(statistics.median(rss), 1) if rss else 0.0},
        ),
        make_row(
            AREA,
            "restarted node back in every peer table",
            rejoin_s,
            "s",
            "one node process start-up",
            single_s,
            target=f"≤ {REJOIN_TARGET_S:g} s",
            met=rejoin_s <= REJOIN_TARGET_S,
            details={"bootstrap": "none (its known-peers file)", "from": "spawn"},
        ),
    ]


def _rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss / MIB)


def _rejoin_s(ctx: BenchContext, tn: Any) -> float:
    """Stop one node cleanly, wait until every other one has marked it down, start it again
    with no bootstrap list; seconds from that spawn until every other table has it up."""
    victim = tn.names[-1]
    victim_id = tn.peer_id(victim)
    others = tn.names[:-1]
    tn.stop(victim)

    def up_everywhere(want: bool) -> bool:
        answers = tn.admin_many(others, "peers", timeout_s=5.0)
        return all(
            isinstance(a, list) and any(p["peer_id"] == victim_id and p["up"] for p in a) == want
            for a in answers.values()
        )

    if not _poll(lambda: up_everywhere(False), 120):
        return float("nan")
    ctx.log("node: the stopped node is down everywhere; restarting it without bootstrap")
    started = time.monotonic()
    tn.start(victim, bootstrap=())
    return time.monotonic() - started if _poll(lambda: up_everywhere(True), 60) else float("nan")


# ---------------------------------------------------------------- in-process hosts


@dataclass
class _Peer:
    host: IHost
    gossip: GossipService
    dht: DhtService
    seed: bytes


@asynccontextmanager
async def _mesh(count: int) -> AsyncIterator[list[_Peer]]:
    """``count`` hosts with gossip and DHT, each bootstrapped from the first (like the nodes)."""
    async with AsyncExitStack() as stack:
        peers: list[_Peer] = []
        for _ in range(count):
            seed = os.urandom(32)
            host = build_host(HostConfig(key_seed=seed))
            await stack.enter_async_context(running_host(host, LOOPBACK))
            gossip = await stack.enter_async_context(gossip_service(host, GossipConfig()))
            boot = [full_addrs(peers[0].host)[0]] if peers else []
            # The bench refreshes every table itself once all hosts are up (below).
            dht = await stack.enter_async_context(dht_service(host, boot, first_refresh_s=None))
            peers.append(_Peer(host, gossip, dht, seed))
        # A sparse extra mesh (each host to two random others), as discovery would build.
        rng = random.Random(7)
        for i, peer in enumerate(peers[1:], start=1):
            for j in rng.sample([k for k in range(count) if k != i], min(2, count - 1)):
                await dial(peer.host, full_addrs(peers[j].host)[0], timeout_s=5)
        # The settled state of a running network: every routing table refreshed once (nodes
        # do this a few seconds after start).
        for peer in peers:
            await peer.dht.dht.refresh_routing_table()
        yield peers


async def _echo_handler(stream: INetStream) -> None:
    try:
        while True:
            data = await stream.read(MIB)
            if not data:
                break
            await stream.write(data)
    except Exception:
        pass
    finally:
        await stream.reset()


async def _rtt_ms(client: IHost, server: IHost, samples: int) -> list[float]:
    """One 64-byte request/reply round trip on an open stream, ``samples`` times."""
    server.set_stream_handler(ECHO_PROTOCOL, _echo_handler)
    await dial(client, full_addrs(server)[0], timeout_s=5)
    stream = await client.new_stream(server.get_id(), [ECHO_PROTOCOL])
    out = []
    try:
        for _ in range(samples):
            t = time.perf_counter()
            await stream.write(b"x" * 64)
            got = 0
            while got < 64:
                got += len(await stream.read(64 - got))
            out.append((time.perf_counter() - t) * 1000)
    finally:
        await stream.reset()
    return out


async def _dht_lookups_ms(peers: list[_Peer], lookups: int) -> tuple[list[float], int]:
    owners = peers[: max(1, len(peers) // 4)]
    dids = []
    for n, owner in enumerate(owners):
        did = f"did:key:z6MkBench{n:04d}"
        record = sign_location(owner.seed, agent=did, epoch=1, wall_ns=time.time_ns())
        await put_location(owner.dht, record)
        dids.append(did)
    rng = random.Random(11)
    out, misses = [], 0
    for _ in range(lookups):
        did = rng.choice(dids)
        reader = rng.choice(peers)
        reader.dht.dht.value_store.remove(location_key(did).encode())  # force a network lookup
        t = time.perf_counter()
        with trio.move_on_after(5):
            found = await get_location(reader.dht, did)
        out.append((time.perf_counter() - t) * 1000)
        misses += found is None
    return out, misses


async def _network_rows(sizes: NodeBenchSizes) -> tuple[list[BenchRow], list[float]]:
    """DHT rows, and the round trips they are compared with (for the gossip rows too)."""
    route_libp2p_logs(logging.getLogger("igor_p2p.libp2p"))  # G12: not on stderr
    async with _mesh(sizes.hosts) as peers:
        rtt = await _rtt_ms(peers[1].host, peers[-1].host, sizes.rtt_samples)
        lookups, misses = await _dht_lookups_ms(peers, sizes.lookups)
    rtt50 = statistics.median(rtt)
    l50, l99 = percentile(lookups, 0.5), percentile(lookups, 0.99)
    n = sizes.hosts
    rows = [
        make_row(
            AREA,
            f"DHT location lookup p50 ({n} hosts, remote)",
            l50,
            "ms",
            "stream request/reply p50",
            rtt50,
            target=f"≤ {DHT_P50_RATIO:g}× a round trip",
            met=l50 <= DHT_P50_RATIO * rtt50,
            details={"p99_ms": round(l99, 2), "misses": misses, "lookups": len(lookups)},
        ),
        make_row(
            AREA,
            f"DHT location lookup p99 ({n} hosts, remote)",
            l99,
            "ms",
            "stream request/reply p99",
            percentile(rtt, 0.99),
        ),
    ]
    return rows, rtt


# ---------------------------------------------------------------- gossip between processes


class _GossipPeers:
    """``count`` :mod:`igor_p2p.bench.gossip_peer` processes and their output lines."""

    def __init__(self, count: int) -> None:
        import queue
        import threading

        self.lines: queue.Queue[tuple[int, str]] = queue.Queue()
        self.procs = []
        for i in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-m", "igor_p2p.bench.gossip_peer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(i, proc), daemon=True).start()
        self.addrs: dict[int, str] = {}
        self.received: dict[int, dict[int, float]] = {}
        self._collect(lambda: len(self.addrs) == count, 120)

    def _read(self, i: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put((i, line.strip()))

    def _collect(self, done: Callable[[], bool], deadline_s: float) -> bool:
        import queue

        end = time.monotonic() + deadline_s
        while not done():
            try:
                i, line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                return False
            kind, _, rest = line.partition(" ")
            if kind == "addr":
                self.addrs[i] = rest
            elif kind == "recv":
                n, at = rest.split()
                if n.lstrip("-").isdigit():
                    self.received.setdefault(int(n), {})[i] = float(at)
        return True

    def send(self, i: int, command: str) -> None:
        stdin = self.procs[i].stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(timeout=10)


def gossip_process_rows(sizes: NodeBenchSizes, rtt_p50: float, rtt_p99: float) -> list[BenchRow]:
    """Propagation to all of ``sizes.hosts`` separate processes (each dialing 4 random others,
    about the connection manager's low watermark), small messages from random publishers."""
    peers = _GossipPeers(sizes.hosts)
    count = sizes.hosts
    try:
        rng = random.Random(5)
        for i in range(count):
            for j in rng.sample([k for k in range(count) if k != i], min(4, count - 1)):
                peers.send(i, f"dial {peers.addrs[j]}")
        # Warm up until a message reaches everyone (meshes formed), then measure.
        for n in range(-20, 0):
            peers.send(rng.randrange(count), f"publish {n}")
            if peers._collect(lambda n=n: len(peers.received.get(n, {})) == count, 3):  # type: ignore[misc]
                break
        latencies, lost = [], 0
        for n in range(sizes.gossip_messages):
            sent = time.time()
            peers.send(rng.randrange(count), f"publish {n}")
            complete = peers._collect(
                lambda n=n: len(peers.received.get(n, {})) == count,  # type: ignore[misc]
                2,
            )
            got = peers.received.get(n, {})
            if not complete:
                lost += 1
            if got:
                latencies.append((max(got.values()) - sent) * 1000)
            time.sleep(0.05)
    finally:
        peers.close()
    g50, g99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    details: dict[str, float | int | str] = {
        "lost": lost,
        "messages": sizes.gossip_messages,
        "processes": count,
        "p99_ms": round(g99, 2),
    }
    return [
        make_row(
            AREA,
            f"gossip propagation to all p50 ({count} processes)",
            g50,
            "ms",
            "stream request/reply p50",
            rtt_p50,
        ),
        make_row(
            AREA,
            f"gossip propagation to all p99 ({count} processes)",
            g99,
            "ms",
            "stream request/reply p99",
            rtt_p99,
            target=f"≤ {GOSSIP_P99_TARGET_MS:g} ms",
            met=g99 <= GOSSIP_P99_TARGET_MS,
            details=details,
        ),
    ]


# ---------------------------------------------------------------- framed throughput


async def _throughput_mib_s(frames: int) -> tuple[float, float]:
    """(framed MiB/s, raw MiB/s) moving ``frames`` × 1 MiB one way, then a 1-byte ack."""
    payload = os.urandom(MIB)
    results: dict[str, float] = {}
    done = trio.Event()

    async def sink(stream: INetStream) -> None:
        try:
            mode = await stream.read(1)
            if mode == b"F":
                for _ in range(frames):
                    await read_frame(stream, max_size=2 * MIB, timeout_s=30)
            else:
                remaining = frames * MIB
                while remaining:
                    chunk = await stream.read(min(remaining, MIB))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            await stream.write(b"k")
        finally:
            await stream.close()

    a = build_host(HostConfig(key_seed=os.urandom(32)))
    b = build_host(HostConfig(key_seed=os.urandom(32)))
    async with running_host(a, LOOPBACK), running_host(b, LOOPBACK):
        b.set_stream_handler(SINK_PROTOCOL, sink)
        await dial(a, full_addrs(b)[0], timeout_s=5)
        for mode in (b"R", b"F", b"R", b"F"):  # interleaved; the best of two each
            stream = await a.new_stream(ID.from_base58(str(b.get_id())), [SINK_PROTOCOL])
            await stream.write(mode)
            t = time.perf_counter()
            for _ in range(frames):
                if mode == b"F":
                    await write_frame(stream, payload, timeout_s=30)
                else:
                    await stream.write(payload)
            assert await stream.read(1) == b"k"
            rate = frames / (time.perf_counter() - t)
            key = mode.decode()
            results[key] = max(results.get(key, 0.0), rate)
            await stream.close()
    done.set()
    return results["F"], results["R"]


def throughput_row(sizes: NodeBenchSizes) -> BenchRow:
    framed, raw = trio.run(_throughput_mib_s, sizes.frames)
    return make_row(
        AREA,
        "framed stream throughput (1 MiB frames)",
        framed,
        "MiB/s",
        "raw py-libp2p stream write/read",
        raw,
        target=f"≥ {FRAMED_VS_RAW_TARGET:.0%} of raw",
        met=framed / raw >= FRAMED_VS_RAW_TARGET if raw else None,
        details={"frames": sizes.frames},
    )


def run(ctx: BenchContext) -> list[BenchRow]:
    sizes = sizes_for(ctx)
    rows = process_rows(ctx, sizes)
    ctx.log("node: DHT on in-process hosts")
    dht_rows, rtt = trio.run(_network_rows, sizes)
    rows.extend(dht_rows)
    ctx.log(f"node: gossip between {sizes.hosts} processes")
    rows.extend(gossip_process_rows(sizes, statistics.median(rtt), percentile(rtt, 0.99)))
    ctx.log("node: framed throughput")
    rows.append(throughput_row(sizes))
    return rows


register(
    BenchArea(
        AREA,
        run,
        "node processes to full tables, RSS, DHT lookup, gossip propagation, framed throughput",
    )
)
