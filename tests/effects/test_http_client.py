"""The HTTP client agents' requests go through: the allowlist on every hop and on every address a
name resolves to, and Go Igor's limits and error codes — against a real server on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterator

import pytest

from igor_p2p.agent.effect_policy import HttpPolicy, IPAddress, http_policy
from igor_p2p.agent.effects import HttpCode, HttpRequest, HttpResult
from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.effects.http import Hop, HttpClient

from .server import FeedServer, Route, http_server

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with http_server() as s:
        yield s


def policy(hosts: list[str], *, timeout_ms: int = 5000, max_bytes: int = 1 << 20) -> HttpPolicy:
    options = {"allowed_hosts": hosts, "timeout_ms": timeout_ms, "max_response_bytes": max_bytes}
    manifest = {"capabilities": {"http": {"version": 1, "options": options}}}
    p = http_policy(parse_manifest(json.dumps(manifest).encode()))
    assert p is not None
    return p


def resolver(names: dict[str, str]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in names:
            raise OSError(f"unknown host {host}")
        return [ipaddress.ip_address(names[host])]

    return resolve


def get(url: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpRequest:
    return HttpRequest("GET", url, headers, b"", 1 << 20)


async def request(client: HttpClient, req: HttpRequest, timeout_s: float = 5.0) -> HttpResult:
    hop = await client.prepare(req, timeout_s)
    if isinstance(hop, HttpResult):
        return hop
    assert isinstance(hop, Hop)
    return await client.perform(req, hop, KEY, timeout_s)


async def test_a_listed_address_is_reached_and_gets_the_idempotency_key(
    server: FeedServer,
) -> None:
    server.routes["/price"] = Route(200, b"42\n")
    result = await request(HttpClient(policy(["127.0.0.1"])), get(f"{server.base}/price"))
    assert (result.code, result.body) == (200, b"42\n")
    assert server.requests("/price")[0].headers["idempotency-key"] == KEY


async def test_a_host_not_in_the_allowlist_is_refused_before_anything_is_sent(
    server: FeedServer,
) -> None:
    client = HttpClient(policy(["api.example.com"]), resolver({"api.example.com": "127.0.0.1"}))
    result = await request(client, get(f"{server.base}/price"))
    assert result.code == HttpCode.NOT_ALLOWED
    assert server.seen == []


async def test_a_name_that_resolves_to_loopback_is_refused(server: FeedServer) -> None:
    client = HttpClient(policy(["feed.example"]), resolver({"feed.example": "127.0.0.1"}))
    result = await request(client, get(f"http://feed.example:{server.port}/price"))
    assert result.code == HttpCode.NOT_ALLOWED
    assert server.seen == []


async def test_a_name_reaches_loopback_when_the_address_is_listed_too(server: FeedServer) -> None:
    server.routes["/price"] = Route(200, b"7")
    client = HttpClient(
        policy(["feed.example", "127.0.0.0/8"]), resolver({"feed.example": "127.0.0.1"})
    )
    result = await request(client, get(f"http://feed.example:{server.port}/price"))
    assert (result.code, result.body) == (200, b"7")
    # The name went in the Host header; the connection went to the checked address.
    assert server.requests("/price")[0].headers["host"] == f"feed.example:{server.port}"


async def test_an_empty_allowlist_allows_public_hosts_but_never_loopback(
    server: FeedServer,
) -> None:
    result = await request(HttpClient(policy([])), get(f"{server.base}/price"))
    assert result.code == HttpCode.NOT_ALLOWED
    assert server.seen == []


async def test_a_listed_localhost_reaches_loopback(server: FeedServer) -> None:
    server.routes["/price"] = Route(200, b"1")
    client = HttpClient(policy(["localhost"]), resolver({"localhost": "127.0.0.1"}))
    result = await request(client, get(f"http://localhost:{server.port}/price"))
    assert result.code == 200


async def test_a_redirect_to_a_host_that_is_not_allowed_is_refused(server: FeedServer) -> None:
    server.routes["/go"] = Route(302, b"", (("Location", "http://evil.example/steal"),))
    client = HttpClient(policy(["127.0.0.1"]), resolver({"evil.example": "127.0.0.1"}))
    result = await request(client, get(f"{server.base}/go"))
    assert result.code == HttpCode.NOT_ALLOWED
    assert [s.path for s in server.seen] == ["/go"]


async def test_a_redirect_to_an_address_that_is_not_allowed_is_refused(
    server: FeedServer,
) -> None:
    server.routes["/go"] = Route(307, b"", (("Location", "http://10.1.2.3/inside"),))
    result = await request(HttpClient(policy(["127.0.0.1"])), get(f"{server.base}/go"))
    assert result.code == HttpCode.NOT_ALLOWED


async def test_an_allowed_redirect_is_followed_and_credentials_stay_on_their_origin(
    server: FeedServer,
) -> None:
    server.routes["/old"] = Route(301, b"", (("Location", f"http://localhost:{server.port}/new"),))
    server.routes["/new"] = Route(200, b"moved")
    client = HttpClient(policy(["127.0.0.1", "localhost"]), resolver({"localhost": "127.0.0.1"}))
    req = get(f"{server.base}/old", (("Authorization", "Bearer s3cret"), ("X-Trace", "1")))
    result = await request(client, req)
    assert (result.code, result.body) == (200, b"moved")
    old, new = server.requests("/old")[0], server.requests("/new")[0]
    assert old.headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in new.headers and new.headers["x-trace"] == "1"
    assert new.headers["idempotency-key"] == KEY


async def test_a_response_over_the_limit_is_too_big_with_a_size_hint(server: FeedServer) -> None:
    server.routes["/big"] = Route(200, b"x" * 5000)
    server.routes["/stream"] = Route(200, b"y" * 9000, chunked=True)
    client = HttpClient(policy(["127.0.0.1"], max_bytes=4096))
    declared = await request(client, get(f"{server.base}/big"))
    assert (declared.code, declared.size_hint) == (HttpCode.TOO_BIG, 5000)
    streamed = await request(client, get(f"{server.base}/stream"))
    assert streamed.code == HttpCode.TOO_BIG and streamed.size_hint > 4096


async def test_a_slow_response_times_out(server: FeedServer) -> None:
    release = threading.Event()
    server.routes["/slow"] = Route(200, b"late", hold=release)
    client = HttpClient(policy(["127.0.0.1"], timeout_ms=300))
    try:
        result = await request(client, get(f"{server.base}/slow"), timeout_s=0.3)
    finally:
        release.set()
    assert result.code == HttpCode.TIMEOUT


async def test_nothing_listening_is_a_network_error(server: FeedServer) -> None:
    client = HttpClient(policy(["127.0.0.1"]))
    result = await request(client, get("http://127.0.0.1:1/nothing"))
    assert result.code == HttpCode.NETWORK


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "http:///nohost"])
async def test_other_schemes_and_hostless_urls_are_not_allowed(url: str) -> None:
    result = await request(HttpClient(policy(["127.0.0.1"])), get(url))
    assert result.code in (HttpCode.NOT_ALLOWED, HttpCode.NETWORK)
    assert result.code == HttpCode.NOT_ALLOWED or url == "http:///nohost"


async def test_an_unresolvable_name_is_a_network_error() -> None:
    client = HttpClient(policy(["nowhere.example"]), resolver({}))
    result = await request(client, get("http://nowhere.example/x"))
    assert result.code == HttpCode.NETWORK
