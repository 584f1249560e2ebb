"""Rate limiting (issue 16): a token bucket per client prefix over UDP, slipped truncated replies and silent
drops past it, TCP never limited, exempt prefixes, metrics by action, limits kept or renewed on reload."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from blockdns import config
from blockdns.config import RateLimitSettings
from blockdns.errors import ConfigError
from blockdns.ops.snapshot import stats_body, take_snapshot
from blockdns.server.ratelimit import RateLimiter

from conftest import TEST_LISTS_TOML, RunningServer, base_config, server_metrics
from fakedns import FakeDNS
from waiting import wait_until

NAME = "example.com"
FLOODER, NEIGHBOUR, OTHER = "127.0.1.1", "127.0.1.2", "127.0.2.1"  # the first two share a /24
WARMUP = "127.0.3.1"  # asks first, so that the answer is cached


@pytest.fixture
def upstream() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.0.2").answer(NAME, "A", "192.0.2.1").start()
    yield fake
    fake.stop()


def limited_config(upstream: FakeDNS, **limits: Any) -> dict[str, Any]:
    return base_config(upstream, policy={"block": []}, ratelimit=limits)


class Burst:
    """``count`` queries sent from ``source`` as fast as one socket can, then every reply read."""

    def __init__(self, server: RunningServer, source: str, count: int, name: str = NAME) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.queries = [dns.message.make_query(name, "A") for _ in range(count)]
        for query in self.queries:
            self.sock.sendto(query.to_wire(), ("127.0.0.1", server.port))

    def replies(self, expected: int, quiet: float = 0.3, seconds: float = 5.0) -> list[dns.message.Message]:
        """The replies: ``expected`` of them (within ``seconds``), and any more that come within ``quiet``."""
        replies: list[dns.message.Message] = []
        deadline = time.monotonic() + seconds
        while True:
            wait = deadline - time.monotonic() if len(replies) < expected else quiet
            if wait <= 0:
                break
            self.sock.settimeout(wait)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                break
            replies.append(dns.message.from_wire(data))
        self.sock.close()
        return replies


def split(replies: list[dns.message.Message]) -> tuple[list[dns.message.Message], list[dns.message.Message]]:
    """(answered, slipped)."""
    slipped = [reply for reply in replies if reply.flags & dns.flags.TC]
    return [reply for reply in replies if not reply.flags & dns.flags.TC], slipped


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ("[ratelimit]\nclient_qps = -1\n", "ratelimit.client_qps", "greater than or equal to 0"),
        ("[ratelimit]\nclient_qps = 2.5\n", "ratelimit.client_qps", "integer"),
        ("[ratelimit]\nburst = 'lots'\n", "ratelimit.burst", "integer"),
        ("[ratelimit]\nipv4_prefix = 33\n", "ratelimit.ipv4_prefix", "less than or equal to 32"),
        ("[ratelimit]\nipv6_prefix = 129\n", "ratelimit.ipv6_prefix", "less than or equal to 128"),
        ("[ratelimit]\nslip = -2\n", "ratelimit.slip", "greater than or equal to 0"),
        ("[ratelimit]\nexempt = ['10.0.0.0/33']\n", "ratelimit.exempt", "10.0.0.0/33"),
        ("[ratelimit]\nexempt = ['nope']\n", "ratelimit.exempt", "nope"),
        ("[ratelimit]\nqps = 10\n", "ratelimit.qps", "unknown key"),
    ],
)
def test_a_bad_ratelimit_key_is_one_line_naming_it(tmp_path, toml, key, words):
    path = tmp_path / "blockdns.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert message.startswith(str(path.resolve())) and key in message and words in message, message
    assert "\n" not in message


def test_the_defaults_are_the_contracts_and_leave_the_limiter_off():
    limits = config.Settings().ratelimit
    assert (limits.client_qps, limits.burst, limits.ipv4_prefix, limits.ipv6_prefix, limits.slip) == (
        0,
        0,
        24,
        56,
        2,
    )
    assert limits.exempt == []
    assert RateLimitSettings(client_qps=10).capacity == 20  # burst 0 means client_qps
    assert RateLimitSettings(client_qps=10, burst=5).capacity == 15


# -------------------------------------------------------------------------- the limiter, time passed in


def test_a_bucket_holds_capacity_and_refills_at_client_qps():
    limiter = RateLimiter(RateLimitSettings(client_qps=4, burst=2))  # capacity 6, a token every 0.25 s
    now = 1000.0
    assert [limiter.admit("192.0.2.1", now) for _ in range(8)] == [True] * 6 + [False] * 2
    assert not limiter.admit("192.0.2.1", now + 0.24)
    assert limiter.admit("192.0.2.1", now + 0.25)  # one token back
    assert not limiter.admit("192.0.2.1", now + 0.25)
    # a long rest refills it to capacity, no more
    assert [limiter.admit("192.0.2.1", now + 100) for _ in range(7)] == [True] * 6 + [False]
    # a steady client_qps is always admitted
    assert all(limiter.admit("198.51.100.9", now + index / 4) for index in range(40))


def test_a_bucket_is_per_prefix():
    limiter = RateLimiter(RateLimitSettings(client_qps=1, burst=1, ipv4_prefix=24, ipv6_prefix=56))
    now = 5.0
    assert limiter.admit("192.0.2.1", now) and limiter.admit("192.0.2.200", now)  # one /24: capacity 2
    assert not limiter.admit("192.0.2.77", now)
    assert not limiter.admit("::ffff:192.0.2.5", now)  # an IPv4-mapped address is its IPv4 address
    assert limiter.admit("192.0.3.1", now)  # the next /24 has its own
    assert limiter.admit("2001:db8:0:1::1", now) and limiter.admit("2001:db8:0:ff::2", now)
    assert not limiter.admit("2001:db8:0:fe::3%eth0", now)  # the same /56
    assert limiter.admit("2001:db8:0:100::1", now)  # the next /56
    assert limiter.admit("0.0.0.0", now)  # IPv4 0/24 and IPv6 ::/56 never share a key
    assert limiter.admit("::", now) and limiter.admit("::1", now) and not limiter.admit("::2", now)


def test_an_exempt_network_is_never_limited_and_its_neighbours_are():
    limiter = RateLimiter(
        RateLimitSettings(client_qps=1, burst=1, exempt=["192.0.2.128/25", "2001:db8::/64"])
    )
    assert all(limiter.admit("192.0.2.200", 1.0) for _ in range(100))
    assert all(limiter.admit("2001:db8::5", 1.0) for _ in range(100))
    assert [limiter.admit("192.0.2.1", 1.0) for _ in range(3)] == [True, True, False]
    assert len(limiter) == 1  # exempt clients take no bucket


def test_the_table_is_bounded_and_forgets_a_prefix_that_went_quiet():
    limiter = RateLimiter(RateLimitSettings(client_qps=1, burst=1), max_buckets=100)  # generations of 50
    now = 1.0
    assert limiter.admit("10.0.0.1", now) and limiter.admit("10.0.0.1", now)
    assert not limiter.admit("10.0.0.1", now)  # drained
    for index in range(1000):  # a spoofed flood from 1000 prefixes, the flooder going on between them
        assert limiter.admit(f"10.{index // 256 + 1}.{index % 256}.1", now)
        assert len(limiter) <= 100
        if index % 40 == 0:
            assert not limiter.admit("10.0.0.1", now)  # kept: heard from in every generation
    assert not limiter.admit("10.0.0.1", now)
    for index in range(100):
        limiter.admit(f"10.9.{index}.1", now)
    assert limiter.admit("10.0.0.1", now)  # quiet through a whole generation: back with a full bucket


def test_the_addresses_of_a_prefix_share_its_bucket_across_generations():
    """A prefix that keeps sending from one address is kept through new generations, and a new address in
    it gets that bucket, never a second (full) one."""
    limiter = RateLimiter(RateLimitSettings(client_qps=1, burst=1), max_buckets=4)  # generations of 2
    now = 1.0
    assert limiter.admit("10.0.0.1", now) and limiter.admit("10.0.0.2", now)
    for index in range(1, 9):  # new prefixes: four new generations
        assert limiter.admit(f"10.0.{index}.1", now)
        assert not limiter.admit("10.0.0.1", now)
        assert len(limiter) <= 4
    assert not limiter.admit("10.0.0.3", now) and not limiter.admit("10.0.0.2", now)


@pytest.mark.parametrize(("slip", "pattern"), [(0, "-----"), (1, "sssss"), (2, "-s-s-"), (3, "--s--")])
def test_every_slip_th_limited_query_slips(slip, pattern):
    limiter = RateLimiter(RateLimitSettings(client_qps=1, slip=slip))
    assert "".join("s" if limiter.slips() else "-" for _ in range(5)) == pattern


# ----------------------------------------------------------------------------------- the real server


def test_a_burst_is_limited_exactly_and_a_client_in_another_prefix_is_not(start_server, upstream):
    """A burst of 20 from one client (capacity 1 + 4, sent far faster than a token comes back): 5 answered,
    and of the 15 limited every second one slipped (7), the rest dropped (8). Another address in its /24
    shares its bucket; a client in another /24, asking in the middle of it, is answered every time."""
    server = start_server(limited_config(upstream, client_qps=1, burst=4, slip=2))
    server.query(NAME, source=WARMUP)  # cached: the burst and the others are fast-path hits
    stats = server.server.stats
    flood = Burst(server, FLOODER, 20)
    others = [server.query(NAME, source=OTHER, timeout=2) for _ in range(3)]
    answered, slipped = split(flood.replies(12))
    assert len(answered) == 5 and len(slipped) == 7
    assert (stats.ratelimited_slipped, stats.ratelimited_dropped) == (7, 8)
    assert all(reply.answer[0][0].address == "192.0.2.1" for reply in answered + others)
    assert {reply.id for reply in answered + slipped} <= {query.id for query in flood.queries}
    neighbour = Burst(server, NEIGHBOUR, 2).replies(1)
    assert len(neighbour) == 1 and neighbour[0].flags & dns.flags.TC  # slip, drop: the flooder's bucket
    assert server.query(NAME, source=OTHER, timeout=2).answer[0][0].address == "192.0.2.1"
    samples = server_metrics(server)
    assert samples[("blockdns_ratelimited_total", (("action", "slip"),))] == 8
    assert samples[("blockdns_ratelimited_total", (("action", "drop"),))] == 9
    # limited queries are not answered queries: the warm-up, the flooder's 5 and the other client's 4
    assert stats.total_queries() == 1 + 5 + 4


def test_a_sustained_flood_gets_its_rate_while_another_client_is_served(start_server, upstream):
    """One client sends 400 queries over a few tenths of a second while another asks every 20 ms: the
    flooder is answered no more than its bucket and its rate allow, the other client every time."""
    server = start_server(limited_config(upstream, client_qps=2, burst=8, slip=2))  # capacity 10
    server.query(NAME, source=WARMUP)
    stats = server.server.stats
    sent = threading.Event()
    started = time.monotonic()

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((FLOODER, 0))
            wire = dns.message.make_query(NAME, "A").to_wire()
            for index in range(400):
                sock.sendto(wire, ("127.0.0.1", server.port))
                if index % 20 == 19:
                    time.sleep(0.01)  # paced, so the kernel's receive buffer never overflows
        sent.set()

    thread = threading.Thread(target=flood)
    thread.start()
    others = []
    while len(others) < 8 and not (others and sent.is_set()):  # 8 at most: the other client's own bucket
        others.append(server.query(NAME, source=OTHER, timeout=2))
        time.sleep(0.02)
    thread.join(10)
    assert others and all(reply.answer[0][0].address == "192.0.2.1" for reply in others)

    def limited() -> int:
        return stats.ratelimited_slipped + stats.ratelimited_dropped

    flooder_answered = lambda: stats.total_queries() - 1 - len(others)  # noqa: E731
    assert wait_until(lambda: limited() + flooder_answered() == 400, 10)
    span = time.monotonic() - started
    assert 10 <= flooder_answered() <= 10 + 2 * span + 1
    assert abs(stats.ratelimited_slipped - stats.ratelimited_dropped) <= 1


def test_the_slip_is_a_bare_truncated_reply_and_tcp_gets_the_answer(start_server, upstream):
    """The slipped reply carries the query's ID and question, TC and nothing else, no larger than the query;
    the client's retry over TCP is answered, and TCP is never limited."""
    server = start_server(limited_config(upstream, client_qps=1, burst=1, slip=1))
    for _ in range(2):
        assert not server.query(NAME, source=FLOODER).flags & dns.flags.TC
    query = dns.message.make_query(NAME, "A", use_edns=0, payload=1232)
    query.use_edns(0, payload=1232, options=[dns.edns.GenericOption(10, b"\x01" * 8)])  # a client cookie
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((FLOODER, 0))
    sock.settimeout(5)
    with sock:
        wire = query.to_wire()
        sock.sendto(wire, ("127.0.0.1", server.port))
        data = sock.recv(65535)
    slipped = dns.message.from_wire(data)
    assert slipped.flags & dns.flags.TC and slipped.flags & dns.flags.QR
    assert slipped.id == query.id and slipped.question == query.question
    assert slipped.rcode() == dns.rcode.NOERROR and not slipped.answer and not slipped.authority
    assert slipped.edns == 0 and not slipped.options
    assert len(data) <= len(wire)
    without_edns = dns.message.make_query(NAME, "A", use_edns=False)
    reply = dns.query.udp(without_edns, "127.0.0.1", port=server.port, source=FLOODER, timeout=5)
    assert reply.flags & dns.flags.TC and reply.edns == -1  # no OPT asked, none given
    # what a resolver library does with TC: ask again over TCP, from the same address
    retried = dns.query.udp_with_fallback(query, "127.0.0.1", port=server.port, source=FLOODER, timeout=5)
    assert retried[1] and retried[0].answer[0][0].address == "192.0.2.1"
    for _ in range(10):  # well past the bucket, over TCP
        assert server.query(NAME, tcp=True, source=FLOODER).answer[0][0].address == "192.0.2.1"
    assert server.server.stats.ratelimited_dropped == 0


def test_slip_zero_drops_every_limited_query(start_server, upstream):
    server = start_server(limited_config(upstream, client_qps=1, burst=2, slip=0))
    stats = server.server.stats
    replies = Burst(server, FLOODER, 10).replies(3)
    assert len(split(replies)[0]) == 3 and not split(replies)[1]
    assert wait_until(lambda: stats.ratelimited_dropped == 7) and stats.ratelimited_slipped == 0


def test_an_exempt_prefix_is_never_limited(start_server, upstream):
    server = start_server(limited_config(upstream, client_qps=1, burst=1, exempt=["127.0.1.0/28"]))
    replies = Burst(server, FLOODER, 30).replies(30)
    assert len(split(replies)[0]) == 30
    outside = Burst(server, "127.0.1.17", 5).replies(3)  # the same /24, outside the /28
    assert len(split(outside)[0]) == 2
    assert server.server.stats.ratelimited_slipped == 1


def test_a_drained_bucket_refills_at_client_qps(start_server, upstream):
    """Drained, a client is answered again once a token has come back (1/client_qps s), one answer per
    token: polling with slip 1 costs nothing (a limited query takes no token) and always gets a reply."""
    server = start_server(limited_config(upstream, client_qps=2, burst=1, slip=1))  # capacity 3, 0.5 s
    server.query(NAME, source=WARMUP)
    started = time.monotonic()  # the server's clock too: no token is taken before this
    assert len(split(Burst(server, FLOODER, 3).replies(3))[0]) == 3
    assert server.query(NAME, source=FLOODER).flags & dns.flags.TC

    def answered() -> bool:
        return not server.query(NAME, source=FLOODER, timeout=2).flags & dns.flags.TC

    assert wait_until(answered, 5)
    assert time.monotonic() - started >= 0.5  # not before a token could have come back
    assert server.query(NAME, source=FLOODER).flags & dns.flags.TC  # and only the one


def test_with_client_qps_zero_there_is_no_limiter(start_server, upstream):
    server = start_server(limited_config(upstream, client_qps=0, burst=5, slip=1))
    assert server.server.generation.ratelimit is None
    assert len(split(Burst(server, FLOODER, 50).replies(50))[0]) == 50
    stats = server.server.stats
    assert stats.ratelimited_slipped == stats.ratelimited_dropped == 0


def test_the_api_stats_count_limited_queries(start_server, upstream):
    server = start_server(limited_config(upstream, client_qps=1, burst=1, slip=1))
    Burst(server, FLOODER, 4).replies(4)

    async def document() -> dict[str, Any]:
        return stats_body(take_snapshot(server.server, None))

    problems = server.call(document())["problems"]
    assert problems["ratelimited_slipped"] == 2 and problems["ratelimited_dropped"] == 0


# -------------------------------------------------------------------------------------------- reload


def config_file(path: Path, upstream: FakeDNS, limits: str, block: str = "") -> Path:
    path.write_text(
        f"""[server]
listen = ["127.0.0.1:0"]

[resolver]
mode = "forward"
upstreams = ["{upstream.url}"]

[policy]
block = [{block}]

[ratelimit]
{limits}

{TEST_LISTS_TOML}
[querylog]
path = ""

[api]
listen = ""
"""
    )
    return path


def test_a_reload_keeps_the_buckets_while_the_limits_stay_and_renews_them_when_they_change(
    tmp_path, upstream
):
    path = config_file(tmp_path / "blockdns.toml", upstream, "client_qps = 1\nburst = 1\nslip = 1")
    server = RunningServer(config.load(path)).start()
    try:
        limiter = server.server.generation.ratelimit
        assert len(split(Burst(server, FLOODER, 2).replies(2))[0]) == 2
        config_file(path, upstream, "client_qps = 1\nburst = 1\nslip = 1", block='"vendor:deepseek"')
        assert server.call(server.server.reload()).ok
        assert server.server.generation.ratelimit is limiter  # the policy changed, the limits did not
        assert server.query(NAME, source=FLOODER).flags & dns.flags.TC  # still drained
        config_file(path, upstream, "client_qps = 1\nburst = 2\nslip = 1")
        assert server.call(server.server.reload()).ok
        assert server.server.generation.ratelimit is not limiter
        assert len(split(Burst(server, FLOODER, 4).replies(4))[0]) == 3  # a fresh bucket, capacity 3
        config_file(path, upstream, "client_qps = 0")
        assert server.call(server.server.reload()).ok
        assert server.server.generation.ratelimit is None
        assert len(split(Burst(server, FLOODER, 10).replies(10))[0]) == 10
    finally:
        server.stop()
