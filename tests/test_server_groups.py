"""Client groups and access control through the real server: the most specific CIDR picks the group, two
clients get different answers for the same name, strangers get REFUSED (EDE 18) and are counted. And the
README's example policies, end to end with the shipped catalogue."""

from __future__ import annotations

import dns.rcode
import pytest

from conftest import LISTS_DIR, base_config, ede_of
from fakedns import FakeDNS


@pytest.fixture
def upstream():
    fake = FakeDNS("127.0.0.2")
    for name in ("chat.deepseek.com", "chat.openai.com", "copilot.microsoft.com", "www.example.org"):
        fake.answer(name, "A", "192.0.2.1")
    fake.start()
    yield fake
    fake.stop()


def test_two_clients_get_different_answers_for_the_same_name(start_server, upstream):
    raw = base_config(
        upstream,
        policy={"block": ["vendor:openai"]},
        groups=[
            {"name": "research", "clients": ["127.0.0.0/8"], "block": ["vendor:deepseek"]},
            {"name": "finance", "clients": ["127.0.0.9/32"], "block": ["all"]},
        ],
    )
    server = start_server(raw)
    research = server.query("chat.deepseek.com", source="127.0.0.1")
    assert research.rcode() == dns.rcode.NXDOMAIN
    assert server.query("chat.openai.com", source="127.0.0.1").rcode() == dns.rcode.NOERROR
    finance = server.query("chat.openai.com", source="127.0.0.9")  # /32 is more specific than /8
    assert finance.rcode() == dns.rcode.NXDOMAIN
    assert server.query("chat.deepseek.com", source="127.0.0.9").rcode() == dns.rcode.NXDOMAIN
    stats = server.server.stats.queries
    assert stats[(1, "blocked", "research")] == 1 and stats[(1, "blocked", "finance")] == 2
    assert server.server.check("chat.openai.com", "127.0.0.9").group == "finance"


def test_clients_outside_allow_clients_are_refused_and_counted(start_server, upstream):
    raw = base_config(upstream, policy={"block": []})
    raw["server"]["allow_clients"] = ["127.0.0.1/32"]
    server = start_server(raw)
    assert server.query("www.example.org", source="127.0.0.1").rcode() == dns.rcode.NOERROR
    for _ in range(2):
        refused = server.query("www.example.org", source="127.0.0.7")
        assert refused.rcode() == dns.rcode.REFUSED and not refused.answer
        assert ede_of(refused)[0][0] == 18  # Prohibited
    with pytest.raises((EOFError, ConnectionError)):  # over TCP: closed before it holds a connection slot
        server.query("www.example.org", source="127.0.0.7", tcp=True)
    assert server.server.stats.refused_clients == 2
    assert server.server.stats.streams_refused[("tcp", "not_allowed")] == 1
    assert upstream.count("www.example.org") == 1


def shipped(upstream: FakeDNS, **policy: list[str]) -> dict:
    raw = base_config(upstream, policy=policy)
    raw["lists"] = {"refresh": "0", "catalog": str(LISTS_DIR / "vendors"), "feeds": raw["lists"]["feeds"]}
    return raw


def test_readme_policy_block_chinese_jurisdiction_ai(start_server, upstream):
    server = start_server(shipped(upstream, block=["jurisdiction:CN"]))
    blocked = server.query("chat.deepseek.com")
    assert blocked.rcode() == dns.rcode.NXDOMAIN
    assert ede_of(blocked) == [
        (15, "blocked by policy: jurisdiction:CN: vendor:deepseek (DeepSeek, CN, chat/api)")
    ]
    assert server.query("chat.openai.com").rcode() == dns.rcode.NOERROR


def test_readme_policy_block_all_ai_except_copilot(start_server, upstream):
    server = start_server(shipped(upstream, block=["all"], allow=["vendor:microsoft-copilot"]))
    assert server.query("chat.openai.com").rcode() == dns.rcode.NXDOMAIN
    assert server.query("chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    copilot = server.query("copilot.microsoft.com")
    assert copilot.rcode() == dns.rcode.NOERROR and copilot.answer
    assert server.query("www.example.org").rcode() == dns.rcode.NOERROR


def test_readme_policy_block_deepseek_only(start_server, upstream):
    server = start_server(shipped(upstream, block=["vendor:deepseek"]))
    assert ede_of(server.query("chat.deepseek.com")) == [
        (15, "blocked by policy: vendor:deepseek (DeepSeek, CN, chat/api)")
    ]
    assert server.query("chat.openai.com").rcode() == dns.rcode.NOERROR
