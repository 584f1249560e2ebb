"""Blocking through the real server: selectors, specificity, response styles, EDE, SOA, CNAME inspection,
bypass canaries. dnspython is the client; the upstream is a real fake server on 127.0.0.2."""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from conftest import base_config, ede_of
from fakedns import FakeDNS


def catalog_config(upstream: FakeDNS, **sections: object) -> dict:
    return base_config(upstream, **sections)  # base_config already uses the small test catalogue


@pytest.fixture
def upstream() -> FakeDNS:
    fake = (
        FakeDNS("127.0.0.2")
        .answer("api.platform.openai.com", "A", "192.0.2.10")
        .answer("example.org", "A", "192.0.2.20")
        .answer(
            "cdn.example.org",
            "A",
            "cdn.example.org. 60 IN CNAME edge.chatgpt.com.",
            "edge.chatgpt.com. 60 IN A 192.0.2.30",
        )
        .answer("sub.only.exact.example", "A", "192.0.2.40")
        .answer("xn--bcher-kva.example", "A", "192.0.2.50")
        .start()
    )
    yield fake
    fake.stop()


def test_domain_selector_blocks_name_and_subdomains_with_ede_and_soa(start_server, upstream):
    server = start_server(
        base_config(upstream, policy={"block": ["domain:deepseek.com"]}, blocking={"ttl": 123})
    )
    for name in ("deepseek.com", "chat.deepseek.com", "a.b.c.deepseek.com"):
        response = server.query(name)
        assert response.rcode() == dns.rcode.NXDOMAIN, name
        assert ede_of(response) == [(15, "blocked by policy: domain:deepseek.com")]
        (soa,) = response.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 123 and soa[0].minimum == 123
        assert soa.name.to_text() == "deepseek.com."
    assert server.query("notdeepseek.com").rcode() == dns.rcode.NXDOMAIN  # resolved upstream, not blocked
    assert ede_of(server.query("notdeepseek.com")) == []
    assert upstream.count("deepseek.com") == 0 and upstream.count("chat.deepseek.com") == 0


def test_matching_is_case_insensitive_and_ignores_trailing_dot(start_server, upstream):
    server = start_server(base_config(upstream, policy={"block": ["domain:DeepSeek.COM."]}))
    response = server.query("CHAT.DeepSeek.Com.")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.question[0].name.to_text() == "CHAT.DeepSeek.Com."  # the client's case is echoed


def test_idn_selector_matches_the_punycode_query(start_server, upstream):
    server = start_server(base_config(upstream, policy={"block": ["domain:bücher.example"]}))
    assert server.query("xn--bcher-kva.example").rcode() == dns.rcode.NXDOMAIN
    assert "bücher" not in ede_of(server.query("www.xn--bcher-kva.example"))[0][1]


def test_most_specific_entry_wins_and_allow_beats_block_on_a_tie(start_server, upstream):
    server = start_server(
        catalog_config(
            upstream,
            policy={
                "block": ["vendor:openai", "domain:example.org"],
                "allow": ["domain:platform.openai.com", "domain:example.org"],
            },
        )
    )
    assert server.query("chat.openai.com").rcode() == dns.rcode.NXDOMAIN
    allowed = server.query("api.platform.openai.com")
    assert allowed.rcode() == dns.rcode.NOERROR and allowed.answer[0][0].address == "192.0.2.10"
    tie = server.query("example.org")
    assert tie.rcode() == dns.rcode.NOERROR and ede_of(tie) == []


def test_vendor_block_text_names_selector_and_vendor(start_server, upstream):
    server = start_server(catalog_config(upstream, policy={"block": ["vendor:deepseek"]}))
    assert ede_of(server.query("chat.deepseek.com")) == [
        (15, "blocked by policy: vendor:deepseek (DeepSeek, CN, chat/api)")
    ]


def test_exact_catalogue_entry_does_not_cover_subdomains(start_server, upstream):
    server = start_server(catalog_config(upstream, policy={"block": ["all"]}))
    assert server.query("only.exact.example").rcode() == dns.rcode.NXDOMAIN
    assert server.query("sub.only.exact.example").rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize(
    ("style", "qtype", "rcode", "answer", "soa"),
    [
        ("nxdomain", "A", dns.rcode.NXDOMAIN, None, True),
        ("nodata", "A", dns.rcode.NOERROR, None, True),
        ("refused", "A", dns.rcode.REFUSED, None, False),
        ("null", "A", dns.rcode.NOERROR, "0.0.0.0", False),
        ("null", "AAAA", dns.rcode.NOERROR, "::", False),
        ("null", "MX", dns.rcode.NOERROR, None, True),
        ("custom", "A", dns.rcode.NOERROR, "192.0.2.99", False),
        ("custom", "AAAA", dns.rcode.NOERROR, "2001:db8::99", False),
        ("custom", "TXT", dns.rcode.NOERROR, None, True),
    ],
)
def test_response_styles(start_server, upstream, style, qtype, rcode, answer, soa):
    blocking = {"response": style, "custom_ipv4": "192.0.2.99", "custom_ipv6": "2001:db8::99", "ttl": 60}
    server = start_server(base_config(upstream, policy={"block": ["domain:deepseek.com"]}, blocking=blocking))
    for _ in range(2):  # the second answer comes from the fast path's memo: it must be identical
        response = server.query("chat.deepseek.com", qtype)
        assert response.rcode() == rcode
        assert ede_of(response)[0][0] == 15
        if answer:
            assert response.answer[0][0].to_text() == answer and response.answer[0].ttl == 60
        else:
            assert not response.answer
        assert bool(response.authority) == soa


def test_no_ede_without_edns_but_same_rcode(start_server, upstream):
    server = start_server(base_config(upstream, policy={"block": ["domain:deepseek.com"]}))
    response = server.query("chat.deepseek.com", edns=None)
    assert response.rcode() == dns.rcode.NXDOMAIN and response.edns < 0 and ede_of(response) == []


def test_cname_chain_into_a_blocked_name_is_blocked_and_named(start_server, upstream):
    server = start_server(catalog_config(upstream, policy={"block": ["vendor:openai"]}))
    for _ in range(2):  # second time through the cache and the fast path's inspection memo
        response = server.query("cdn.example.org")
        assert response.rcode() == dns.rcode.NXDOMAIN
        ((code, text),) = ede_of(response)
        assert code == 15 and "CNAME edge.chatgpt.com" in text and "vendor:openai" in text
    other = start_server(catalog_config(upstream, policy={"block": ["vendor:deepseek"]}))
    assert other.query("cdn.example.org").answer[-1][0].address == "192.0.2.30"


def test_bypass_canaries_answer_nxdomain_locally(start_server, upstream):
    server = start_server(base_config(upstream, policy={"block": []}))
    for name in ("use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"):
        response = server.query(name)
        assert response.rcode() == dns.rcode.NXDOMAIN and response.authority
    assert upstream.count() == 0


def test_bypass_protection_can_be_turned_off(start_server, upstream):
    upstream.answer("use-application-dns.net", "A", "192.0.2.77")
    server = start_server(base_config(upstream, policy={"block": []}, blocking={"bypass_protection": False}))
    assert server.query("use-application-dns.net").answer[0][0].address == "192.0.2.77"


def test_guarded_names_survive_block_all(start_server, upstream):
    upstream.answer("google.com", "A", "192.0.2.8")
    server = start_server(catalog_config(upstream, policy={"block": ["all"]}))
    assert server.query("google.com").rcode() == dns.rcode.NOERROR


def test_pause_turns_blocking_off_and_resume_back_on(start_server, upstream):
    upstream.answer("chat.deepseek.com", "A", "192.0.2.66")
    server = start_server(base_config(upstream, policy={"block": ["domain:deepseek.com"]}))
    assert server.query("chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    server.server.pause(60)
    assert server.query("chat.deepseek.com").answer[0][0].address == "192.0.2.66"
    server.server.resume()
    assert server.query("chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
