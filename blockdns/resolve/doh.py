"""DNS over HTTPS to an upstream (RFC 8484 client): POST ``application/dns-message`` over HTTP/2 with httpx.

One ``httpx.AsyncClient`` per ``https://`` upstream keeps its connections (at most ``MAX_CONNECTIONS``, idle
ones closed after ``IDLE_TIMEOUT``) and multiplexes concurrent queries as HTTP/2 streams on them, so a TLS
handshake is paid per connection, not per query. Queries carry ID 0 (RFC 8484 §4.1) and EDNS padding to a
multiple of 128 bytes (RFC 8467); a reply is accepted only with status 200, type
``application/dns-message``, at most 65,535 bytes, and our question.

The certificate is verified against the upstream's TLS name (``#TLS-NAME``, else its host) with the
configured CA bundle or the system store. A host name is resolved through the bootstrap servers and the
request goes to the address, with the name as TLS SNI and ``Host``: httpx never asks the system resolver.
A failure to connect holds the upstream off for a while (:mod:`blockdns.resolve.backoff`); a request whose
connection breaks under it (the server closed it) is sent once more, on a fresh connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import httpx

from blockdns.config import Upstream as UpstreamConfig
from blockdns.errors import UpstreamError
from blockdns.resolve.backoff import ConnectBackoff
from blockdns.resolve.bootstrap import Bootstrap
from blockdns.resolve.dot import tls_failure
from blockdns.resolve.transport import Outgoing, TransportStats, timed_out
from blockdns.wire import EDE_NETWORK_ERROR, pad_query

MAX_CONNECTIONS = 4  # per upstream; each carries many HTTP/2 streams
IDLE_TIMEOUT = 30.0  # seconds an idle connection is kept
MAX_REPLY = 65535
MEDIA_TYPE = "application/dns-message"

Build = Callable[[int], Outgoing]


class DohClient:
    """The HTTP/2 client of one ``https://`` upstream (module docstring); made inside the event loop."""

    def __init__(
        self,
        upstream: UpstreamConfig,
        context: ssl.SSLContext,
        bootstrap: Bootstrap | None,
        stats: TransportStats,
        *,
        connect_timeout: float,
    ) -> None:
        self.upstream, self.bootstrap, self.stats = upstream, bootstrap, stats
        self.name = str(upstream)
        self.client = httpx.AsyncClient(
            http2=True,
            verify=context,
            trust_env=False,  # no proxy or netrc from the environment
            follow_redirects=False,
            timeout=httpx.Timeout(connect_timeout),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_CONNECTIONS,
                keepalive_expiry=IDLE_TIMEOUT,
            ),
        )
        self._headers = {"content-type": MEDIA_TYPE, "accept": MEDIA_TYPE}
        self._extensions: dict[str, str] = {}
        if upstream.tls_name or upstream.host_is_name:
            self._headers["host"] = _authority(upstream.verify_name, upstream.port)
            self._extensions["sni_hostname"] = upstream.verify_name
        self._url = _url(upstream.host, upstream)
        self.backoff = ConnectBackoff()

    async def query(self, build: Build, timeout: float) -> bytes:
        """The reply to the query ``build(0)`` makes; raises :class:`UpstreamError`."""
        stats = self.stats
        stats.queries += 1
        stats.https_queries += 1
        outgoing = build(0)
        message = pad_query(outgoing.message)
        try:
            self.backoff.check(asyncio.get_running_loop().time())
            async with asyncio.timeout(timeout):
                url = self._url
                if self.upstream.host_is_name and self.bootstrap is not None:
                    url = _url((await self.bootstrap.addresses(self.upstream.host))[0], self.upstream)
                try:
                    data = await self._post(url, message, timeout)
                except _Dropped:  # the server closed the connection under the request: once more
                    data = await self._post(url, message, timeout, last=True)
            if self.backoff.error is not None:
                self.backoff.succeeded()
        except TimeoutError:
            stats.timeouts += 1
            raise timed_out(self.name, "over HTTPS") from None
        except UpstreamError:
            stats.errors += 1
            raise
        if not outgoing.answered_by(data):
            stats.mismatched += 1
            stats.errors += 1
            raise self._failure("the reply does not answer the query")
        stats.replies += 1
        return data

    async def _post(self, url: str, message: bytes, timeout: float, *, last: bool = False) -> bytes:
        """The reply's body; raises :class:`UpstreamError`, or :class:`_Dropped` (unless ``last``) when the
        connection broke under the request."""
        try:
            async with self.client.stream(
                "POST",
                url,
                content=message,
                headers=self._headers,
                extensions=self._extensions,
                timeout=timeout,
            ) as response:
                if response.status_code != 200:
                    raise self._failure(f"HTTP status {response.status_code}")
                media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
                if media_type != MEDIA_TYPE:
                    raise self._failure(f"content type {media_type or 'missing'!r}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_REPLY:
                        raise self._failure("reply larger than 65535 bytes")
                return bytes(body)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.HTTPError as err:
            cause = _ssl_cause(err)
            if isinstance(cause, ssl.SSLCertVerificationError):
                self.stats.verify_failures += 1
            if cause is not None:
                error = tls_failure(self.name, cause)
            else:
                kind = type(err).__name__
                error = UpstreamError(
                    f"{self.name}: {kind}: {err}" if str(err) else f"{self.name}: {kind}",
                    EDE_NETWORK_ERROR,
                    client_text=f"upstream network error over HTTPS: {kind}",
                )
            if isinstance(err, httpx.ConnectError):  # no connection: hold off the next attempts
                self.backoff.failed(error, asyncio.get_running_loop().time())
            elif not last and isinstance(err, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
                raise _Dropped from None
            raise error from None

    def _failure(self, reason: str) -> UpstreamError:
        return UpstreamError(
            f"{self.name}: {reason}", EDE_NETWORK_ERROR, client_text=f"upstream DoH error: {reason}"
        )

    async def close(self) -> None:
        await self.client.aclose()


class _Dropped(Exception):
    """The connection broke under a request (a server may close a connection at any time)."""


def _ssl_cause(err: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = err
    for _ in range(8):  # httpx wraps httpcore's error, which wraps the ssl module's
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _authority(host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port == 443 else f"{host}:{port}"


def _url(address: str, upstream: UpstreamConfig) -> str:
    return f"https://{_authority(address, upstream.port)}{upstream.path}"
