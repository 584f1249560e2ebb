"""The policy decides on the wire labels of every name: no byte in a label lets a name below a blocked one
escape, and ``blockdns check`` (the name a person types) decides exactly as the server does for the query.

Before this, a label the text normaliser refused (``*``, ``a+b``, ``x\\032y``) made the whole name undecidable
and it was forwarded; any zone with a wildcard then answered it.
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from blockdns import dnsname
from blockdns.cli.main import app
from blockdns.errors import InvalidName
from blockdns.names import query_name

from conftest import base_config, ede_of
from fakedns import FakeDNS

# Any bytes, folded to lowercase the way a resolver compares names (ASCII letters only).
LABEL = st.binary(min_size=1, max_size=63).map(bytes.lower)
LABELS = st.lists(LABEL, min_size=1, max_size=4)
BLOCKED = (b"deepseek", b"com")


def wire(labels: list[bytes] | tuple[bytes, ...]) -> bytes:
    return dnsname.join(list(labels))


@settings(max_examples=500, deadline=None)
@given(LABELS)
@example([b"@"])  # alone, a master file's origin: escaped, or it would read back as the root
@example([b"a;b", b"(x)", b'"q"', b"$o"])
@example([b"a.b", b"\\"])
def test_text_key_is_one_to_one_printable_and_parses_back(labels):
    name = wire(labels)
    key = dnsname.text_key(name)
    assert all(0x21 <= ord(char) <= 0x7E for char in key)  # nothing a terminal would act on
    assert key.count(".") == len(labels) - 1  # dots separate labels and nothing else
    assert query_name(key) == name  # what a person copies from a log is the name the client sent


@settings(max_examples=300, deadline=None)
@given(LABELS)
@example([b"*"])
@example([b"a+b"])
@example([b"x y", b"chat"])
@example([b"\x1b[2j"])
def test_any_label_bytes_below_a_blocked_name_are_blocked(labels):
    group = _POLICY.group_for(None)
    decision = group.decide(dnsname.text_key(wire([*labels, *BLOCKED])))
    assert decision.blocked and decision.entry == "deepseek.com"


@settings(max_examples=300, deadline=None)
@given(LABELS)
@example([b"chat.deepseek"])  # one label that reads like the blocked name: a different domain under com
@example([b"deepseek.com"])
def test_a_dot_inside_a_label_never_reads_as_a_blocked_name(labels):
    group = _POLICY.group_for(None)
    name = wire([*labels, b"com"]) if b"." in b"".join(labels) else wire([b"x.y", *labels, b"org"])
    assert not group.decide(dnsname.text_key(name)).blocked


@pytest.fixture(scope="module")
def wildcard_upstream():
    """An upstream that answers every name (as a zone with a wildcard would) and counts what reaches it."""
    fake = FakeDNS("127.0.0.2")
    fake.default_rcode = "NOERROR"
    fake.start()
    yield fake
    fake.stop()


def test_server_blocks_any_label_bytes_and_check_agrees(start_server, wildcard_upstream):
    server = start_server(base_config(wildcard_upstream, policy={"block": ["domain:deepseek.com"]}))
    before = wildcard_upstream.count()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(LABELS)
    @example([b"*"])
    @example([b"a+b"])
    @example([b"x y", b"chat"])
    @example([b"\x00", b"\xff"])
    def blocked_over_the_wire(labels):
        try:
            name = dns.name.Name([*labels, *BLOCKED, b""])
        except dns.name.NameTooLong:
            return
        query = dns.message.make_query(name, "A", use_edns=0)
        response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=5)
        assert response.rcode() == dns.rcode.NXDOMAIN
        assert ede_of(response) == [(15, "blocked by policy: domain:deepseek.com")]
        # The name as a person would type it (dnspython's presentation form) gets the same verdict.
        assert server.server.check(name.to_text(), None).blocked

    blocked_over_the_wire()
    assert wildcard_upstream.count() == before  # not one of them was forwarded

    # A label holding a dot is one label: chat\.deepseek.com is a name under com, not under deepseek.com.
    other = dns.name.Name([b"chat.deepseek", b"com", b""])
    response = dns.query.udp(dns.message.make_query(other, "A"), "127.0.0.1", port=server.port, timeout=5)
    assert ede_of(response) == [] and wildcard_upstream.count() == before + 1
    assert not server.server.check(other.to_text(), None).blocked


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("*.deepseek.com", "*.deepseek.com"),
        ("a+b.deepseek.com", "a+b.deepseek.com"),
        ("x\\032y.chat.deepseek.com", "x\\032y.chat.deepseek.com"),
        ("CHAT.DeepSeek.com.", "chat.deepseek.com"),
    ],
)
def test_check_cli_blocks_what_the_server_blocks(typed, shown, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./blockdns.toml: the built-in defaults, which block every AI vendor
    result = CliRunner().invoke(app, ["check", typed])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{shown}: BLOCKED")


def test_check_cli_refuses_a_bad_name_and_a_bad_client_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad_name = CliRunner().invoke(app, ["check", "a..b"])
    assert bad_name.exit_code == 2 and len(bad_name.output.strip().splitlines()) == 1
    bad_client = CliRunner().invoke(app, ["check", "chat.deepseek.com", "--client", "notanip"])
    assert bad_client.exit_code == 2
    assert bad_client.output.strip().splitlines() == ["blockdns: --client: not an IP address: 'notanip'"]


def test_query_name_refuses_text_no_name_can_have():
    for text in ("", "a..b", "x" * 64 + ".com", ".".join(["abcdefghi"] * 30)):
        with pytest.raises(InvalidName):
            query_name(text)


def _policy():
    from blockdns import config
    from blockdns.runtime import build_policy

    settings = config.from_dict(base_config(None, policy={"block": ["domain:deepseek.com"]}))
    return build_policy(settings)


_POLICY = _policy()


def test_a_query_the_fast_parser_declines_is_decided_on_the_same_labels(start_server, wildcard_upstream):
    """An extra additional record sends a query through triage, which re-encodes it from dnslib's labels:
    the re-encoded name must keep every byte, so the policy sees what the client asked."""
    server = start_server(base_config(wildcard_upstream, policy={"block": ["domain:deepseek.com"]}))

    def ask(name: dns.name.Name) -> dns.message.Message:
        query = dns.message.make_query(name, "A", use_edns=0)
        query.additional.append(dns.rrset.from_text("extra.example.", 60, "IN", "TXT", '"hello"'))
        return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=5)

    for labels in ([b"*"], [b"a.b"], [b"x y", b"\x1b"]):
        response = ask(dns.name.Name([*labels, *BLOCKED, b""]))
        assert ede_of(response) == [(15, "blocked by policy: domain:deepseek.com")], labels
    before = wildcard_upstream.count()
    assert ede_of(ask(dns.name.Name([b"chat.deepseek", b"com", b""]))) == []
    assert wildcard_upstream.count() == before + 1
