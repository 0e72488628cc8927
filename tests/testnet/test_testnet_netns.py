"""``igor testnet up --netns``: nodes in their own network namespaces, partitions by the kernel."""

from __future__ import annotations

import subprocess

import pytest
from harness_helpers import running_testnet, scratch

from testnet.harness import wait_until
from testnet.nemesis import NemesisStep
from testnet.nemesis_runner import NemesisRunner
from testnet.netns import NetnsUnavailable, check_available

pytestmark = pytest.mark.e2e


def _namespaces() -> str:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return done.stdout


def _up(peers: list[dict[str, object]]) -> set[object]:
    return {p["name"] for p in peers if p["up"]}


def test_a_kernel_partition_silences_peers_without_closing_connections() -> None:
    try:
        check_available()
    except NetnsUnavailable:
        # Where namespaces can't be made, asking for them is a clear error, not a hang.
        with scratch() as root, running_testnet(root) as tn, pytest.raises(NetnsUnavailable):
            tn.up(2, netns=True)
        return
    with scratch() as root, running_testnet(root) as tn:
        tn.up(4, netns=True)
        assert [n.ip for n in tn.state.nodes] == [f"10.213.0.{i + 2}" for i in range(4)]
        assert all(n.netns and n.netns in _namespaces() for n in tn.state.nodes)
        runner = NemesisRunner(tn)
        runner.apply(NemesisStep(0.0, "partition", {"groups": "n1,n2/n3,n4"}))
        wait_until(
            lambda: not _up(tn.admin("n1", "peers")) & {"n3", "n4"},
            20,
            "n1 hears nothing from n3 and n4",
        )
        assert _up(tn.admin("n1", "peers")) == {"n2"}
        # The kernel drops the packets and nobody closes anything: n1 still holds its
        # connections across the cut (the fault gate would have closed them), it just hears
        # nothing on them, as over a real network.
        status = tn.admin("n1", "status")
        assert status["peers_known"] == 3 and status["connections"] >= 2
        runner.apply(NemesisStep(0.0, "heal", {}))
        tn.wait_connected(30)
        names = [n.netns for n in tn.state.nodes]
        tn.down(grace_s=5.0)
        assert not any(name and name in _namespaces() for name in names)
