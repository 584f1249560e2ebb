"""The fetcher against a real HTTP server on loopback: retries, timeouts, limits, gzip, conditional GET."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from blockdns.errors import FetchError
from blockdns.feeds.checks import BodyRefused, body_text
from blockdns.feeds.fetch import Fetched, Fetcher, FetchOptions, Validators

from httpfeeds import FeedServer

QUICK = FetchOptions(connect_timeout=1.0, read_timeout=0.3, total_timeout=5.0, attempts=3, backoff=0.01)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def fetch(url: str, validators: Validators | None = None, options: FetchOptions = QUICK) -> Fetched:
    async def run() -> Fetched:
        async with Fetcher(options) as fetcher:
            return await fetcher.fetch(url, validators)

    return asyncio.run(run())


def test_plain_body_and_validators(server: FeedServer) -> None:
    server.serve("/list.txt", "a.example\n", etag='"v1"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    fetched = fetch(server.url("/list.txt"))
    assert fetched.body == b"a.example\n"
    assert fetched.etag == '"v1"'
    assert fetched.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"


def test_conditional_get_sends_validators_and_304_means_not_modified(server: FeedServer) -> None:
    server.serve("/list.txt", "a.example\n", etag='"v1"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    fetched = fetch(server.url("/list.txt"), Validators('"v1"', "Mon, 01 Jan 2024 00:00:00 GMT"))
    assert fetched.not_modified
    headers = server.last("/list.txt").headers
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == "Mon, 01 Jan 2024 00:00:00 GMT"


def test_last_modified_alone_also_works(server: FeedServer) -> None:
    server.serve("/list.txt", "a.example\n", last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    assert fetch(server.url("/list.txt"), Validators(None, "Mon, 01 Jan 2024 00:00:00 GMT")).not_modified
    assert fetch(server.url("/list.txt"), Validators(None, "Tue, 02 Jan 2024 00:00:00 GMT")).body


def test_5xx_is_retried_then_succeeds(server: FeedServer) -> None:
    route = server.serve("/flaky.txt", "a.example\n")
    route.failures = 2
    assert fetch(server.url("/flaky.txt")).body == b"a.example\n"
    assert server.count("/flaky.txt") == 3


def test_429_is_retried(server: FeedServer) -> None:
    route = server.serve("/limited.txt", "a.example\n")
    route.failures, route.failure_status = 1, 429
    assert fetch(server.url("/limited.txt")).body == b"a.example\n"
    assert server.count("/limited.txt") == 2


def test_persistent_500_fails_after_the_attempts(server: FeedServer) -> None:
    server.fail("/down.txt", 500)
    with pytest.raises(FetchError, match=r"HTTP 500 \(after 3 attempts\)"):
        fetch(server.url("/down.txt"))
    assert server.count("/down.txt") == 3


@pytest.mark.parametrize("status", [403, 404, 410])
def test_4xx_is_not_retried(server: FeedServer, status: int) -> None:
    server.fail("/gone.txt", status)
    with pytest.raises(FetchError, match=f"HTTP {status}"):
        fetch(server.url("/gone.txt"))
    assert server.count("/gone.txt") == 1


def test_slow_server_times_out(server: FeedServer) -> None:
    server.slow("/slow.txt", "a.example\n", delay=1.0)
    options = FetchOptions(read_timeout=0.2, attempts=2, backoff=0.01, total_timeout=5)
    with pytest.raises(FetchError, match="read timed out"):
        fetch(server.url("/slow.txt"), options=options)
    assert server.count("/slow.txt") == 2


def test_total_deadline_bounds_all_attempts(server: FeedServer) -> None:
    server.slow("/slow.txt", "a.example\n", delay=0.4)
    options = FetchOptions(read_timeout=1.0, attempts=5, backoff=0.01, total_timeout=0.3)
    with pytest.raises(FetchError, match=r"no complete answer within 0\.3s"):
        fetch(server.url("/slow.txt"), options=options)


def test_truncated_body_is_a_failure(server: FeedServer) -> None:
    server.truncated("/cut.txt", "a.example\n" * 100, sent=50)
    with pytest.raises(FetchError, match="transfer broken off"):
        fetch(server.url("/cut.txt"))
    assert server.count("/cut.txt") == 3  # a broken transfer is worth retrying


def test_oversize_body_is_refused_without_retry(server: FeedServer) -> None:
    server.oversize("/huge.txt", 10_000)
    with pytest.raises(BodyRefused, match="larger than the limit of 4096"):
        fetch(server.url("/huge.txt"), options=FetchOptions(max_bytes=4096, attempts=3, backoff=0.01))
    assert server.count("/huge.txt") == 1


def test_oversize_streamed_body_without_length(server: FeedServer) -> None:
    server.serve("/huge.gz", "big.example.com\n" * 2000, gzip=True)  # Content-Length is the compressed size
    with pytest.raises(BodyRefused, match="larger than the limit"):
        fetch(server.url("/huge.gz"), options=FetchOptions(max_bytes=4096))


def test_gzip_content_encoding_is_decoded(server: FeedServer) -> None:
    server.serve("/z.txt", "a.example\nb.example\n", gzip=True)
    assert fetch(server.url("/z.txt")).body == b"a.example\nb.example\n"


def test_gzip_file_without_encoding_is_decompressed_by_the_checks() -> None:
    body = gzip.compress(b"a.example\n")
    assert body_text(body, "u") == "a.example\n"
    with pytest.raises(BodyRefused, match="once decompressed"):
        body_text(gzip.compress(b"x" * 10_000), "u", max_bytes=100)


def test_connection_refused_is_a_fetch_error() -> None:
    with FeedServer() as gone:
        url = gone.url("/x.txt")
    with pytest.raises(FetchError, match="cannot connect"):
        fetch(url, options=FetchOptions(attempts=2, backoff=0.01, connect_timeout=0.5))


def test_file_urls(tmp_path: Path) -> None:
    path = tmp_path / "local list.txt"
    path.write_text("a.example\n")
    url = path.as_uri()
    first = fetch(url)
    assert first.body == b"a.example\n"
    assert fetch(url, Validators(first.etag, first.last_modified)).not_modified
    with pytest.raises(FetchError, match="cannot read"):
        fetch((tmp_path / "missing.txt").as_uri())


def test_injected_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="a.example\n", headers={"ETag": '"m"'})

    async def run() -> Fetched:
        async with Fetcher(QUICK, transport=httpx.MockTransport(handler)) as fetcher:
            return await fetcher.fetch("https://feeds.invalid/list.txt")

    assert asyncio.run(run()).etag == '"m"'
    assert seen[0].headers["user-agent"].startswith("blockdns/")


@pytest.mark.parametrize(
    "body",
    [b"", b"  \n\n", b"<!DOCTYPE html><html></html>", b"\n  <html lang=en>", b"<!-- x --><html>", b"a\x00b"],
)
def test_bodies_that_are_never_feeds(body: bytes) -> None:
    with pytest.raises(BodyRefused):
        body_text(body, "u")


def test_html_content_type_is_refused() -> None:
    with pytest.raises(BodyRefused, match="HTML page"):
        body_text(b"a.example\n", "u", content_type="text/html; charset=utf-8")
