"""docs/deploy.md's files: the systemd unit parses, the compose file describes a 5-node testnet
whose commands, run here on loopback in place of the containers, do form one network."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from igor_p2p.node.admin_client import call_admin
from testnet.harness import free_ports

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
IGOR_BIN = Path(sys.executable).with_name("igor")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (DEPLOY / "igor-node.service").read_text()
    assert "ExecStart=/opt/igor/.venv/bin/igor node run" in unit
    local = tmp_path / "igor-node.service"
    local.write_text(unit.replace("/opt/igor/.venv/bin/igor", str(IGOR_BIN)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "igor-node.service" not in done.stderr, done.stderr


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_has_five_nodes_on_their_own_addresses() -> None:
    spec = compose()
    services = spec["services"]
    assert sorted(services) == ["n1", "n2", "n3", "n4", "n5"]
    for name, svc in services.items():
        ip = svc["networks"]["igor"]["ipv4_address"]
        command = " ".join(svc["command"])
        assert f"--announce /ip4/{ip}/tcp/4747" in command, name
        assert f"--name {name}" in command
        assert svc["build"]["dockerfile"] == "docs/deploy/Containerfile"
        if name != "n1":
            assert "--bootstrap /ip4/172.28.0.11/tcp/4747/p2p/$$(cat /ids/n1)" in command
    subnet = spec["networks"]["igor"]["ipam"]["config"][0]["subnet"]
    assert subnet == "172.28.0.0/24"


def test_containerfile_builds_from_the_repository() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    for needed in ("libgmp-dev", "COPY igor_p2p", "pip install", "ENTRYPOINT"):
        assert needed in text


@pytest.mark.e2e
def test_compose_commands_form_one_network_when_run_on_loopback(tmp_path: Path) -> None:
    """Each service's command as the container would run it, with /data, /ids and the
    addresses mapped to this machine, and compose's ``restart: on-failure`` as a shell loop (a
    node that starts before n1 listens exits and is started again): every node ends up seeing
    the other four."""
    spec = compose()
    services = spec["services"]
    assert spec["x-node"]["restart"] == "on-failure"
    ports = dict(zip(services, free_ports(len(services)), strict=True))
    ip_port = {svc["networks"]["igor"]["ipv4_address"]: ports[n] for n, svc in services.items()}
    (tmp_path / "ids").mkdir()
    procs = []
    try:
        for name, svc in services.items():
            command = " ".join(svc["command"]).replace("$$", "$")
            command = command.replace("/ids/", f"{tmp_path}/ids/").replace(
                "/data/", f"{tmp_path}/data/"
            )
            command = command.replace("/ip4/0.0.0.0/tcp/4747", f"/ip4/127.0.0.1/tcp/{ports[name]}")
            for ip, port in ip_port.items():
                command = command.replace(f"/ip4/{ip}/tcp/4747", f"/ip4/127.0.0.1/tcp/{port}")
            command = re.sub(r"\bigor ", f"{IGOR_BIN} ", command)
            command = f"until sh -c {shlex.quote(command)}; do sleep 1; done"
            log = (tmp_path / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    ["sh", "-c", command],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        socket = tmp_path / "data" / "n1" / "admin.sock"
        deadline = time.monotonic() + 90
        up = 0
        while time.monotonic() < deadline:
            try:
                up = sum(1 for p in call_admin(socket, "peers", None, timeout_s=2) if p["up"])
            except Exception:
                up = 0
            if up == 4:
                break
            time.sleep(0.5)
        logs = "".join((tmp_path / f"{n}.log").read_text()[-500:] for n in services)
        assert up == 4, logs
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
