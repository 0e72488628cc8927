"""A testnet of real ``igor node run`` processes on 127.0.0.1.

Everything a later CLI invocation needs to drive the same testnet is in ``DIR/testnet.json``:
each node's name, port, peer ID, data dir, pid (with its start time, so a recycled pid is not
mistaken for the node), its arguments, and the agents launched by label. Each node's
stdout/stderr go to ``DIR/nX.log``. Waiting is always "poll a condition until a deadline".

Scale: :meth:`Testnet.up` forks the nodes from a preloaded fork server
(:mod:`testnet.zygote`) so that N nodes pay the ~1 s of imports once, not N times (later
restarts are ordinary processes); each node bootstraps from n1 and from up to two nodes started
before it (spreading n1's load); readiness and peer tables are polled in parallel, less often
for large testnets. With ``netns=True`` every node runs in its own network namespace on a
bridge (:mod:`testnet.netns`), and partitions are made by the kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from igor_p2p.errors import IgorError
from igor_p2p.node.admin_client import call_admin
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.services import default_peer_id
from testnet.zygote import Zygote, ZygoteError

T = TypeVar("T")

STATE_FILE = "testnet.json"
DEFAULT_DIR = Path("testnet-data")
NODE_COMMAND = (sys.executable, "-m", "igor_p2p.cli.main", "node", "run")
DEFAULT_NODE_ARGS: tuple[str, ...] = ("--log-format", "json", "--tick-interval", "0.1")
POLL_S = 0.1
START_DEADLINE_S = 60.0
CONNECT_DEADLINE_S = 60.0
STOP_GRACE_S = 10.0
ADMIN_TIMEOUT_S = 10.0
MAX_SOCKET_PATH = 107
NETNS_PORT = 4747
"""Every node listens on this port in its own namespace (each has its own IP)."""
STARTUP_RESPAWNS = 3
BOOTSTRAP_PEERS = 3
"""How many earlier nodes each node bootstraps from (n1 alone would get every first dial)."""
N1_BOOTSTRAPS = 16
"""Nodes n2…n16 always list n1; later ones pick among every earlier node."""
LARGE_TESTNET = 24
"""From this many nodes on, peer tables are polled every ``LARGE_POLL_S``, in parallel."""
LARGE_POLL_S = 0.5


class TestnetError(IgorError):
    """The testnet cannot do what was asked (not up, already up, unknown node, timeout)."""

    __test__ = False  # not a pytest test class


class TestnetTimeout(TestnetError):
    """A condition did not hold before its deadline."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def fixed_ports(base: int, count: int) -> list[int]:
    """``base`` … ``base + count - 1``, each checked free on 127.0.0.1 right now."""
    if not 1024 <= base <= 65535 - count + 1:
        raise TestnetError(f"--base-port must leave room for {count} ports in 1024…65535")
    ports = list(range(base, base + count))
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                raise TestnetError(f"port {port} is in use; pick another --base-port") from None
    return ports


def _port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    probe: Callable[[], T | None],
    deadline_s: float,
    what: str,
    describe: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``probe`` until it returns something truthy (typed errors count as "not yet")."""
    end = time.monotonic() + deadline_s
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (IgorError, OSError) as exc:
            if isinstance(exc, TestnetError) and not isinstance(exc, TestnetTimeout):
                raise
            last = exc
        if time.monotonic() >= end:
            raise TestnetTimeout(
                f"{what} not reached within {deadline_s} s (last: {last!r}) {describe()}"
            )
        time.sleep(POLL_S)


@dataclass
class NodeInfo:
    """One node of the testnet as recorded in ``testnet.json``."""

    name: str
    port: int
    peer_id: str
    data_dir: str
    log_path: str
    args: list[str] = field(default_factory=list)
    """Arguments after ``igor node run`` other than data dir, name, listen and bootstrap."""
    env: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    create_time: float | None = None
    paused: bool = False
    netns: str | None = None
    """The node's network namespace (``up(netns=True)``), else None (loopback)."""
    ip: str = "127.0.0.1"

    @property
    def listen(self) -> str:
        return f"/ip4/{self.ip}/tcp/{self.port}"

    @property
    def addr(self) -> str:
        return f"{self.listen}/p2p/{self.peer_id}"

    @property
    def admin_socket(self) -> Path:
        return DataDir(Path(self.data_dir)).admin_socket


@dataclass
class TestnetState:
    nodes: list[NodeInfo] = field(default_factory=list)
    agents: dict[str, str] = field(default_factory=dict)
    """Agent label (``a1``…) → DID."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TestnetState:
        raw = json.loads(text)
        return cls([NodeInfo(**n) for n in raw.get("nodes", [])], dict(raw.get("agents", {})))


def bootstrap_for(i: int, nodes: Sequence[NodeInfo], rng: random.Random) -> tuple[str, ...]:
    """Bootstrap addresses for ``nodes[i]``: n1 and up to two random earlier nodes for the
    first ``N1_BOOTSTRAPS``, then ``BOOTSTRAP_PEERS`` random earlier nodes (n1 among them)."""
    if i < N1_BOOTSTRAPS:
        earlier = [x.addr for x in nodes[1:i]]
        picked = rng.sample(earlier, min(BOOTSTRAP_PEERS - 1, len(earlier)))
        return (nodes[0].addr, *picked)
    return tuple(rng.sample([x.addr for x in nodes[:i]], BOOTSTRAP_PEERS))


class Testnet:
    """N ``igor node run`` processes under ``dir`` (state in ``dir/testnet.json``)."""

    __test__ = False

    def __init__(self, dir: str | Path = DEFAULT_DIR) -> None:
        self.dir = Path(dir).absolute()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.state = TestnetState()
        if self.state_path.exists():
            self.state = TestnetState.from_json(self.state_path.read_text())

    # ------------------------------------------------------------ state

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(self.state.to_json())
        os.replace(tmp, self.state_path)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.state.nodes]

    def node(self, name: str) -> NodeInfo:
        for n in self.state.nodes:
            if n.name == name:
                return n
        known = ", ".join(self.names) or "none"
        raise TestnetError(f"no node {name!r} in {self.dir} (nodes: {known})")

    def peer_id(self, name: str) -> str:
        return self.node(name).peer_id

    def name_of(self, peer_id: str) -> str | None:
        return next((n.name for n in self.state.nodes if n.peer_id == peer_id), None)

    # ------------------------------------------------------------ processes

    def alive(self, name: str) -> bool:
        info = self.node(name)
        proc = self._procs.get(name)
        if proc is not None and proc.pid == info.pid:
            return proc.poll() is None
        if info.pid is None or info.create_time is None:
            return False  # never signal a pid whose process we cannot tell apart (pid reuse)
        try:
            p = psutil.Process(info.pid)
            if abs(p.create_time() - info.create_time) > 0.5:
                return False
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def running(self) -> list[str]:
        """Names of nodes whose process is alive (paused ones included)."""
        return [n for n in self.names if self.alive(n)]

    def reachable(self) -> list[str]:
        """Names of nodes that are alive and not paused (their admin socket answers)."""
        return [n.name for n in self.state.nodes if not n.paused and self.alive(n.name)]

    def _spawn(
        self, info: NodeInfo, bootstrap: Sequence[str], zygote: Zygote | None = None
    ) -> None:
        """Start the node: forked from ``zygote`` when given, else a fresh process (inside
        its network namespace when it has one)."""
        args = ["node", "run", "-d", info.data_dir, "--name", info.name, "--listen", info.listen]
        args += info.args
        for addr in bootstrap:
            args += ["--bootstrap", addr]
        env = {**os.environ, **info.env, "PYTHONUNBUFFERED": "1"}
        env.pop("IGOR_DATA_DIR", None)
        pid: int | None = None
        if zygote is not None:
            try:
                pid = zygote.spawn(args, env, info.log_path, info.netns, f"igor-{info.name}")
            except ZygoteError:
                pid = None  # start it the ordinary way
        if pid is None:
            prefix = ["ip", "netns", "exec", info.netns] if info.netns else []
            with open(info.log_path, "ab") as log:
                proc = subprocess.Popen(
                    [*prefix, *NODE_COMMAND[:3], *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,  # survives the CLI invocation that started it
                )
            self._procs[info.name] = proc
            pid = proc.pid
        else:
            self._procs.pop(info.name, None)
        info.pid = pid
        info.paused = False
        try:
            info.create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            info.create_time = None
        self.save()

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = Path(self.node(name).log_path).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"\n--- {name} log ---\n" + "\n".join(text[-lines:])

    def wait_ready(self, name: str, deadline_s: float = START_DEADLINE_S) -> dict[str, Any]:
        """Poll the node's admin ``status`` until it answers (its peer ID checked)."""

        def probe() -> dict[str, Any] | None:
            if not self.alive(name):
                raise TestnetError(f"{name} exited during start-up{self.log_tail(name)}")
            status = self.admin(name, "status", timeout_s=5.0)
            if status["peer_id"] != self.peer_id(name):
                raise TestnetError(f"{name} answers with peer ID {status['peer_id']}")
            return status

        return wait_until(probe, deadline_s, f"{name} ready", lambda: self.log_tail(name))

    def up(
        self,
        n: int,
        node_args: Sequence[str] = DEFAULT_NODE_ARGS,
        *,
        env: Mapping[str, str] | None = None,
        deadline_s: float = START_DEADLINE_S + CONNECT_DEADLINE_S,
        base_port: int | None = None,
        netns: bool = False,
        preload: bool = True,
    ) -> float:
        """Start nodes n1…nN and wait until every peer table is complete. Returns the seconds
        from the first spawn to connected. With ``base_port``, node i listens on
        ``base_port + i - 1`` (else on free ports).

        n1 starts first; the others are forked at once from a preloaded fork server
        (``preload``), each bootstrapping from n1 and up to two random nodes before it. With
        ``netns``, each node gets its own network namespace on a bridge (:mod:`testnet.netns`;
        :class:`testnet.netns.NetnsUnavailable` when this machine can't make them).
        """
        if n < 1:
            raise TestnetError("a testnet needs at least one node")
        if self.state.nodes and self.running():
            raise TestnetError(f"a testnet is already up in {self.dir} (igor testnet down)")
        self.dir.mkdir(parents=True, exist_ok=True)
        fabric = None
        if netns:
            from testnet.netns import NetnsFabric

            fabric = NetnsFabric.create(self.dir, n)
        if fabric is not None:
            ports = [NETNS_PORT] * n
        else:
            ports = free_ports(n) if base_port is None else fixed_ports(base_port, n)
        nodes = []
        for i, port in enumerate(ports, start=1):
            data = self.dir / f"n{i}"
            socket_path = DataDir(data).admin_socket
            if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
                raise TestnetError(
                    f"{socket_path} is too long for a Unix socket; use a shorter --dir"
                )
            peer = default_peer_id(DataDir(data).ensure().node_keypair())
            nodes.append(
                NodeInfo(
                    name=f"n{i}",
                    port=port,
                    peer_id=peer,
                    data_dir=str(data),
                    log_path=str(self.dir / f"n{i}.log"),
                    args=list(node_args),
                    env=dict(env or {}),
                    netns=fabric.namespace(i) if fabric else None,
                    ip=fabric.ip(i) if fabric else "127.0.0.1",
                )
            )
        self.state = TestnetState(nodes=nodes)
        self.save()
        zygote = None
        if preload and n > 1:
            try:
                zygote = Zygote()
            except ZygoteError:
                zygote = None  # every node then starts as an ordinary process
        try:
            started = time.monotonic()
            end = started + deadline_s
            first, *rest = nodes
            self._spawn(first, (), zygote)
            if fabric is None:
                wait_until(
                    lambda: self.alive(first.name) and _port_accepts(first.port),
                    max(1.0, end - time.monotonic()),
                    "n1 listening",
                    lambda: self.log_tail(first.name),
                )
            else:
                self.wait_ready(first.name, max(1.0, end - time.monotonic()))
            rng = random.Random(n)
            for i, info in enumerate(rest, start=1):
                self._spawn(info, bootstrap_for(i, nodes, rng), zygote)
        finally:
            if zygote is not None:
                zygote.close()
        self._wait_all_ready(max(1.0, end - time.monotonic()))
        self.wait_connected(max(1.0, end - time.monotonic()))
        return time.monotonic() - started

    def _wait_all_ready(self, deadline_s: float) -> None:
        """Every node answers on its admin socket; one that exited during start-up is
        started again (as an ordinary process), up to ``STARTUP_RESPAWNS`` times."""
        end = time.monotonic() + deadline_s
        respawns: dict[str, int] = {}
        pending = set(self.names)
        while pending:
            answers = self.admin_many(sorted(pending), "status", timeout_s=5.0)
            for name, answer in answers.items():
                if isinstance(answer, dict) and answer.get("peer_id") == self.peer_id(name):
                    pending.discard(name)
                elif not self.alive(name):
                    if respawns.get(name, 0) >= STARTUP_RESPAWNS:
                        raise TestnetError(f"{name} exited during start-up{self.log_tail(name)}")
                    respawns[name] = respawns.get(name, 0) + 1
                    self._spawn(self.node(name), (self.state.nodes[0].addr,))
            if not pending:
                return
            if time.monotonic() >= end:
                tails = "".join(self.log_tail(x, 5) for x in sorted(pending)[:3])
                raise TestnetTimeout(f"{sorted(pending)} not ready within {deadline_s} s{tails}")
            time.sleep(self._poll_s())

    def _poll_s(self) -> float:
        return LARGE_POLL_S if len(self.state.nodes) >= LARGE_TESTNET else POLL_S

    def peers_up(self, name: str) -> set[str]:
        return {p["peer_id"] for p in self.admin(name, "peers", timeout_s=5.0) if p["up"]}

    def wait_connected(
        self, deadline_s: float = CONNECT_DEADLINE_S, names: Sequence[str] | None = None
    ) -> None:
        """Until each of ``names`` (default: every reachable node) sees all the others up."""
        group = list(names) if names is not None else self.reachable()
        ids = {self.peer_id(x) for x in group}
        last: dict[str, Any] = {}

        def complete() -> bool:
            pending = [x for x in group if last.get(x) is not True]
            for name, answer in self.admin_many(pending, "peers", timeout_s=5.0).items():
                if isinstance(answer, list):
                    up = {p["peer_id"] for p in answer if p["up"]}
                    last[name] = True if ids - {self.peer_id(name)} <= up else len(up)
                else:
                    last[name] = answer
            if len(group) >= LARGE_TESTNET and not all(v is True for v in last.values()):
                time.sleep(LARGE_POLL_S - POLL_S)
            return all(last.get(x) is True for x in group)

        def describe() -> str:
            out = []
            for x in group:
                value = last.get(x)
                if value is True:
                    continue
                out.append(f"{x}: {value} up" if isinstance(value, int) else f"{x}: {value!r}")
            return "; ".join(out) or "all complete"

        wait_until(complete, deadline_s, "complete peer tables", describe)

    def down(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every node (SIGCONT first for paused ones), SIGKILL after ``grace_s``."""
        alive = self.running()
        for name in alive:
            info = self.node(name)
            with contextlib.suppress(ProcessLookupError):
                if info.paused:
                    os.kill(info.pid, signal.SIGCONT)  # type: ignore[arg-type]
                os.kill(info.pid, signal.SIGTERM)  # type: ignore[arg-type]
            info.paused = False
        end = time.monotonic() + grace_s
        while time.monotonic() < end and any(self._reap(n) for n in alive):
            time.sleep(POLL_S)
        for name in alive:
            if self._reap(name):
                self._signal(name, signal.SIGKILL)
                self._wait_exit(name, 10.0)
        for info in self.state.nodes:
            info.pid = None
            info.create_time = None
            info.paused = False
        self.save()
        if self.netns:
            from testnet.netns import NetnsFabric

            fabric = NetnsFabric.load(self.dir)
            if fabric is not None:
                fabric.destroy()
            for info in self.state.nodes:  # the namespaces are gone: back to loopback
                info.netns, info.ip = None, "127.0.0.1"
            self.save()

    # ------------------------------------------------------------ kernel partitions (netns)

    @property
    def netns(self) -> bool:
        """True when the nodes run in their own network namespaces (``up(netns=True)``)."""
        return any(info.netns for info in self.state.nodes)

    def _fabric(self):  # type: ignore[no-untyped-def]
        from testnet.netns import NetnsFabric

        fabric = NetnsFabric.load(self.dir)
        if fabric is None or not self.netns:
            raise TestnetError(f"the testnet in {self.dir} does not run in network namespaces")
        return fabric

    def kernel_cut(self, name: str, peers: Sequence[str]) -> None:
        """In netns mode: ``name``'s kernel drops its packets to ``peers`` (blackhole routes),
        replacing its earlier cut; an empty list heals it."""
        index = {n: i for i, n in enumerate(self.names, start=1)}
        fabric = self._fabric()
        if peers:
            fabric.cut(index[name], [index[p] for p in peers])
        else:
            fabric.heal(index[name])

    def _reap(self, name: str) -> bool:
        """True while the node's process is alive (reaps it when it is our child)."""
        proc = self._procs.get(name)
        if proc is not None:
            return proc.poll() is None
        return self.alive(name)

    def _signal(self, name: str, sig: signal.Signals) -> None:
        info = self.node(name)
        if info.pid is None or not self.alive(name):
            raise TestnetError(f"{name} is not running")
        os.kill(info.pid, sig)

    def _wait_exit(self, name: str, deadline_s: float) -> None:
        wait_until(lambda: not self._reap(name), deadline_s, f"{name} exit")

    def stop(self, name: str, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the node (a clean stop: agents finish their tick and commit)."""
        info = self.node(name)
        self._signal(name, signal.SIGTERM)
        self._wait_exit(name, grace_s)
        info.pid = None
        self.save()

    def kill(self, name: str) -> None:
        """SIGKILL the node and wait until it is gone."""
        info = self.node(name)
        self._signal(name, signal.SIGKILL)
        self._wait_exit(name, 10.0)
        info.pid = None
        info.paused = False
        self.save()

    def start(self, name: str, bootstrap: Sequence[str] | None = None) -> None:
        """Start a stopped node again: same data dir, port and arguments (so the same peer
        ID); it bootstraps from ``bootstrap``, by default every other running node (``()``:
        none, only the peers in its known-peers file). Does not wait."""
        info = self.node(name)
        if self.alive(name):
            raise TestnetError(f"{name} is already running")
        if bootstrap is None:
            bootstrap = [self.node(x).addr for x in self.running() if x != name]
            if not bootstrap and name != self.names[0]:
                bootstrap = [self.state.nodes[0].addr]
        self._spawn(info, bootstrap)

    def restart(self, name: str, *, wait: bool = True) -> None:
        """Start a stopped node again (see :meth:`start`); with ``wait``, until it answers."""
        self.start(name)
        if wait:
            self.wait_ready(name)

    def pause(self, name: str) -> None:
        self._signal(name, signal.SIGSTOP)
        self.node(name).paused = True
        self.save()

    def unpause(self, name: str) -> None:
        self._signal(name, signal.SIGCONT)
        self.node(name).paused = False
        self.save()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP every running, unpaused node for the block, then SIGCONT them: the
        histories and stores read inside form one consistent cut (a node stopped between a
        store commit and its history line only lacks that line)."""
        stopped = []
        try:
            for info in self.state.nodes:
                if not info.paused and info.pid is not None and self.alive(info.name):
                    os.kill(info.pid, signal.SIGSTOP)
                    stopped.append(info.pid)
            yield
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    # ------------------------------------------------------------ admin

    def admin(
        self,
        name: str,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float = ADMIN_TIMEOUT_S,
    ) -> Any:
        """One admin call to node ``name``."""
        return call_admin(self.node(name).admin_socket, method, params, timeout_s=timeout_s)

    def admin_many(
        self,
        names: Sequence[str],
        method: str,
        params: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None = None,
        *,
        timeout_s: float = ADMIN_TIMEOUT_S,
    ) -> dict[str, Any]:
        """The same call on several nodes at once; each value is a result or the exception."""

        def one(name: str) -> Any:
            p = params(name) if callable(params) else params
            try:
                return self.admin(name, method, p, timeout_s=timeout_s)
            except (IgorError, OSError) as exc:
                return exc

        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    def status(self) -> list[dict[str, Any]]:
        """One row per node: name, peer ID, address, process state, agents ticking, peers up."""
        rows = []
        live = self.reachable()
        answers = self.admin_many(live, "status", timeout_s=5.0)
        agents = self.admin_many(live, "agents", timeout_s=5.0)
        for info in self.state.nodes:
            alive = self.alive(info.name)
            row: dict[str, Any] = {
                "name": info.name,
                "peer_id": info.peer_id,
                "addr": info.addr,
                "pid": info.pid if alive else None,
                "state": ("paused" if info.paused else "up") if alive else "down",
                "agents": [],
                "peers_up": None,
                "ticks_total": None,
                "peers_down": [],
            }
            status = answers.get(info.name)
            if isinstance(status, dict):
                row["peers_up"] = status["peers_up"]
                row["ticks_total"] = status["ticks_total"]
                row["peers_down"] = sorted(
                    self.name_of(p["peer_id"]) or p["peer_id"]
                    for p in status.get("peers", [])
                    if not p["up"]
                )
            elif isinstance(status, Exception):
                row["error"] = f"{type(status).__name__}: {status}"
            listing = agents.get(info.name)
            if isinstance(listing, list):
                row["agents"] = [
                    self.label_of(a["agent"]) for a in listing if a["state"] == "ACTIVE_OWNER"
                ]
            rows.append(row)
        return rows

    def label_of(self, did: str) -> str:
        for label, d in self.state.agents.items():
            if d == did:
                return label
        return did

    def owners(self, did: str) -> list[str]:
        """Reachable nodes whose store says they are ACTIVE_OWNER of ``did``."""
        live = self.reachable()
        out = []
        for name, listing in self.admin_many(live, "agents", timeout_s=5.0).items():
            if isinstance(listing, list) and any(
                a["agent"] == did and a["state"] == "ACTIVE_OWNER" for a in listing
            ):
                out.append(name)
        return out

    def launch(self, name: str, agent: str = "wanderer", *, budget: int = 1_000_000) -> str:
        """Launch a shipped example (or a .wasm/.wat path) on ``name``; returns its DID."""
        from igor_p2p.agent.source import load_agent_manifest, load_agent_source

        wasm = load_agent_source(agent)
        manifest = load_agent_manifest(agent)
        result = self.admin(
            name,
            "launch",
            {"wasm": wasm.hex(), "manifest": manifest.canonical_bytes.hex(), "budget": budget},
            timeout_s=30.0,
        )
        return str(result["agent"])

    def launch_labelled(
        self, label: str, name: str, agent: str = "wanderer", *, budget: int = 1_000_000
    ) -> str:
        did = self.launch(name, agent, budget=budget)
        self.state.agents[label] = did
        self.save()
        return did

    def logs(self, name: str) -> Path:
        """The path of the node's log file (stdout and stderr)."""
        return Path(self.node(name).log_path)


__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_NODE_ARGS",
    "STATE_FILE",
    "NodeInfo",
    "Testnet",
    "TestnetError",
    "TestnetState",
    "TestnetTimeout",
    "fixed_ports",
    "free_ports",
    "wait_until",
]
