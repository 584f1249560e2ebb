"""``blockdns serve`` in recursive mode, end to end: a dnspython client asks the real server, which resolves
through the fake hierarchy of loopback authorities (see fakeauth)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dns.rcode
import pytest

from conftest import RunningServer, base_config, ede_of
from fakeauth import ROOT_SERVERS, FakeHierarchy, build_test_hierarchy


@pytest.fixture(scope="module")
def hierarchy() -> Iterator[FakeHierarchy]:
    with build_test_hierarchy() as servers:
        yield servers


@pytest.fixture
def server(
    hierarchy: FakeHierarchy, start_server: Callable[[dict[str, Any]], RunningServer]
) -> RunningServer:
    hierarchy.reset()
    resolver = {"mode": "recursive", "root_hints": ROOT_SERVERS, "ipv6": False, "timeout": 0.5}
    return start_server(base_config(resolver=resolver))


def test_names_resolve_from_the_root_through_the_server(
    server: RunningServer, hierarchy: FakeHierarchy
) -> None:
    response = server.query("alias.glue.test")
    assert response.rcode() == dns.rcode.NOERROR
    assert [(str(rrset.name), rrset.rdtype) for rrset in response.answer] == [
        ("alias.glue.test.", 5),
        ("www.target.example.", 1),
    ]
    cold = hierarchy.total()
    again = server.query("alias.glue.test")
    assert again.answer == response.answer and hierarchy.total() == cold


def test_negative_answers_pass_through_with_their_soa(server: RunningServer) -> None:
    response = server.query("nonexistent.target.example")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.authority and response.authority[0].rdtype == 6


def test_a_large_answer_reaches_a_tcp_client(server: RunningServer) -> None:
    udp = server.query("big.target.example", "TXT")
    assert udp.flags & 0x0200  # too big for the client's 1232 bytes: truncated
    tcp = server.query("big.target.example", "TXT", tcp=True)
    assert tcp.rcode() == dns.rcode.NOERROR and len(tcp.answer[0][0].strings) == 24


def test_a_delegation_loop_is_a_servfail_that_says_why(server: RunningServer) -> None:
    response = server.query("www.loop1.test")
    assert response.rcode() == dns.rcode.SERVFAIL
    assert any(code == 0 and "delegation loop" in text for code, text in ede_of(response))


def test_blocking_answers_the_same_in_recursive_and_forward_mode(
    hierarchy: FakeHierarchy, start_server: Callable[[dict[str, Any]], RunningServer]
) -> None:
    from fakedns import FakeDNS

    policy = {"block": ["domain:target.example"]}
    recursive = start_server(
        base_config(
            policy=policy,
            resolver={"mode": "recursive", "root_hints": ROOT_SERVERS, "ipv6": False, "timeout": 0.5},
        )
    )
    upstream = FakeDNS("127.0.0.2")
    upstream.answer(
        "alias.glue.test",
        "A",
        "alias.glue.test. 300 IN CNAME www.target.example.",
        "www.target.example. 300 IN A 192.0.2.1",
    )
    upstream.start()
    try:
        forward = start_server(base_config(upstream, policy=policy))
        for name in ("www.target.example", "alias.glue.test"):
            answers = [server.query(name) for server in (recursive, forward)]
            assert {a.rcode() for a in answers} == {dns.rcode.NXDOMAIN}, name
            assert ede_of(answers[0]) == ede_of(answers[1]) != [], name
            assert [str(rr) for a in answers for rr in a.answer] == [], name
    finally:
        upstream.stop()
