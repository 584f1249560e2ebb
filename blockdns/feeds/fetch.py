"""Downloading feed bodies: the only module that imports httpx, and the one place its errors are translated.

* Bounded concurrency (a semaphore shared by every download of a run), connect/read timeouts and a total
  deadline per URL (a server that trickles bytes cannot hold a run forever).
* Retries with exponential backoff and jitter for transient trouble only: connection errors, timeouts,
  truncated bodies, HTTP 5xx and 429 (``Retry-After`` honoured up to the backoff cap). Other 4xx fail at once.
* Conditional GET: ``If-None-Match`` / ``If-Modified-Since`` from the validators of the last good download; a
  304 comes back as :attr:`Fetched.not_modified`.
* A maximum body size, enforced while streaming (a ``Content-Length`` above it is refused before reading).
  ``Content-Encoding: gzip`` is decoded by httpx; a gzip file served as such is decompressed in
  :mod:`blockdns.feeds.checks`.
* ``file://`` URLs are read from disk with the same size limit; their validators are the file's size and
  modification time, so an unchanged local feed also comes back as not modified.

Every failure leaves as :class:`FetchError`, or :class:`BodyRefused` for a body too large to keep. The
transport is injectable (``httpx.MockTransport`` in unit tests, the real one against a loopback server in the
others).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpx

from blockdns import __version__
from blockdns.errors import FetchError
from blockdns.feeds.checks import BodyRefused

log = logging.getLogger("blockdns.feeds")


@dataclass(frozen=True, slots=True)
class FetchOptions:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 300.0  # one URL, all attempts and backoff included
    max_bytes: int = 64 * 1024 * 1024
    attempts: int = 4
    backoff: float = 1.0  # first retry delay in seconds; doubles per attempt, with jitter
    backoff_max: float = 30.0
    concurrency: int = 4
    max_redirects: int = 5
    user_agent: str = f"blockdns/{__version__} (list update)"


@dataclass(frozen=True, slots=True)
class Validators:
    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str
    body: bytes | None  # None: not modified since the validators sent
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.body is None


class _Transient(Exception):
    """A failure worth another attempt."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def _describe(err: httpx.HTTPError) -> str:
    if isinstance(err, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(err, httpx.ReadTimeout):
        return "read timed out"
    if isinstance(err, httpx.TimeoutException):
        return "timed out"
    if isinstance(err, httpx.ConnectError):
        return f"cannot connect ({err})" if str(err) else "cannot connect"
    if isinstance(err, httpx.RemoteProtocolError):
        return f"transfer broken off ({err})"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class Fetcher:
    """Downloads URLs for one update run. Use as ``async with Fetcher(...) as fetcher``."""

    def __init__(
        self, options: FetchOptions | None = None, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.options = options or FetchOptions()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self.requests = 0

    async def __aenter__(self) -> Fetcher:
        options = self.options
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(options.read_timeout, connect=options.connect_timeout),
            follow_redirects=True,
            max_redirects=options.max_redirects,
            headers={"User-Agent": options.user_agent},
            trust_env=self._transport is None,
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch(self, url: str, validators: Validators | None = None) -> Fetched:
        """Download ``url``; with validators, a 304 gives ``Fetched.not_modified``. Raises FetchError."""
        async with self._slots:
            if url.startswith("file:"):
                return await asyncio.to_thread(self._read_file, url, validators)
            try:
                async with asyncio.timeout(self.options.total_timeout):
                    return await self._with_retries(url, validators)
            except TimeoutError:
                raise FetchError(
                    f"{url}: no complete answer within {self.options.total_timeout:g}s"
                ) from None

    async def _with_retries(self, url: str, validators: Validators | None) -> Fetched:
        options = self.options
        for attempt in range(1, options.attempts + 1):
            try:
                return await self._fetch_once(url, validators)
            except _Transient as err:
                if attempt == options.attempts:
                    tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
                    raise FetchError(f"{url}: {err} (after {tries})") from None
                delay = options.backoff * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)
                if err.retry_after is not None:
                    delay = max(delay, err.retry_after)
                delay = min(delay, options.backoff_max)
                log.info("%s: %s; retrying in %.1fs", url, err, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_once(self, url: str, validators: Validators | None) -> Fetched:
        assert self._client is not None, "use Fetcher as an async context manager"
        headers = validators.headers() if validators else {}
        self.requests += 1
        try:
            async with self._client.stream("GET", url, headers=headers) as response:
                return await self._read(url, response, validators)
        except httpx.TooManyRedirects:
            raise FetchError(f"{url}: more than {self.options.max_redirects} redirects") from None
        except httpx.DecodingError as err:
            raise BodyRefused(f"{url}: body does not decode ({err})") from None
        except httpx.TransportError as err:
            raise _Transient(_describe(err)) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as err:
            raise FetchError(f"{url}: {err}") from None

    async def _read(self, url: str, response: httpx.Response, validators: Validators | None) -> Fetched:
        status = response.status_code
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if status == 304:
            if validators is None:
                raise FetchError(f"{url}: HTTP 304 to an unconditional request")
            return Fetched(url, None, etag or validators.etag, last_modified or validators.last_modified)
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}", _retry_after(response.headers.get("Retry-After")))
        if status != 200:
            raise FetchError(f"{url}: HTTP {status} {response.reason_phrase}".rstrip())
        limit = self.options.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit and "Content-Encoding" not in response.headers:
            raise BodyRefused(f"{url}: body of {declared} bytes is larger than the limit of {limit}")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise BodyRefused(f"{url}: body larger than the limit of {limit} bytes")
            chunks.append(chunk)
        return Fetched(url, b"".join(chunks), etag, last_modified, response.headers.get("Content-Type"))

    def _read_file(self, url: str, validators: Validators | None) -> Fetched:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(f"{url}: only local file:// URLs are supported")
        path = Path(url2pathname(unquote(parts.path)))
        try:
            info = path.stat()
            etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
            last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
            if validators is not None and validators.etag == etag:
                return Fetched(url, None, etag, last_modified)
            if info.st_size > self.options.max_bytes:
                raise BodyRefused(
                    f"{url}: file of {info.st_size} bytes is larger than {self.options.max_bytes}"
                )
            with path.open("rb") as handle:
                body = handle.read(self.options.max_bytes + 1)
        except OSError as err:
            raise FetchError(f"{url}: cannot read: {err.strerror or err}") from None
        if len(body) > self.options.max_bytes:
            raise BodyRefused(f"{url}: file larger than {self.options.max_bytes} bytes")
        return Fetched(url, body, etag, last_modified)
