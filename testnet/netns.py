"""One network namespace per node, joined by veth links on a bridge; partitions by the kernel.

``igor testnet up --netns`` puts node *i* in namespace ``igt-<tag>-<i>`` with address
``10.213.x.y/16`` on ``eth0``, whose other end is enslaved to the bridge ``igb<tag>`` (``<tag>``
comes from the testnet directory, so several testnets can coexist). A partition is a set of
``blackhole`` routes in the cut nodes' namespaces: their packets to the other side are
dropped by the kernel, so TCP sees what it sees on a real network — existing connections stall
(no RST, no FIN), new dials fail — instead of the application-level fault gate refusing
connections. Message faults (drop, delay, duplicate, reorder) stay with the fault gate.

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2; :class:`NetnsUnavailable` says what is
missing. The namespaces and the bridge are recorded in ``DIR/netns.json`` and removed by
:meth:`NetnsFabric.destroy` (``igor testnet down``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from igor_p2p.errors import IgorError

STATE_FILE = "netns.json"
SUBNET_PREFIX = "10.213"
PREFIX_LEN = 16
IP_TIMEOUT_S = 20.0


class NetnsUnavailable(IgorError):
    """Network namespaces cannot be created here (not root, no iproute2, kernel refused)."""


def _run(args: Sequence[str], stdin: str | None = None) -> None:
    try:
        done = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=IP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsUnavailable(f"{' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")


def check_available() -> None:
    """Raise :class:`NetnsUnavailable` with the reason when namespaces can't be made here."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        raise NetnsUnavailable("network namespaces need Linux")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (run as root, or drop --netns)")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("the ip command (iproute2) is not installed")


def tag_for(directory: Path) -> str:
    return hashlib.sha256(str(directory.absolute()).encode()).hexdigest()[:6]


@dataclass
class NetnsFabric:
    """The namespaces, veth links and bridge of one testnet."""

    directory: Path
    tag: str
    count: int
    created: list[str] = field(default_factory=list)
    """Namespaces made so far (for cleanup after a partial failure)."""

    @property
    def bridge(self) -> str:
        return f"igb{self.tag}"

    def namespace(self, i: int) -> str:
        return f"igt-{self.tag}-{i}"

    def veth(self, i: int) -> str:
        return f"igv{self.tag}{i}"

    @staticmethod
    def ip(i: int) -> str:
        return f"{SUBNET_PREFIX}.{i // 250}.{i % 250 + 1}"

    @classmethod
    def create(cls, directory: Path, count: int) -> NetnsFabric:
        """Make the bridge and ``count`` namespaces (nodes 1…count); all or nothing."""
        check_available()
        if count > 250 * 250:
            raise NetnsUnavailable("too many nodes for one /16")
        fabric = cls(directory.absolute(), tag_for(directory), count)
        fabric.destroy()  # leftovers of an earlier run in the same directory
        try:
            _run(["ip", "link", "add", fabric.bridge, "type", "bridge"])
            _run(["ip", "link", "set", fabric.bridge, "up"])
            for i in range(1, count + 1):
                fabric._add_node(i)
        except NetnsUnavailable:
            fabric.destroy()
            raise
        fabric.save()
        return fabric

    def _add_node(self, i: int) -> None:
        ns, veth = self.namespace(i), self.veth(i)
        _run(["ip", "netns", "add", ns])
        self.created.append(ns)
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _run(["ip", "link", "set", veth, "master", self.bridge, "up"])
        script = f"addr add {self.ip(i)}/{PREFIX_LEN} dev eth0\nlink set eth0 up\nlink set lo up\n"
        _run(["ip", "-n", ns, "-batch", "-"], stdin=script)

    def save(self) -> None:
        state = {"tag": self.tag, "count": self.count, "namespaces": self.created}
        (self.directory / STATE_FILE).write_text(json.dumps(state))

    @classmethod
    def load(cls, directory: Path) -> NetnsFabric | None:
        try:
            state = json.loads((directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        fabric = cls(directory.absolute(), str(state["tag"]), int(state["count"]))
        fabric.created = [str(n) for n in state.get("namespaces", [])]
        return fabric

    def cut(self, i: int, others: Iterable[int]) -> None:
        """Node ``i`` drops every packet to the ``others`` (replacing its earlier cut)."""
        lines = ["route flush type blackhole"]
        lines += [f"route replace blackhole {self.ip(j)}/32" for j in others]
        _run(["ip", "-n", self.namespace(i), "-batch", "-"], stdin="\n".join(lines) + "\n")

    def heal(self, i: int) -> None:
        _run(["ip", "-n", self.namespace(i), "route", "flush", "type", "blackhole"])

    def destroy(self) -> None:
        """Remove the namespaces (their veth ends go with them) and the bridge; quiet."""
        names = set(self.created) | {self.namespace(i) for i in range(1, self.count + 1)}
        existing = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
        for ns in sorted(names & existing):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        self.created.clear()
        (self.directory / STATE_FILE).unlink(missing_ok=True)
