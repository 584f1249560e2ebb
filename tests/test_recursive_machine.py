"""The recursive resolver's state machine, driven without any I/O: each question it asks is answered by a
reply built with dnslib, and what it asks next is checked."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.message
import pytest
from dnslib import QTYPE, RD, RR, DNSHeader, DNSQuestion, DNSRecord

from blockdns.dnsname import from_text, to_text
from blockdns.errors import UpstreamError
from blockdns.resolve.recursive.cache import RANK_ANSWER, RANK_GLUE, RecursionCache
from blockdns.resolve.recursive.hints import RootHints
from blockdns.resolve.recursive.limits import Budget, Limits
from blockdns.resolve.recursive.machine import (
    Ask,
    Context,
    DelegationLoop,
    NeedAddresses,
    Resolution,
    Result,
)
from blockdns.resolve.recursive.servers import ServerTable
from blockdns.wire import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_OTHER,
    FORMERR,
    NOERROR,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    TYPE_A,
    TYPE_AAAA,
    TYPE_NS,
)

from conftest import render_result

ROOT = ("198.51.100.1", 53)
COM = ("198.51.100.10", 53)
COM2 = ("198.51.100.11", 53)
EXAMPLE = ("198.51.100.20", 53)
EXAMPLE2 = ("198.51.100.21", 53)
NET = ("198.51.100.30", 53)
OTHER = ("198.51.100.40", 53)

# ------------------------------------------------------------------------------------ reply building


def reply(
    ask: Ask,
    answer: str = "",
    authority: str = "",
    additional: str = "",
    *,
    rcode: int = NOERROR,
    aa: bool = True,
    extra: list[RR] | None = None,
) -> bytes:
    """A reply to ``ask`` with records given in zone-file syntax (TTL 300)."""
    record = DNSRecord(
        DNSHeader(id=0, qr=1, aa=int(aa), rcode=rcode), q=DNSQuestion(to_text(ask.qname), ask.qtype, 1)
    )
    for text, add in ((answer, record.add_answer), (authority, record.add_auth), (additional, record.add_ar)):
        if text.strip():
            add(*RR.fromZone(text, ttl=300))
    for rr in extra or []:
        record.add_answer(rr)
    return record.pack()


def referral(ask: Ask, zone: str, servers: dict[str, str | None]) -> bytes:
    """A referral to ``zone`` with NS names → glue address (None: no glue)."""
    authority = "\n".join(f"{zone} NS {name}" for name in servers)
    additional = "\n".join(f"{name} A {address}" for name, address in servers.items() if address)
    return reply(ask, authority=authority, additional=additional, aa=False)


def soa(zone: str, minimum: int = 60) -> str:
    return f"{zone} SOA ns1.{zone} hostmaster.{zone} 1 7200 900 1209600 {minimum}"


# --------------------------------------------------------------------------------- driving the machine


def context(
    *,
    minimise: bool = True,
    cache: RecursionCache | None = None,
    limits: Limits | None = None,
    hints: tuple[tuple[str, int], ...] = (ROOT,),
    servers: ServerTable | None = None,
) -> Context:
    return Context(
        cache=cache if cache is not None else RecursionCache(10_000),
        servers=servers or ServerTable(max_timeout=2.0),
        hints=RootHints(hints, False),
        limits=limits or Limits(),
        minimise=minimise,
        ipv6=False,
        rng=random.Random(7),
    )


def machine(name: str, qtype: int = TYPE_A, ctx: Context | None = None, *, do: bool = False) -> Resolution:
    return Resolution(ctx or context(), Budget(deadline=100.0), from_text(name), qtype, do=do)


Responder = Callable[[Ask], "bytes | UpstreamError"]


@dataclass
class Network:
    """Answers each Ask from a table keyed by (server, qname text, qtype); records what was asked."""

    table: dict[tuple[tuple[str, int], str, int], Responder]
    asked: list[tuple[tuple[str, int], str, int]] = field(default_factory=list)
    now: float = 0.0

    def run(self, resolution: Resolution, addresses: dict[str, list[str]] | None = None) -> Result:
        for _ in range(100):
            action = resolution.next_action(self.now)
            if isinstance(action, Result):
                return action
            if isinstance(action, NeedAddresses):
                found = (addresses or {}).get(to_text(action.name), [])
                resolution.on_addresses(action, found)
                continue
            key = (action.server, to_text(action.qname), action.qtype)
            self.asked.append(key)
            responder = self.table.get(key)
            outcome = (
                responder(action) if responder else UpstreamError("timed out", EDE_NO_REACHABLE_AUTHORITY)
            )
            self.now += 0.01
            if isinstance(outcome, UpstreamError):
                resolution.on_failure(action, outcome, self.now)
            else:
                resolution.on_reply(action, outcome, 0.01, self.now)
        raise AssertionError("the resolution did not finish")


def example_com_network(final: Responder) -> dict[tuple[tuple[str, int], str, int], Responder]:
    """root → com. → example.com. with glue; ``final`` answers www.example.com A at EXAMPLE."""
    return {
        (ROOT, "com.", TYPE_A): lambda ask: referral(ask, "com.", {"a.gtld.com.": COM[0]}),
        (COM, "example.com.", TYPE_A): lambda ask: referral(
            ask, "example.com.", {"ns1.example.com.": EXAMPLE[0]}
        ),
        (EXAMPLE, "www.example.com.", TYPE_A): final,
    }


def www_answer(ask: Ask) -> bytes:
    return reply(ask, "www.example.com. A 192.0.2.80")


# ----------------------------------------------------------------------------------------- iteration


def test_referrals_with_glue_lead_to_the_answer_with_minimised_questions() -> None:
    network = Network(example_com_network(www_answer))
    result = network.run(machine("www.example.com"))
    assert network.asked == [
        (ROOT, "com.", TYPE_A),
        (COM, "example.com.", TYPE_A),
        (EXAMPLE, "www.example.com.", TYPE_A),
    ]
    assert result.rcode == NOERROR
    assert result.addresses() == ["192.0.2.80"]
    assert result.server == EXAMPLE[0]


def test_without_minimisation_every_server_sees_the_full_question() -> None:
    table = {
        (ROOT, "www.example.com.", TYPE_AAAA): lambda ask: referral(ask, "com.", {"a.gtld.com.": COM[0]}),
        (COM, "www.example.com.", TYPE_AAAA): lambda ask: referral(
            ask, "example.com.", {"ns1.example.com.": EXAMPLE[0]}
        ),
        (EXAMPLE, "www.example.com.", TYPE_AAAA): lambda ask: reply(
            ask, "www.example.com. AAAA 2001:db8::80"
        ),
    }
    network = Network(table)
    result = network.run(machine("www.example.com", TYPE_AAAA, context(minimise=False)))
    assert [key[1] for key in network.asked] == ["www.example.com."] * 3
    assert result.addresses() == ["2001:db8::80"]


def test_empty_non_terminal_reveals_one_more_label_at_a_time() -> None:
    table = example_com_network(www_answer)
    table[(EXAMPLE, "b.example.com.", TYPE_A)] = lambda ask: reply(ask, authority=soa("example.com."))
    table[(EXAMPLE, "a.b.example.com.", TYPE_A)] = lambda ask: reply(ask, "a.b.example.com. A 192.0.2.1")
    table[(EXAMPLE, "x.a.b.example.com.", TYPE_AAAA)] = lambda ask: reply(ask, "x.a.b.example.com. AAAA ::1")
    network = Network(table)
    result = network.run(machine("x.a.b.example.com", TYPE_AAAA))
    assert [key[1:] for key in network.asked[2:]] == [
        ("b.example.com.", TYPE_A),
        ("a.b.example.com.", TYPE_A),
        ("x.a.b.example.com.", TYPE_AAAA),
    ]
    assert result.addresses() == ["::1"]


def test_nxdomain_for_a_minimised_name_falls_back_to_the_full_question() -> None:
    # A broken server says NXDOMAIN for the empty non-terminal b.example.com (RFC 9156 §2.3).
    table = example_com_network(www_answer)
    table[(EXAMPLE, "b.example.com.", TYPE_A)] = lambda ask: reply(
        ask, authority=soa("example.com."), rcode=3
    )
    table[(EXAMPLE, "a.b.example.com.", TYPE_A)] = lambda ask: reply(ask, "a.b.example.com. A 192.0.2.9")
    network = Network(table)
    result = network.run(machine("a.b.example.com"))
    assert network.asked[-2:] == [(EXAMPLE, "b.example.com.", TYPE_A), (EXAMPLE, "a.b.example.com.", TYPE_A)]
    assert result.addresses() == ["192.0.2.9"]


def test_servfail_for_a_minimised_name_falls_back_to_the_full_question() -> None:
    table = example_com_network(www_answer)
    table[(ROOT, "com.", TYPE_A)] = lambda ask: reply(ask, rcode=SERVFAIL)
    table[(ROOT, "www.example.com.", TYPE_A)] = lambda ask: referral(ask, "com.", {"a.gtld.com.": COM[0]})
    table[(COM, "www.example.com.", TYPE_A)] = lambda ask: referral(
        ask, "example.com.", {"ns.example.com.": EXAMPLE[0]}
    )
    network = Network(table)
    result = network.run(machine("www.example.com"))
    assert [key[1] for key in network.asked] == [
        "com.",
        "www.example.com.",
        "www.example.com.",
        "www.example.com.",
    ]
    assert result.addresses() == ["192.0.2.80"]


def test_long_names_are_minimised_in_bounded_steps() -> None:
    name = ".".join("abcdefghijklmnop") + ".example.com"
    table = example_com_network(www_answer)
    for count in range(3, 20):
        label = ".".join(name.split(".")[-count:]) + "."

        def nodata(ask: Ask) -> bytes:
            return reply(ask, authority=soa("example.com."))

        table[(EXAMPLE, label, TYPE_A)] = nodata
    table[(EXAMPLE, name + ".", TYPE_A)] = lambda ask: reply(ask, f"{name}. A 192.0.2.7")
    network = Network(table)
    result = network.run(machine(name))
    assert result.addresses() == ["192.0.2.7"]
    # 16 labels below example.com: one by one would take 16 questions there; RFC 9156 caps the count.
    assert len(network.asked) <= 10 + 1


def test_ds_is_asked_of_the_parent_zone() -> None:
    table = {
        (ROOT, "com.", TYPE_A): lambda ask: referral(ask, "com.", {"a.gtld.com.": COM[0]}),
        (COM, "example.com.", 43): lambda ask: reply(ask, "example.com. DS 12345 8 2 " + "ab" * 32),
    }
    network = Network(table)
    result = network.run(machine("example.com", 43))
    assert network.asked[-1] == (COM, "example.com.", 43)
    assert result.answer[0].rtype == 43


# --------------------------------------------------------------------------------- poisoning defence


def test_referral_records_outside_the_bailiwick_are_ignored() -> None:
    def poisoned_referral(ask: Ask) -> bytes:
        return reply(
            ask,
            answer="www.victim.org. A 6.6.6.6",
            authority="example.com. NS ns1.example.com.\nvictim.org. NS ns.evil.net.\ncom. NS ns.evil.net.",
            additional=(
                f"ns1.example.com. A {EXAMPLE[0]}\n"
                "ns.evil.net. A 6.6.6.6\n"
                "www.victim.org. A 6.6.6.6\n"
                "ns.other.com. A 6.6.6.6"
            ),
            aa=False,
        )

    table = example_com_network(www_answer)
    table[(COM, "example.com.", TYPE_A)] = poisoned_referral
    ctx = context()
    network = Network(table)
    network.run(machine("www.example.com", ctx=ctx))
    cache = ctx.cache
    for name, rtype in [
        ("www.victim.org", TYPE_A),
        ("ns.evil.net", TYPE_A),
        ("victim.org", TYPE_NS),
        ("ns.other.com", TYPE_A),
    ]:
        assert cache.get_rrset(from_text(name), rtype, 1, 1.0, min_rank=RANK_GLUE) is None, name
    com_ns = cache.get_rrset(from_text("com"), TYPE_NS, 1, 1.0, min_rank=RANK_GLUE)
    assert com_ns is not None and com_ns.targets() == [
        from_text("a.gtld.com")
    ]  # not overwritten by the COM server
    assert cache.get_rrset(from_text("ns1.example.com"), TYPE_A, 1, 1.0, min_rank=RANK_GLUE) is not None


def test_glue_for_names_outside_the_senders_zone_is_not_used() -> None:
    # The com server gives glue for ns.example.net: not inside example.com, so it must be looked up.
    table = example_com_network(www_answer)
    table[(COM, "example.com.", TYPE_A)] = lambda ask: referral(
        ask, "example.com.", {"ns.example.net.": "6.6.6.6"}
    )
    resolution = machine("www.example.com")
    network = Network(table)
    network.now = 0
    for _ in range(2):
        action = resolution.next_action(0)
        assert isinstance(action, Ask)
        resolution.on_reply(
            action, table[(action.server, to_text(action.qname), action.qtype)](action), 0.01, 0
        )
    assert resolution.next_action(0) == NeedAddresses(from_text("ns.example.net"))


def test_sibling_glue_from_the_delegating_zone_is_used() -> None:
    # Like the root's referral to com. with glue for a.gtld-servers.net: the NS name is not inside the
    # referral zone but is inside the zone of the server that sent it, so no lookup is needed.
    table = example_com_network(www_answer)
    table[(ROOT, "com.", TYPE_A)] = lambda ask: referral(ask, "com.", {"a.gtld-servers.net.": COM[0]})
    network = Network(table)
    assert network.run(machine("www.example.com")).addresses() == ["192.0.2.80"]
    assert len(network.asked) == 3


def test_answer_records_outside_the_zone_asked_are_dropped() -> None:
    table = example_com_network(
        lambda ask: reply(
            ask, "www.example.com. A 192.0.2.80\nwww.victim.org. A 6.6.6.6\ncom. NS ns.evil.net."
        )
    )
    ctx = context()
    result = Network(table).run(machine("www.example.com", ctx=ctx))
    assert [rrset.name for rrset in result.answer] == [from_text("www.example.com")]
    assert ctx.cache.get_rrset(from_text("www.victim.org"), TYPE_A, 1, 1.0, min_rank=RANK_GLUE) is None


def test_upward_referral_is_lame_and_the_next_server_is_tried() -> None:
    table = example_com_network(www_answer)
    table[(ROOT, "com.", TYPE_A)] = lambda ask: referral(
        ask, "com.", {"a.gtld.com.": COM[0], "b.gtld.com.": COM2[0]}
    )
    table[(COM2, "example.com.", TYPE_A)] = table[(COM, "example.com.", TYPE_A)]
    table[(COM, "example.com.", TYPE_A)] = lambda ask: referral(ask, ".", {"a.root.": ROOT[0]})
    ctx = context()
    ctx.servers.record_reply(COM, 0.001)  # COM looks fastest, so it is asked first
    ctx.servers.record_reply(COM2, 0.5)
    network = Network(table)
    result = network.run(machine("www.example.com", ctx=ctx))
    assert network.asked[1:3] == [(COM, "example.com.", TYPE_A), (COM2, "example.com.", TYPE_A)]
    assert result.addresses() == ["192.0.2.80"]
    assert not ctx.servers.usable(COM, from_text("com"), 1.0)  # remembered as lame for com.
    assert ctx.servers.usable(COM, from_text("net"), 1.0)


def test_referral_sideways_to_an_unrelated_zone_is_lame() -> None:
    table = example_com_network(www_answer)
    table[(COM, "example.com.", TYPE_A)] = lambda ask: referral(
        ask, "other.com.", {"ns.other.com.": OTHER[0]}
    )
    with pytest.raises(UpstreamError):
        Network(table).run(machine("www.example.com"))


# ---------------------------------------------------------------------------------- CNAME and DNAME


def test_cname_into_another_zone_restarts_from_the_closest_known_zone() -> None:
    table = example_com_network(lambda ask: reply(ask, "www.example.com. CNAME cdn.example.net."))
    table[(ROOT, "net.", TYPE_A)] = lambda ask: referral(ask, "net.", {"a.gtld.net.": NET[0]})
    table[(NET, "example.net.", TYPE_A)] = lambda ask: referral(
        ask, "example.net.", {"ns.example.net.": OTHER[0]}
    )
    table[(OTHER, "cdn.example.net.", TYPE_A)] = lambda ask: reply(ask, "cdn.example.net. A 192.0.2.99")
    network = Network(table)
    result = network.run(machine("www.example.com"))
    assert [to_text(rrset.name) for rrset in result.answer] == ["www.example.com.", "cdn.example.net."]
    assert result.addresses() == ["192.0.2.99"]
    assert network.asked[3] == (ROOT, "net.", TYPE_A)


def test_cname_chain_inside_one_reply_is_followed_within_the_zone() -> None:
    table = example_com_network(
        lambda ask: reply(ask, "www.example.com. CNAME a.example.com.\na.example.com. A 192.0.2.5")
    )
    result = Network(table).run(machine("www.example.com"))
    assert [rrset.rtype for rrset in result.answer] == [5, 1]


def test_cname_chain_longer_than_the_limit_fails() -> None:
    def chain(ask: Ask) -> bytes:
        index = int(to_text(ask.qname).split(".")[0][1:] or 0)
        return reply(ask, f"{to_text(ask.qname)} CNAME c{index + 1}.example.com.")

    table = example_com_network(www_answer)
    for index in range(30):
        table[(EXAMPLE, f"c{index}.example.com.", TYPE_A)] = chain
    with pytest.raises(UpstreamError, match="CNAME chain too long") as caught:
        Network(table).run(machine("c0.example.com", ctx=context(limits=Limits(max_cname_chain=5))))
    assert caught.value.ede_code == EDE_OTHER


def test_cname_loop_fails_at_once() -> None:
    table = example_com_network(
        lambda ask: reply(ask, "www.example.com. CNAME a.example.com.\na.example.com. CNAME www.example.com.")
    )
    with pytest.raises(UpstreamError, match="CNAME loop"):
        Network(table).run(machine("www.example.com"))


def test_dname_is_followed_with_a_synthesized_cname() -> None:
    dname = RR("old.example.com.", QTYPE.DNAME, ttl=300, rdata=RD(bytes(from_text("example.net"))))
    table = example_com_network(www_answer)
    table[(EXAMPLE, "old.example.com.", TYPE_A)] = lambda ask: reply(ask, authority=soa("example.com."))
    table[(EXAMPLE, "www.old.example.com.", TYPE_A)] = lambda ask: reply(ask, extra=[dname])
    table[(ROOT, "net.", TYPE_A)] = lambda ask: referral(ask, "net.", {"a.gtld.net.": NET[0]})
    table[(NET, "example.net.", TYPE_A)] = lambda ask: referral(
        ask, "example.net.", {"ns.example.net.": OTHER[0]}
    )
    table[(OTHER, "www.example.net.", TYPE_A)] = lambda ask: reply(ask, "www.example.net. A 192.0.2.33")
    ctx = context()
    result = Network(table).run(machine("www.old.example.com", ctx=ctx))
    assert [(to_text(rrset.name), rrset.rtype) for rrset in result.answer] == [
        ("old.example.com.", 39),
        ("www.old.example.com.", 5),
        ("www.example.net.", 1),
    ]
    assert result.answer[1].target() == from_text("www.example.net")
    # The DNAME is cached and serves other names below it without asking example.com again.
    table[(OTHER, "mail.example.net.", TYPE_A)] = lambda ask: reply(ask, "mail.example.net. A 192.0.2.34")
    network = Network(table)
    result = network.run(machine("mail.old.example.com", ctx=ctx))
    assert network.asked == [(OTHER, "mail.example.net.", TYPE_A)]
    assert result.addresses() == ["192.0.2.34"]


# ---------------------------------------------------------------------------------------- glueless


def test_glueless_delegation_looks_up_the_ns_name_then_asks_it() -> None:
    table = example_com_network(www_answer)
    table[(COM, "example.com.", TYPE_A)] = lambda ask: referral(ask, "example.com.", {"ns.hoster.net.": None})
    resolution = machine("www.example.com")
    network = Network(table)
    result = network.run(resolution, addresses={"ns.hoster.net.": [EXAMPLE[0]]})
    assert result.addresses() == ["192.0.2.80"]
    assert network.asked[-1] == (EXAMPLE, "www.example.com.", TYPE_A)


def test_address_lookup_is_a_nested_resolution_sharing_the_budget() -> None:
    parent = machine("www.example.com")
    child = parent.address_lookup(from_text("ns.hoster.net"), TYPE_A)
    assert child.budget is parent.budget
    assert child.depth == 1
    assert from_text("ns.hoster.net") in child.ancestry


def test_ns_names_inside_the_zone_without_glue_are_not_looked_up() -> None:
    table = example_com_network(www_answer)
    table[(COM, "example.com.", TYPE_A)] = lambda ask: referral(
        ask, "example.com.", {"ns1.example.com.": None}
    )
    with pytest.raises(UpstreamError, match="no reachable authority"):
        Network(table).run(machine("www.example.com"))


def test_a_lookup_that_needs_itself_is_a_delegation_loop() -> None:
    # Resolving ns.a.net's address leads to zone b.net, whose only server is ns.a.net again.
    table = {
        (ROOT, "net.", TYPE_A): lambda ask: referral(ask, "net.", {"a.gtld.net.": NET[0]}),
        (NET, "a.net.", TYPE_A): lambda ask: referral(ask, "a.net.", {"ns.b.net.": None}),
        (NET, "b.net.", TYPE_A): lambda ask: referral(ask, "b.net.", {"ns.a.net.": None}),
    }
    outer = machine("ns.b.net")  # as if looking up ns.b.net for someone
    network = Network(table)
    action = None
    for _ in range(10):
        action = outer.next_action(network.now)
        if isinstance(action, NeedAddresses):
            break
        assert isinstance(action, Ask)
        outer.on_reply(action, table[(action.server, to_text(action.qname), action.qtype)](action), 0.01, 0)
    assert action == NeedAddresses(from_text("ns.a.net"))
    inner = outer.address_lookup(from_text("ns.a.net"), TYPE_A)
    with pytest.raises(DelegationLoop, match="delegation loop") as caught:
        network.run(inner)
    assert caught.value.ede_code == EDE_OTHER
    outer.on_addresses(action, [], caught.value)
    with pytest.raises(DelegationLoop):
        outer.next_action(network.now)


def test_glueless_lookups_nest_only_so_deep() -> None:
    ctx = context(limits=Limits(max_glueless_depth=1))
    table = example_com_network(www_answer)
    table[(COM, "example.com.", TYPE_A)] = lambda ask: referral(ask, "example.com.", {"ns.hoster.net.": None})
    # Already one lookup deep, this resolution meets a glueless zone and may not nest another lookup.
    nested = machine("mail.example.org", ctx=ctx).address_lookup(from_text("www.example.com"), TYPE_A)
    network = Network(table)
    with pytest.raises(UpstreamError, match="too deep") as caught:
        network.run(nested, addresses={"ns.hoster.net.": [EXAMPLE[0]]})
    assert caught.value.ede_code == EDE_OTHER
    assert network.asked == [(ROOT, "com.", TYPE_A), (COM, "example.com.", TYPE_A)]


# ------------------------------------------------------------------------------- negative answers


def test_nxdomain_is_cached_and_denies_every_name_below_it() -> None:
    table = example_com_network(www_answer)
    table[(EXAMPLE, "nx.example.com.", TYPE_A)] = lambda ask: reply(
        ask, authority=soa("example.com.", 60), rcode=3
    )
    ctx = context()
    result = Network(table).run(machine("nx.example.com", ctx=ctx))
    assert result.rcode == NXDOMAIN
    assert result.authority[0].ttl == 60  # min(SOA TTL, SOA MINIMUM), RFC 2308
    deeper = machine("a.b.nx.example.com", TYPE_AAAA, ctx=ctx)
    cached = deeper.next_action(1.0)
    assert isinstance(cached, Result) and cached.rcode == NXDOMAIN  # RFC 8020: no question asked
    assert cached.authority[0].name == from_text("example.com")


def test_nodata_is_cached_for_that_type_only() -> None:
    table = example_com_network(www_answer)
    table[(EXAMPLE, "www.example.com.", TYPE_AAAA)] = lambda ask: reply(ask, authority=soa("example.com."))
    ctx = context()
    result = Network(table).run(machine("www.example.com", TYPE_AAAA, ctx=ctx))
    assert result.rcode == NOERROR and not result.answer and result.authority
    assert isinstance(machine("www.example.com", TYPE_AAAA, ctx=ctx).next_action(1.0), Result)
    assert isinstance(machine("www.example.com", TYPE_A, ctx=ctx).next_action(1.0), Ask)


def test_a_warm_answer_needs_no_question() -> None:
    ctx = context()
    Network(example_com_network(www_answer)).run(machine("www.example.com", ctx=ctx))
    assert isinstance(machine("www.example.com", ctx=ctx).next_action(1.0), Result)
    nearby = machine("mail.example.com", ctx=ctx).next_action(1.0)
    assert isinstance(nearby, Ask) and nearby.server == EXAMPLE  # starts at the cached delegation


def test_glue_in_the_cache_is_never_an_answer() -> None:
    ctx = context()
    Network(example_com_network(www_answer)).run(machine("www.example.com", ctx=ctx))
    assert ctx.cache.get_rrset(from_text("ns1.example.com"), TYPE_A, 1, 1.0, min_rank=RANK_GLUE)
    assert not ctx.cache.get_rrset(from_text("ns1.example.com"), TYPE_A, 1, 1.0, min_rank=RANK_ANSWER)
    action = machine("ns1.example.com", ctx=ctx).next_action(1.0)
    assert isinstance(action, Ask) and action.server == EXAMPLE


# ---------------------------------------------------------------------------------- failures, limits


def test_a_timeout_moves_to_the_next_server_and_backs_off() -> None:
    table = example_com_network(www_answer)
    table[(ROOT, "com.", TYPE_A)] = lambda ask: referral(
        ask, "com.", {"a.gtld.com.": COM[0], "b.gtld.com.": COM2[0]}
    )
    table[(COM2, "example.com.", TYPE_A)] = table.pop((COM, "example.com.", TYPE_A))  # COM never answers
    ctx = context()
    ctx.servers.record_reply(COM, 0.02)
    ctx.servers.record_reply(COM2, 0.4)
    rto = ctx.servers.known(COM).rto  # type: ignore[union-attr]
    network = Network(table)
    result = network.run(machine("www.example.com", ctx=ctx))
    assert result.addresses() == ["192.0.2.80"]
    assert network.asked[1:3] == [(COM, "example.com.", TYPE_A), (COM2, "example.com.", TYPE_A)]
    state = ctx.servers.known(COM)
    assert state is not None and state.failures == 1 and state.rto == pytest.approx(2 * rto)
    assert ctx.servers.expected_rtt(COM) > ctx.servers.expected_rtt(COM2)  # now ranked after COM2


def test_every_server_failing_ends_with_no_reachable_authority() -> None:
    with pytest.raises(UpstreamError, match="no reachable authority") as caught:
        Network({}).run(machine("www.example.com"))
    assert caught.value.ede_code == EDE_NO_REACHABLE_AUTHORITY


def test_network_errors_only_end_with_network_error() -> None:
    table = {(ROOT, "com.", TYPE_A): lambda ask: UpstreamError("unreachable", EDE_NETWORK_ERROR)}
    with pytest.raises(UpstreamError) as caught:
        Network(table).run(machine("www.example.com"))
    assert caught.value.ede_code == EDE_NETWORK_ERROR


def test_formerr_to_edns_is_retried_without_edns() -> None:
    table = example_com_network(www_answer)
    seen: list[bool] = []

    def old_server(ask: Ask) -> bytes:
        seen.append(ask.edns)
        return reply(ask, rcode=FORMERR) if ask.edns else referral(ask, "com.", {"a.gtld.com.": COM[0]})

    table[(ROOT, "com.", TYPE_A)] = old_server
    ctx = context()
    Network(table).run(machine("www.example.com", ctx=ctx))
    assert seen == [True, False]
    assert not ctx.servers.wants_edns(ROOT)


def test_refused_marks_the_server_lame_for_that_zone() -> None:
    table = example_com_network(www_answer)
    table[(COM, "example.com.", TYPE_A)] = lambda ask: referral(
        ask, "example.com.", {"ns1.example.com.": EXAMPLE[0], "ns2.example.com.": EXAMPLE2[0]}
    )
    table[(EXAMPLE2, "www.example.com.", TYPE_A)] = lambda ask: reply(ask, rcode=REFUSED)
    ctx = context()
    ctx.servers.record_reply(EXAMPLE2, 0.001)
    network = Network(table)
    network.run(machine("www.example.com", ctx=ctx))
    assert network.asked[-2:] == [
        (EXAMPLE2, "www.example.com.", TYPE_A),
        (EXAMPLE, "www.example.com.", TYPE_A),
    ]
    zone = from_text("example.com")
    assert not ctx.servers.usable(EXAMPLE2, zone, 1.0)
    table[(EXAMPLE, "mail.example.com.", TYPE_A)] = lambda ask: reply(ask, "mail.example.com. A 192.0.2.81")
    later = Network(table)
    later.run(machine("mail.example.com", ctx=ctx))
    assert later.asked == [(EXAMPLE, "mail.example.com.", TYPE_A)]  # the lame server is skipped


def test_a_garbled_reply_counts_as_a_failed_server() -> None:
    table = example_com_network(www_answer)
    table[(ROOT, "com.", TYPE_A)] = lambda ask: referral(
        ask, "com.", {"a.gtld.com.": COM[0], "b.gtld.com.": COM2[0]}
    )
    table[(COM2, "example.com.", TYPE_A)] = table[(COM, "example.com.", TYPE_A)]
    good = table[(COM, "example.com.", TYPE_A)]
    table[(COM, "example.com.", TYPE_A)] = lambda ask: good(ask)[:-7]  # cut inside the glue record
    ctx = context()
    ctx.servers.record_reply(COM, 0.001)
    network = Network(table)
    result = network.run(machine("www.example.com", ctx=ctx))
    assert network.asked[1:3] == [(COM, "example.com.", TYPE_A), (COM2, "example.com.", TYPE_A)]
    assert result.addresses() == ["192.0.2.80"]


def test_the_query_budget_is_enforced() -> None:
    with pytest.raises(UpstreamError, match="too many queries") as caught:
        Network(example_com_network(www_answer)).run(
            machine("www.example.com", ctx=context(limits=Limits(max_queries=2)))
        )
    assert caught.value.ede_code == EDE_OTHER


def test_the_referral_limit_is_enforced() -> None:
    with pytest.raises(UpstreamError, match="too many referrals"):
        Network(example_com_network(www_answer)).run(
            machine("www.example.com", ctx=context(limits=Limits(max_referrals=1)))
        )


def test_the_deadline_is_enforced() -> None:
    resolution = Resolution(context(), Budget(deadline=5.0), from_text("www.example.com"), TYPE_A)
    with pytest.raises(UpstreamError, match="timed out") as caught:
        resolution.next_action(5.0)
    assert caught.value.ede_code == EDE_NO_REACHABLE_AUTHORITY


def test_query_timeouts_never_outlast_the_deadline() -> None:
    resolution = Resolution(context(), Budget(deadline=0.3), from_text("www.example.com"), TYPE_A)
    action = resolution.next_action(0.1)
    assert isinstance(action, Ask) and action.timeout == pytest.approx(0.2)


# ----------------------------------------------------------------------------- priming and DNSSEC


def test_priming_replaces_the_hints_with_the_root_ns_set() -> None:
    table = {
        (ROOT, ".", TYPE_NS): lambda ask: reply(
            ask, ". NS a.root.example.\n. NS b.root.example.", additional="a.root.example. A 198.51.100.2"
        )
    }
    ctx = context()
    result = Network(table).run(machine(".", TYPE_NS, ctx=ctx))
    assert result.rcode == NOERROR
    action = machine("www.example.com", ctx=ctx).next_action(1.0)
    assert isinstance(action, Ask) and action.server == ("198.51.100.2", 53)


def test_the_do_bit_goes_to_authorities_and_rrsigs_stay_with_their_rrsets() -> None:
    rrsig = "www.example.com. RRSIG A 8 3 300 20300101000000 20200101000000 12345 example.com. " + "AAAA" * 8
    table = example_com_network(lambda ask: reply(ask, f"www.example.com. A 192.0.2.80\n{rrsig}"))
    network = Network(table)
    result = network.run(machine("www.example.com", do=True))
    assert len(result.answer) == 1 and len(result.answer[0].sigs) == 1
    signed = dns.message.from_wire(render_result(result, do=True))
    unsigned = dns.message.from_wire(render_result(result, do=False))
    assert sorted(rrset.rdtype for rrset in signed.answer) == [1, 46]
    assert [rrset.rdtype for rrset in unsigned.answer] == [1]


def test_a_reply_for_another_question_is_refused() -> None:
    resolution = machine("www.example.com")
    action = resolution.next_action(0)
    assert isinstance(action, Ask)
    stray = Ask(OTHER, action.zone, action.qname, action.qtype, 1, True, False, 1.0)
    with pytest.raises(RuntimeError):
        resolution.on_reply(stray, b"", 0.01, 0)
