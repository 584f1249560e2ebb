"""Serve-stale (RFC 8767) and prefetch through the real server, in front of an upstream that goes silent,
slow or lossy: expired data answers (TTL 30, EDE 3) only when resolution fails or is too slow, never past
``stale_max_age``, never round policy; a name asked in the last tenth of its TTL is refreshed once, in the
background, and never expires for a client that keeps asking."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest

from blockdns import config
from blockdns.resolve import cache as answer_cache
from blockdns.resolve.cache import CLIENT_RESPONSE_TIMER, STALE_TTL
from blockdns.wire import EDE_STALE_ANSWER

from conftest import RunningServer, base_config, ede_of
from fakedns import FakeDNS

NAME = "www.example"
# A silent upstream is given up on after 0.6 s: well inside the client-response timer (1.8 s).
QUICK_FAILURE = {"timeout": 0.3, "total_timeout": 0.6}


@pytest.fixture
def upstream() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.0.2").answer(NAME, "A", "192.0.2.1", ttl=1).start()
    yield fake
    fake.stop()


def stale_config(upstream: FakeDNS, resolver: dict[str, Any] | None = None, **cache: Any) -> dict[str, Any]:
    raw = base_config(upstream, policy={"block": []}, cache=cache)
    raw["resolver"] |= resolver if resolver is not None else QUICK_FAILURE
    return raw


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def cache_then_expire(server: RunningServer, name: str = NAME, ttl: float = 1.0) -> dns.message.Message:
    """Ask for ``name`` (cached for ``ttl`` seconds), then wait until that has run out."""
    response = server.query(name)
    cached_by = time.monotonic()  # the server stored the answer before it answered
    wait_until(lambda: time.monotonic() > cached_by + ttl)
    return response


def assert_stale(response: dns.message.Message, *, edns: bool = True) -> None:
    assert response.rcode() == dns.rcode.NOERROR
    assert [rrset.ttl for rrset in response.answer] == [STALE_TTL]
    assert response.answer[0][0].to_text() == "192.0.2.1"
    if edns:
        assert ede_of(response) == [(EDE_STALE_ANSWER, "")]


def test_a_silent_upstream_gets_the_expired_answer_with_ttl_30_and_ede_3(start_server, upstream):
    server = start_server(stale_config(upstream))
    assert cache_then_expire(server).answer[0].ttl == 1
    upstream.go_silent()
    before = upstream.count(NAME)
    started = time.monotonic()
    assert_stale(server.query(NAME))
    assert time.monotonic() - started < CLIENT_RESPONSE_TIMER  # the failure came first, after 0.6 s
    assert upstream.count(NAME) > before  # the refresh was tried
    tried = upstream.count(NAME)
    # RFC 8767 failure recheck: for 30 s stale data answers at once and the dead upstream is left alone.
    started = time.monotonic()
    no_edns = server.query(NAME, edns=None)
    assert_stale(no_edns, edns=False)
    assert no_edns.opt is None
    assert_stale(server.query(NAME, tcp=True))
    assert time.monotonic() - started < 1.0  # two resolutions would have taken 0.6 s each
    assert upstream.count(NAME) == tried
    assert server.server is not None
    stats = server.server.stats
    assert stats.cache.stale == 3
    assert stats.queries[(1, "stale", "default")] == 3


def test_without_serve_stale_a_silent_upstream_means_servfail(start_server, upstream):
    server = start_server(stale_config(upstream, serve_stale=False))
    cache_then_expire(server)
    upstream.go_silent()
    assert server.query(NAME).rcode() == dns.rcode.SERVFAIL


def test_nothing_is_served_stale_past_stale_max_age(start_server, upstream):
    server = start_server(stale_config(upstream, stale_max_age="1s"))
    server.query(NAME)
    stored = time.monotonic()
    upstream.go_silent()
    wait_until(lambda: time.monotonic() > stored + 2.2)  # expired at 1 s, kept until 2 s
    assert server.query(NAME).rcode() == dns.rcode.SERVFAIL


def test_an_upstream_that_answers_again_replaces_the_stale_data(start_server, upstream):
    server = start_server(stale_config(upstream))
    cache_then_expire(server)
    upstream.answer(NAME, "A", "192.0.2.7", ttl=300)
    fresh = server.query(NAME)  # the upstream answers within the timer: no stale data
    assert fresh.answer[0].ttl == 300 and fresh.answer[0][0].to_text() == "192.0.2.7"
    assert not ede_of(fresh)


def test_negative_answers_are_served_stale_too(start_server, upstream):
    server = start_server(stale_config(upstream, negative_max_ttl=1))
    assert cache_then_expire(server, "missing.example").rcode() == dns.rcode.NXDOMAIN
    upstream.go_silent()
    stale = server.query("missing.example")
    assert stale.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.ttl for rrset in stale.authority] == [STALE_TTL]
    assert ede_of(stale) == [(EDE_STALE_ANSWER, "")]


def test_an_upstream_servfail_is_answered_from_stale_data_and_never_cached(start_server, upstream):
    server = start_server(stale_config(upstream))
    cache_then_expire(server)
    upstream.rcode(NAME, "SERVFAIL")
    assert_stale(server.query(NAME))
    asked = upstream.count(NAME)
    assert_stale(server.query(NAME))  # the failure recheck holds; the SERVFAIL was not cached as data
    assert upstream.count(NAME) == asked


def test_a_slow_upstream_gets_the_stale_answer_at_the_timer_and_refreshes_the_cache(start_server, upstream):
    server = start_server(stale_config(upstream, resolver={"timeout": 5.0, "total_timeout": 6.0}))
    cache_then_expire(server)
    upstream.answer(NAME, "A", "192.0.2.7", ttl=300).go_slow(4.0)
    asked = upstream.count(NAME)
    started = time.monotonic()
    assert_stale(server.query(NAME))
    waited = time.monotonic() - started
    assert CLIENT_RESPONSE_TIMER - 0.1 < waited < 3.8  # answered at the timer, before the upstream
    assert server.server is not None
    cache = server.server.generation.cache
    wait_until(lambda: not cache.refreshes.running)  # the refresh went on and got the answer
    assert upstream.count(NAME) > asked
    refreshed = upstream.count(NAME)
    fresh = server.query(NAME)
    assert fresh.answer[0][0].to_text() == "192.0.2.7" and fresh.answer[0].ttl > STALE_TTL
    assert not ede_of(fresh)
    assert upstream.count(NAME) == refreshed  # from the cache the refresh filled


def test_a_lossy_upstream_still_gets_every_client_an_answer(start_server, upstream):
    server = start_server(stale_config(upstream))
    cache_then_expire(server)
    upstream.go_lossy(4)  # three queries of four lost: a refresh often fails, and is then held off
    ends = time.monotonic() + 3.0
    while time.monotonic() < ends:
        response = server.query(NAME)
        assert response.rcode() == dns.rcode.NOERROR and response.answer[0][0].to_text() == "192.0.2.1"
        time.sleep(0.1)


def toml_text(raw: dict[str, Any]) -> str:
    """``raw`` (sections of plain values, as base_config builds) as a TOML file."""
    lines = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def reloadable(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], tuple[RunningServer, Path]]]:
    running: list[RunningServer] = []

    def start(raw: dict[str, Any]) -> tuple[RunningServer, Path]:
        path = tmp_path / "blockdns.toml"
        path.write_text(toml_text(raw))
        server = RunningServer(config.load(path)).start()
        running.append(server)
        return server, path

    yield start
    for server in running:
        server.stop()


def test_a_stale_answer_never_lets_a_blocked_cname_target_through(reloadable, upstream):
    upstream.answer(
        "alias.example",
        "A",
        "alias.example. 1 IN CNAME t.tracker.example.",
        "t.tracker.example. 1 IN A 192.0.2.9",
    )
    raw = stale_config(upstream)
    server, path = reloadable(raw)
    assert cache_then_expire(server, "alias.example").answer
    upstream.go_silent()
    raw["policy"] = {"block": ["domain:tracker.example"]}
    path.write_text(toml_text(raw))
    assert server.server is not None
    assert server.call(server.server.reload()).ok
    blocked = server.query("alias.example")
    assert blocked.rcode() == dns.rcode.NXDOMAIN and not blocked.answer


def test_serve_stale_switched_off_by_a_reload(reloadable, upstream):
    raw = stale_config(upstream)
    server, path = reloadable(raw)
    cache_then_expire(server)
    upstream.go_silent()
    raw["cache"] = {"serve_stale": False}
    path.write_text(toml_text(raw))
    assert server.server is not None
    assert server.call(server.server.reload()).ok
    assert server.query(NAME).rcode() == dns.rcode.SERVFAIL
    raw["cache"] = {"serve_stale": True}  # back on: the data is cached again once the upstream answers
    path.write_text(toml_text(raw))
    assert server.call(server.server.reload()).ok
    upstream.recover()
    cache_then_expire(server)
    upstream.go_silent()
    assert_stale(server.query(NAME))


def test_a_new_upstream_after_a_reload_is_asked_at_once(reloadable, upstream):
    """The failure recheck holds off the upstream that failed, not the one a reload puts in its place."""
    raw = stale_config(upstream)
    server, path = reloadable(raw)
    cache_then_expire(server)
    upstream.go_silent()
    assert_stale(server.query(NAME))  # and held off for 30 s
    replacement = FakeDNS("127.0.0.3").answer(NAME, "A", "192.0.2.8", ttl=300).start()
    try:
        raw["resolver"]["upstreams"] = [replacement.url]
        path.write_text(toml_text(raw))
        assert server.server is not None
        assert server.call(server.server.reload()).ok
        fresh = server.query(NAME)
        assert fresh.answer[0][0].to_text() == "192.0.2.8" and not ede_of(fresh)
    finally:
        replacement.stop()


# ------------------------------------------------------------------------------------------ prefetch


@pytest.fixture
def wide_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefetch in the last half of a TTL of 3 s or more, so the tests run in seconds and a busy machine
    has a window of seconds to hit."""
    monkeypatch.setattr(answer_cache, "PREFETCH_SHARE", 0.5)
    monkeypatch.setattr(answer_cache, "PREFETCH_MIN_TTL", 3)


@pytest.fixture
def prefetched() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.0.2").answer("popular.example", "A", "192.0.2.5", ttl=4)
    fake.answer("brief.example", "A", "192.0.2.6", ttl=2).start()
    yield fake
    fake.stop()


def test_a_name_asked_in_the_last_part_of_its_ttl_is_refreshed_once(start_server, prefetched, wide_window):
    server = start_server(stale_config(prefetched))
    server.query("popular.example")
    stored = time.monotonic()
    wait_until(lambda: time.monotonic() > stored + 2.1)  # in the window: 2 s to 4 s
    answers = [server.query("popular.example") for _ in range(5)]
    assert all(a.answer[0][0].to_text() == "192.0.2.5" and not ede_of(a) for a in answers)
    assert answers[0].answer[0].ttl <= 2  # the cached answer, counting down, while the prefetch runs
    assert server.server is not None
    wait_until(lambda: prefetched.answered >= 2)
    wait_until(lambda: not server.server.generation.cache.refreshes.running)  # type: ignore[union-attr]
    resent = server.server.stats.upstream.retransmits  # a busy machine may hold a reply past 0.2 s
    assert prefetched.count("popular.example") - resent == 2  # the fill, and exactly one prefetch
    assert server.query("popular.example").answer[0].ttl >= 3  # the refreshed entry
    assert server.server.stats.cache.prefetches == 1


def test_a_name_asked_steadily_never_expires(start_server, prefetched, wide_window):
    server = start_server(stale_config(prefetched))
    server.query("popular.example")
    assert server.server is not None
    stats = server.server.stats
    ends = time.monotonic() + 7.0  # the fill, and prefetches at about 2, 4 and 6 s
    while time.monotonic() < ends:
        response = server.query("popular.example")
        assert response.answer[0][0].to_text() == "192.0.2.5" and not ede_of(response)
        time.sleep(0.2)
    assert stats.cache.misses == 1  # only the first query ever waited for the upstream
    assert stats.cache.prefetches >= 2


def test_no_prefetch_when_it_is_off(start_server, prefetched, wide_window):
    server = start_server(stale_config(prefetched, prefetch=False))
    server.query("popular.example")
    stored = time.monotonic()
    wait_until(lambda: time.monotonic() > stored + 2.1)
    server.query("popular.example")
    assert server.server is not None
    assert server.server.stats.cache.prefetches == 0
    assert prefetched.count("popular.example") - server.server.stats.upstream.retransmits == 1


def test_no_prefetch_for_a_ttl_below_the_minimum(start_server, prefetched, wide_window):
    server = start_server(stale_config(prefetched))
    server.query("brief.example")
    stored = time.monotonic()
    wait_until(lambda: time.monotonic() > stored + 1.1)  # its last half, but TTL 2 is below the minimum
    server.query("brief.example")
    assert server.server is not None
    assert server.server.stats.cache.prefetches == 0
    assert prefetched.count("brief.example") - server.server.stats.upstream.retransmits == 1
