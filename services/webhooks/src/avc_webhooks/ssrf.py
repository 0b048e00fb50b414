"""Webhook targets that cannot be turned against the platform's own network (SSRF).

Two halves, used together on every attempt and when an endpoint is saved:

- `UrlPolicy.check(url)`: `https` only; the host is resolved once and *every* address it
  resolves to must be publicly routable — loopback, private, link-local (cloud metadata),
  CGNAT, multicast, reserved, unspecified and documentation ranges are refused, IPv4 and IPv6,
  including IPv4 hidden inside IPv6 (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
  `64:ff9b::/96`, 6to4 `2002::/16`; Teredo is refused outright). It returns the checked
  addresses.
- `PinnedTransport(target)`: an httpx transport whose network backend dials only those checked
  addresses, whatever the host name resolves to by then, so DNS rebinding between the check
  and the connection cannot redirect it. TLS still uses the host name for SNI and certificate
  verification, and the `Host` header is the URL's; redirects are never followed (httpx's
  `follow_redirects=False`, and each attempt builds a new transport for one checked target).

`AVC_WEBHOOKS_ALLOW_INSECURE=1` (development only) allows `http` and any address;
`AVC_WEBHOOKS_ALLOWED_NETWORKS` exempts chosen CIDRs from the address refusal (https still
required). Both are operator settings, never per endpoint.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""`resolve(host, port)` -> the addresses (as text) the host name resolves to."""

MAX_URL_LENGTH: Final = 2048
MAX_PORT: Final = 65535
MIN_UNPRIVILEGED_PORT: Final = 1024

_V4: Final[tuple[tuple[str, str], ...]] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_V6: Final[tuple[tuple[str, str], ...]] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001:2::/48", "benchmarking"),
    ("2001:db8::/32", "documentation"),
    ("2001:10::/28", "ORCHID"),
    ("2001:20::/28", "ORCHIDv2"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "SRv6 SID"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
_BLOCKED: Final[tuple[tuple[IPNetwork, str], ...]] = tuple(
    (ipaddress.ip_network(net), why) for net, why in _V4 + _V6
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")


class UrlRefused(Exception):
    """The URL may not be used as a webhook target; `message` says why (safe to show)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def parse_address(text: str) -> IPAddress:
    """Returns the address, IPv4-mapped IPv6 (`::ffff:a.b.c.d`) turned into its IPv4."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def blocked_reason(address: IPAddress) -> str | None:
    """Returns why `address` is not a safe target (e.g. "loopback"), or None when it is a
    publicly routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            inner = blocked_reason(address.ipv4_mapped)
            return f"IPv4-mapped {inner}" if inner else None
        if address in _NAT64:
            inner = blocked_reason(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
            return f"NAT64 {inner}" if inner else None
        if address.sixtofour is not None:
            inner = blocked_reason(address.sixtofour)
            return f"6to4 {inner}" if inner else None
    for network, why in _BLOCKED:
        if address.version == network.version and address in network:
            return why
    if isinstance(address, ipaddress.IPv6Address):
        return None if address in _GLOBAL_UNICAST_V6 else "reserved"
    return None if address.is_global else "not globally routable"


async def system_resolver(host: str, port: int) -> list[str]:
    """Returns the addresses the system resolver gives for `host` (TCP)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class CheckedTarget:
    """A URL whose host was resolved and checked; connect only to `addresses`."""

    url: httpx.URL
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


class UrlPolicy:
    def __init__(
        self,
        *,
        allow_insecure: bool = False,
        allowed_networks: Iterable[IPNetwork] = (),
        resolver: Resolver | None = None,
        dns_timeout: float = 5.0,
    ) -> None:
        self.allow_insecure = allow_insecure
        self.allowed_networks = tuple(allowed_networks)
        self.resolver: Resolver = resolver or system_resolver
        self.dns_timeout = dns_timeout

    def parse(self, raw: str) -> httpx.URL:
        """Returns the parsed URL; raises UrlRefused for anything but an absolute https URL
        (http too when insecure) with a host and no credentials."""
        if len(raw) > MAX_URL_LENGTH:
            raise UrlRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.", reason="url")
        try:
            url = httpx.URL(raw)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise UrlRefused("The URL is not a valid absolute URL.", reason="url") from None
        schemes = ("https", "http") if self.allow_insecure else ("https",)
        if url.scheme not in schemes:
            raise UrlRefused("Webhook URLs must use https.", reason="scheme")
        if not url.raw_host:
            raise UrlRefused("The URL has no host.", reason="url")
        if url.userinfo:
            raise UrlRefused("Webhook URLs must not contain credentials.", reason="url")
        self._check_port(url.port)
        return url

    def _check_port(self, port: int | None) -> None:
        """Raises UrlRefused for a port that is not 443 or 1024-65535 (system ports below 1024
        are where internal services listen: SSH, SMTP, ...); any valid one when insecure."""
        if port is None:
            return  # the scheme's own: 443 (https), or 80 (http, only allowed when insecure)
        if not 0 < port <= MAX_PORT:
            raise UrlRefused(f"The URL's port {port} is not a valid port.", reason="port")
        if port != 443 and port < MIN_UNPRIVILEGED_PORT and not self.allow_insecure:
            raise UrlRefused(
                f"Webhook URLs may use port 443 or 1024-65535, not {port}.", reason="port"
            )

    def refusal(self, address: IPAddress) -> str | None:
        """Returns why this policy refuses `address`, or None."""
        if self.allow_insecure:
            return None
        if any(address.version == net.version and address in net for net in self.allowed_networks):
            return None
        return blocked_reason(address)

    async def check(self, raw: str) -> CheckedTarget:
        """Returns the URL with the addresses to connect to; raises UrlRefused when the URL is
        not allowed or its host resolves to any refused address (or to nothing)."""
        url = self.parse(raw)
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses: list[IPAddress] = [parse_address(host)]
        except ValueError:
            addresses = await self._resolve(host, port)
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                shown = host if str(address) == host else f"{host} resolves to {address}, which"
                raise UrlRefused(
                    f"{shown} is a {why} address; webhooks only go to public addresses.",
                    reason="address",
                )
        return CheckedTarget(url=url, host=host, port=port, addresses=tuple(addresses))

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            async with asyncio.timeout(self.dns_timeout):
                found = await self.resolver(host, port)
        except (OSError, TimeoutError, UnicodeError):
            raise UrlRefused(f"The host {host} could not be resolved.", reason="dns") from None
        addresses: list[IPAddress] = []
        for text in found:
            try:
                addresses.append(parse_address(text))
            except ValueError:
                continue
        if not addresses:
            raise UrlRefused(f"The host {host} has no address.", reason="dns")
        return list(dict.fromkeys(addresses))


def client_ssl_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Returns the TLS context for receivers: public CAs (certifi) plus `ca_file`'s."""
    context = httpx.create_ssl_context(trust_env=False)
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dials the checked addresses of one target and nothing else."""

    def __init__(self, target: CheckedTarget) -> None:
        self._target = target
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host != self._target.host or port != self._target.port:
            raise httpcore.ConnectError(f"refusing to connect to unchecked {host}:{port}")
        error: Exception | None = None
        for address in self._target.addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # a CheckedTarget has at least one address
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# Most specific first: httpcore's timeouts are also its generic errors' subclasses.
_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc) or type(exc).__name__) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpcore.Response) -> None:
        self._response = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._response.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._response.aclose()


class PinnedTransport(httpx.AsyncBaseTransport):
    """Sends requests for one checked target over connections to its checked addresses."""

    def __init__(self, target: CheckedTarget, *, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=_PinnedBackend(target),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
