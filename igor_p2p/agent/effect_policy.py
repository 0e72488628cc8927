"""The manifest options of the two effect capabilities, parsed and checked (pure).

``http``: ``allowed_hosts`` (list of host names, IP addresses or CIDR networks; empty or absent =
any public host), ``timeout_ms`` (default 10,000) and ``max_response_bytes`` (default 1 MiB).
``x402``: ``allowed_recipients`` (empty or absent = any) and ``max_payment_microcents`` (0 or
absent = no limit). Option names match ignoring ASCII case, as the rest of the manifest.

Addresses: a request may reach a *public* address (``ipaddress``'s ``is_global``) of an allowed
host. A loopback, private, link-local or otherwise non-global address is reached only when that
address (or a network containing it) is itself listed in ``allowed_hosts``: a listed *name* never
grants one, so a name that resolves to 127.0.0.1 is refused (docs/effects.md). The one exception
is ``localhost`` (RFC 6761: always loopback): listing it grants the loopback addresses, so Go
Igor's demo manifests (``"allowed_hosts": ["localhost"]``) work unchanged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from igor_p2p.agent.manifest import INT64_MAX, Manifest, ManifestError

DEFAULT_TIMEOUT_MS = 10_000
MAX_TIMEOUT_MS = 120_000
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
MAX_RESPONSE_CEILING_BYTES = 16 * 1024 * 1024
MAX_LIST_ITEMS = 256
MAX_HOST_CHARS = 253

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class HttpPolicy:
    names: frozenset[str]
    """Allowed host names, lower case."""
    networks: tuple[IPNetwork, ...]
    """Listed addresses and networks (the only way to a non-public address)."""
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def any_host(self) -> bool:
        return not self.names and not self.networks

    def host_allowed(self, host: str) -> bool:
        """Whether the URL's host (a name or an IP literal) is allowed, before resolution."""
        address = parse_address(host)
        if address is None:
            return self.any_host or host.lower().rstrip(".") in self.names
        return self.address_allowed(address, listed_only=not self.any_host)

    def address_allowed(
        self, address: IPAddress, *, listed_only: bool = False, name: str = ""
    ) -> bool:
        """Whether a (resolved) address may be connected to; ``name`` is the host it was
        resolved from (a listed ``localhost`` grants the loopback addresses)."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return True
        if address.is_loopback and _is_localhost(name) and _is_localhost_listed(self.names):
            return True
        return not listed_only and address.is_global


@dataclass(frozen=True)
class PaymentPolicy:
    recipients: frozenset[str]
    """Allowed recipients; empty = any."""
    max_payment: int = 0
    """Largest amount (µ); 0 = no limit."""

    def recipient_allowed(self, recipient: str) -> bool:
        return not self.recipients or recipient in self.recipients


def _is_localhost(name: str) -> bool:
    name = name.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _is_localhost_listed(names: frozenset[str]) -> bool:
    return any(_is_localhost(n) for n in names)


def parse_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _option(options: Mapping[str, Any], name: str) -> Any:
    found = None
    for key, value in options.items():
        if key == name or key.lower() == name:
            found = value
    return found


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{where} must be an integer")
    if not lo <= value <= hi:
        raise ManifestError(f"{where} must be between {lo} and {hi}")
    return value


def _strings(value: Any, where: str, max_chars: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where} must be a list of strings")
    if len(value) > MAX_LIST_ITEMS:
        raise ManifestError(f"{where} has more than {MAX_LIST_ITEMS} entries")
    for item in value:
        if not item or len(item) > max_chars:
            raise ManifestError(f"{where}: entries must be 1..{max_chars} characters")
    return value


def http_policy(manifest: Manifest) -> HttpPolicy | None:
    """The ``http`` options, or None when the capability is not declared."""
    grant = manifest.capabilities.get("http")
    if grant is None:
        return None
    where = "capabilities.http.options"
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for host in _strings(_option(grant.options, "allowed_hosts"), where, MAX_HOST_CHARS):
        try:
            networks.append(ipaddress.ip_network(host.strip("[]"), strict=False))
        except ValueError:
            names.add(host.lower().rstrip("."))
    timeout = _option(grant.options, "timeout_ms")
    size = _option(grant.options, "max_response_bytes")
    return HttpPolicy(
        names=frozenset(names),
        networks=tuple(networks),
        timeout_ms=DEFAULT_TIMEOUT_MS
        if timeout is None
        else _int(timeout, f"{where}.timeout_ms", 1, MAX_TIMEOUT_MS),
        max_response_bytes=DEFAULT_MAX_RESPONSE_BYTES
        if size is None
        else _int(size, f"{where}.max_response_bytes", 1, MAX_RESPONSE_CEILING_BYTES),
    )


def payment_policy(manifest: Manifest) -> PaymentPolicy | None:
    """The ``x402`` options, or None when the capability is not declared."""
    grant = manifest.capabilities.get("x402")
    if grant is None:
        return None
    where = "capabilities.x402.options"
    recipients = _strings(_option(grant.options, "allowed_recipients"), where, 256)
    limit = _option(grant.options, "max_payment_microcents")
    return PaymentPolicy(
        recipients=frozenset(recipients),
        max_payment=0
        if limit is None
        else _int(limit, f"{where}.max_payment_microcents", 0, INT64_MAX),
    )
