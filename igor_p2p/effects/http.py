"""HTTP for agents: the allowlist on every hop, pinned addresses, and Go Igor's limits and codes.

One request runs in two steps, so that nothing is sent before the effect's INTENT is durable:

1. :meth:`HttpClient.prepare` (no side effect): parse the URL (``http`` or ``https`` only), check
   the host against ``allowed_hosts``, resolve it and check *every* address it resolves to
   (a loopback, private or other non-public address only if listed; see
   :mod:`igor_p2p.agent.effect_policy`). A refusal is ``-3``; a failed resolution ``-1``.
2. :meth:`HttpClient.perform`: connect to the address checked in step 1 (never resolving the name
   again, so DNS cannot be rebound in between), with the ``Host`` header and TLS server name of
   the URL, and the ``Idempotency-Key`` header. Redirects are followed here, by hand, at most
   :data:`MAX_REDIRECTS`: each ``Location`` goes through step 1's checks again (``-3`` for a
   redirect to a host that is not allowed); ``Authorization`` and ``Cookie`` are dropped when a
   redirect leaves the origin. The whole request (every hop, the body) must finish within the
   timeout (``-4``); a body larger than ``max_response_bytes`` is cut off (``-5`` with a size
   hint); any other failure is ``-1``.

The client is httpx (already a py-libp2p dependency) on trio through anyio; a fresh client per
request, so no connection is ever shared between agents or between TLS server names.
"""

from __future__ import annotations

import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import trio

from igor_p2p.agent.effect_policy import HttpPolicy, IPAddress, parse_address
from igor_p2p.agent.effects import HttpCode, HttpRequest, HttpResult

MAX_REDIRECTS = 10
DROPPED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key", "upgrade"}
)
"""Request headers the host sets itself (an agent's are dropped)."""
CROSS_ORIGIN_DROPPED = frozenset({"authorization", "cookie", "proxy-authorization"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""``(host, port) -> addresses``; the node's is :func:`system_resolve`."""


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to (getaddrinfo in a worker thread)."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for info in infos:
        address = parse_address(str(info[4][0]).split("%")[0])
        if address is not None and address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class Hop:
    """One request target, checked: the URL and the address to connect to."""

    url: httpx.URL
    address: IPAddress


class Refused(Exception):
    """Raised inside this module with the hostcall code a check ended in."""

    def __init__(self, code: HttpCode) -> None:
        super().__init__(code.name)
        self.code = code


_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


class HttpClient:
    """Performs agents' HTTP requests under one manifest's ``http`` policy."""

    def __init__(
        self,
        policy: HttpPolicy,
        resolve: Resolver = system_resolve,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.resolve = resolve
        self.ssl_context = ssl_context

    async def check_url(self, url: httpx.URL) -> Hop:
        """Step 1 for one URL; raises :class:`Refused`."""
        if url.scheme not in ("http", "https") or not url.host:
            raise Refused(HttpCode.NOT_ALLOWED)
        host = url.host
        if not self.policy.host_allowed(host):
            raise Refused(HttpCode.NOT_ALLOWED)
        port = url.port or (443 if url.scheme == "https" else 80)
        literal = parse_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await self.resolve(host, port)
            except OSError:
                raise Refused(HttpCode.NETWORK) from None
        if not addresses:
            raise Refused(HttpCode.NETWORK)
        for address in addresses:
            if not self.policy.address_allowed(address, name=host):
                raise Refused(HttpCode.NOT_ALLOWED)
        return Hop(url, addresses[0])

    async def prepare(self, request: HttpRequest, timeout_s: float) -> Hop | HttpResult:
        """Check the request before anything is sent; the first hop, or the refusal."""
        try:
            url = httpx.URL(request.url)
        except (httpx.InvalidURL, ValueError, TypeError):
            return HttpResult(HttpCode.NETWORK)
        with trio.move_on_after(timeout_s) as scope:
            try:
                return await self.check_url(url)
            except Refused as refused:
                return HttpResult(refused.code)
        assert scope.cancelled_caught
        return HttpResult(HttpCode.TIMEOUT)

    async def perform(
        self, request: HttpRequest, first: Hop, key: str, timeout_s: float
    ) -> HttpResult:
        """Step 2: send it (following redirects), within ``timeout_s``."""
        result: HttpResult = HttpResult(HttpCode.TIMEOUT)
        with trio.move_on_after(timeout_s):
            try:
                result = await self._follow(request, first, key)
            except Refused as refused:
                result = HttpResult(refused.code)
            except httpx.TimeoutException:
                result = HttpResult(HttpCode.TIMEOUT)
            except (httpx.HTTPError, OSError, ssl.SSLError, ValueError):
                result = HttpResult(HttpCode.NETWORK)
        return result

    async def _follow(self, request: HttpRequest, hop: Hop, key: str) -> HttpResult:
        method = request.method.upper()
        body: bytes | None = request.body
        headers = [(k, v) for k, v in request.headers if k.lower() not in DROPPED_HEADERS]
        headers.append(("Idempotency-Key", key))
        origin = _origin(hop.url)
        async with httpx.AsyncClient(
            verify=self.ssl_context or _ssl_context(),
            follow_redirects=False,
            trust_env=False,
            timeout=None,
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                status, location, payload = await self._send(client, method, hop, headers, body)
                if status not in REDIRECTS or location is None:
                    return HttpResult(status, payload) if isinstance(payload, bytes) else payload
                try:
                    target = hop.url.join(location)
                except (httpx.InvalidURL, ValueError):
                    raise Refused(HttpCode.NETWORK) from None
                if status == 303 or (status in (301, 302) and method == "POST"):
                    method, body = ("HEAD" if method == "HEAD" else "GET"), None
                    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
                hop = await self.check_url(target)
                if _origin(target) != origin:
                    headers = [(k, v) for k, v in headers if k.lower() not in CROSS_ORIGIN_DROPPED]
                    origin = _origin(target)
        raise Refused(HttpCode.NETWORK)  # too many redirects

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        hop: Hop,
        headers: list[tuple[str, str]],
        body: bytes | None,
    ) -> tuple[int, str | None, bytes | HttpResult]:
        url = hop.url
        pinned = url.copy_with(host=str(hop.address))
        netloc = url.netloc.decode("ascii")
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        wire = httpx.Request(
            method,
            pinned,
            headers=[("Host", netloc), *headers],
            content=body if body else None,
            extensions=extensions,
        )
        response = await client.send(wire, stream=True)
        try:
            if response.status_code in REDIRECTS and "location" in response.headers:
                return response.status_code, response.headers["location"], b""
            limit = self.policy.max_response_bytes
            declared = _content_length(response)
            if declared is not None and declared > limit:
                return response.status_code, None, HttpResult(HttpCode.TOO_BIG, size_hint=declared)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    return response.status_code, None, HttpResult(HttpCode.TOO_BIG, size_hint=size)
                chunks.append(chunk)
            return response.status_code, None, b"".join(chunks)
        finally:
            await response.aclose()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("content-length")
    if raw is None or response.headers.get("content-encoding"):
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def effect_timeout_s(policy: HttpPolicy, deadline_s: float) -> float:
    """The time one request may take: the manifest's timeout, but never past ``deadline_s``
    seconds from now (what is left of the tick's watchdog)."""
    return max(0.0, min(policy.timeout_ms / 1000, deadline_s if math.isfinite(deadline_s) else 1e9))
