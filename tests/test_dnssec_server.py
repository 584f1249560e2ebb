"""DNSSEC validation end to end: a dnspython client asks the real server, which resolves and validates
through a signed hierarchy served by NSD on loopback (see signedhierarchy)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from signedhierarchy import UNBOUND_TOOLS, SignedHierarchy, Unbound, missing_tools

from blockdns.ops.querylog import QueryLog

from conftest import RunningServer, base_config, ede_of
from opshelpers import TOKEN, http

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())}")


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedHierarchy]:
    signed = SignedHierarchy(tmp_path_factory.mktemp("signed")).build().start()
    yield signed
    signed.stop()


def resolver(hierarchy: SignedHierarchy, **extra: Any) -> dict[str, Any]:
    settings = {
        "mode": "recursive",
        "root_hints": [hierarchy.root],
        "ipv6": False,
        "timeout": 1.0,
        "trust_anchors": [hierarchy.anchor],
    }
    settings.update(extra)
    return settings


@pytest.fixture
def server(
    hierarchy: SignedHierarchy, start_server: Callable[[dict[str, Any]], RunningServer]
) -> RunningServer:
    return start_server(base_config(resolver=resolver(hierarchy)))


def ask(
    server: RunningServer,
    name: str,
    rdtype: str = "A",
    *,
    do: bool = False,
    ad: bool = True,
    cd: bool = False,
    tcp: bool = False,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232, want_dnssec=do)
    query.flags = (query.flags | (dns.flags.AD if ad else 0) | (dns.flags.CD if cd else 0)) & ~(
        0 if ad else dns.flags.AD
    )
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=server.port, timeout=10)


def authenticated(response: dns.message.Message) -> bool:
    return bool(response.flags & dns.flags.AD)


DEEP_NAME = "x." * 70 + "plain3.test"  # 70 labels: more than the 64 NSEC3 hashes a query may cost

SECURE_CASES = [
    ("www.secure.test", "A", dns.rcode.NOERROR),
    ("x.wild.secure.test", "A", dns.rcode.NOERROR),  # NSEC wildcard expansion
    ("nope.secure.test", "A", dns.rcode.NXDOMAIN),  # NSEC NXDOMAIN
    ("www.secure.test", "MX", dns.rcode.NOERROR),  # NSEC NODATA
    ("inalias.secure.test", "A", dns.rcode.NOERROR),  # CNAME inside the zone
    ("a.dn.secure.test", "A", dns.rcode.NOERROR),  # DNAME, and the CNAME the resolver makes from it
    ("www.nsec3.test", "A", dns.rcode.NOERROR),  # RSASHA256
    ("nope.plain3.test", "A", dns.rcode.NXDOMAIN),  # NSEC3 NXDOMAIN
    (DEEP_NAME, "A", dns.rcode.NXDOMAIN),  # more labels than NSEC3 hashes a query may cost
    ("www.nsec3.test", "MX", dns.rcode.NOERROR),  # NSEC3 NODATA (opt-out does not matter here)
    ("www.plain3.test", "MX", dns.rcode.NOERROR),  # NSEC3 NODATA
    ("x.wild.plain3.test", "A", dns.rcode.NOERROR),  # NSEC3 wildcard expansion
    ("www.ed.test", "A", dns.rcode.NOERROR),  # ED25519
    ("www.ed448.test", "A", dns.rcode.NOERROR),  # ED448
    ("www.p384.test", "A", dns.rcode.NOERROR),  # ECDSA P-384
    ("www.rsa512.test", "A", dns.rcode.NOERROR),  # RSASHA512
]

INSECURE_CASES = [
    ("www.insecure.test", "A", dns.rcode.NOERROR, None),  # a signed parent, an unsigned child
    ("alias.secure.test", "A", dns.rcode.NOERROR, None),  # a secure CNAME into an insecure zone
    ("www.unsigned.nsec3.test", "A", dns.rcode.NOERROR, None),  # NSEC3 opt-out unsigned delegation
    ("nope.nsec3.test", "A", dns.rcode.NXDOMAIN, None),  # next closer name in an opt-out span (as Unbound)
    ("x.wild.nsec3.test", "A", dns.rcode.NOERROR, None),  # a wildcard answer, ditto
    ("www.sha1.test", "A", dns.rcode.NOERROR, None),  # signed only with an algorithm not implemented
    ("nope.iter.test", "A", dns.rcode.NXDOMAIN, 27),  # NSEC3 iterations 100 > 50 (RFC 9276)
]

BOGUS_CASES = [
    ("www.bogus.test", "A", 6),  # data altered after signing
    ("www.expired.test", "A", 7),
    ("www.future.test", "A", 8),
    ("www.nokey.test", "A", 9),  # the DS in the parent matches no key
    ("www.keytrap.test", "A", 6),  # 64 keys share the key tag, the signature is broken
    ("www.stripped.test", "A", 10),  # a signed zone (DS in the parent) served without its RRSIGs
    ("nope.stripped.test", "A", 12),  # ... and so without NSEC records
    ("x.wild.wildproof.test", "A", 6),  # a wildcard answer whose NSEC proof's signature is forged
]


@pytest.mark.parametrize(("name", "rdtype", "rcode"), SECURE_CASES)
def test_secure_answers_are_authenticated(server: RunningServer, name: str, rdtype: str, rcode: int) -> None:
    response = ask(server, name, rdtype)
    assert response.rcode() == rcode
    assert authenticated(response)
    assert ede_of(response) == []


@pytest.mark.parametrize(("name", "rdtype", "rcode", "ede"), INSECURE_CASES)
def test_insecure_answers_are_answered_without_ad(
    server: RunningServer, name: str, rdtype: str, rcode: int, ede: int | None
) -> None:
    response = ask(server, name, rdtype, do=True)
    assert response.rcode() == rcode
    assert not authenticated(response)
    assert [code for code, _ in ede_of(response)] == ([ede] if ede is not None else [])


@pytest.mark.parametrize(("name", "rdtype", "ede"), BOGUS_CASES)
def test_bogus_answers_are_servfail_with_the_most_specific_ede(
    server: RunningServer, name: str, rdtype: str, ede: int
) -> None:
    response = ask(server, name, rdtype)
    assert response.rcode() == dns.rcode.SERVFAIL
    assert [code for code, _ in ede_of(response)] == [ede]
    assert not response.answer


def test_ad_only_for_a_client_that_set_ad_or_do_and_rrsigs_only_with_do(server: RunningServer) -> None:
    plain = ask(server, "www.secure.test", ad=False)
    assert not authenticated(plain) and plain.answer
    with_do = ask(server, "www.secure.test", ad=False, do=True)
    assert authenticated(with_do)
    assert {rrset.rdtype for rrset in with_do.answer} == {dns.rdatatype.A, dns.rdatatype.RRSIG}
    assert {rrset.rdtype for rrset in ask(server, "www.secure.test").answer} == {dns.rdatatype.A}
    wildcard = ask(server, "y.wild.plain3.test", do=True)
    assert authenticated(wildcard)
    assert any(rrset.rdtype == dns.rdatatype.NSEC3 for rrset in wildcard.authority)


def test_cd_gets_the_unvalidated_data(server: RunningServer) -> None:
    response = ask(server, "www.bogus.test", cd=True)
    assert response.rcode() == dns.rcode.NOERROR and not authenticated(response)
    assert response.answer[0][0].address == "192.0.2.99"
    assert ask(server, "www.bogus.test").rcode() == dns.rcode.SERVFAIL


def test_a_bogus_verdict_is_cached_briefly_and_logged_with_its_reason(
    hierarchy: SignedHierarchy, start_server: Callable[[dict[str, Any]], RunningServer]
) -> None:
    server = start_server(
        base_config(
            resolver=resolver(hierarchy),
            querylog={"path": "var/querylog.sqlite"},
            api={"listen": "127.0.0.1:0", "token": TOKEN},
        )
    )
    assert server.server is not None
    recursion = server.server.engine.generation.upstream
    first = ask(server, "www.expired.test")
    bogus_so_far = recursion.stats.bogus  # type: ignore[attr-defined]
    again = ask(server, "www.expired.test")
    assert again.rcode() == dns.rcode.SERVFAIL and ede_of(again) == ede_of(first)
    assert recursion.stats.bogus == bogus_so_far == 1  # type: ignore[attr-defined]  # held, not validated again
    assert "expired" in ede_of(first)[0][1]
    querylog = server.server.querylog
    assert isinstance(querylog, QueryLog) and querylog.flush()
    url = str(server.server.api.url)  # type: ignore[union-attr]
    rows = http("GET", url + "/api/querylog?q=expired").json()["rows"]
    assert rows and all("DNSSEC bogus" in row["reason"] and "expired" in row["reason"] for row in rows)


def test_a_blocked_name_is_never_authenticated(
    hierarchy: SignedHierarchy, start_server: Callable[[dict[str, Any]], RunningServer]
) -> None:
    server = start_server(
        base_config(
            resolver=resolver(hierarchy),
            policy={"block": ["domain:www.secure.test"]},
            blocking={"response": "null"},
        )
    )
    response = ask(server, "www.secure.test", do=True)
    assert response.answer and not authenticated(response)


def test_negative_trust_anchor_turns_validation_off_below_it(
    hierarchy: SignedHierarchy, start_server: Callable[[dict[str, Any]], RunningServer]
) -> None:
    server = start_server(base_config(resolver=resolver(hierarchy, negative_trust_anchors=["bogus.test"])))
    response = ask(server, "www.bogus.test")
    assert response.rcode() == dns.rcode.NOERROR and not authenticated(response)
    assert authenticated(ask(server, "www.secure.test"))
    assert ask(server, "www.expired.test").rcode() == dns.rcode.SERVFAIL


@pytest.mark.parametrize(
    "extra",
    [{"dnssec": "off"}, {"trust_anchors": []}],
    ids=["dnssec-off", "custom-root-without-anchors"],
)
def test_validation_off(
    hierarchy: SignedHierarchy,
    start_server: Callable[[dict[str, Any]], RunningServer],
    extra: dict[str, Any],
) -> None:
    server = start_server(base_config(resolver=resolver(hierarchy, **extra)))
    response = ask(server, "www.bogus.test", do=True)
    assert response.rcode() == dns.rcode.NOERROR and not authenticated(response)
    assert not authenticated(ask(server, "www.secure.test", do=True))


def test_many_colliding_keys_stay_bounded_and_others_are_answered_promptly(server: RunningServer) -> None:
    assert authenticated(ask(server, "www.secure.test"))  # warm: the secure name is cached
    names = [f"n{index}.w.keytrap.test" for index in range(40)]  # each a new wildcard expansion
    slowest = 0.0
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        attacks = [pool.submit(ask, server, name) for name in names]
        while not all(attack.done() for attack in attacks) and time.monotonic() - started < 30:
            before = time.monotonic()
            response = ask(server, "www.secure.test")
            slowest = max(slowest, time.monotonic() - before)
            assert authenticated(response)
        results = [attack.result(timeout=30) for attack in attacks]
    for response in results:
        assert response.rcode() == dns.rcode.SERVFAIL
        assert [code for code, _ in ede_of(response)] == [6]
    assert slowest < 0.5


# --------------------------------------------------------------------------------- forward mode, Unbound

needs_unbound = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in UNBOUND_TOOLS), reason="needs unbound"
)


@pytest.fixture(scope="module")
def plain_unbound(hierarchy: SignedHierarchy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    """A non-validating recursive resolver: the forward-mode upstream."""
    unbound = Unbound(
        tmp_path_factory.mktemp("unbound-plain"), hierarchy, hierarchy.address(9), 5300, validate=False
    )
    yield unbound.start()
    unbound.stop()


@pytest.fixture(scope="module")
def validating_unbound(
    hierarchy: SignedHierarchy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Unbound]:
    unbound = Unbound(
        tmp_path_factory.mktemp("unbound-val"), hierarchy, hierarchy.address(10), 5300, validate=True
    )
    yield unbound.start()
    unbound.stop()


def forward_config(hierarchy: SignedHierarchy, upstream: Unbound, **extra: Any) -> dict[str, Any]:
    settings = {
        "mode": "forward",
        "upstreams": [f"udp://{upstream.address}:{upstream.port}"],
        "dnssec": "validate",
        "trust_anchors": [hierarchy.anchor],
        "timeout": 2.0,
    }
    settings.update(extra)
    return base_config(resolver=settings)


def outcome(response: dns.message.Message) -> str:
    if response.rcode() == dns.rcode.SERVFAIL:
        return "bogus"
    return "secure" if authenticated(response) else "insecure"


ALL_CASES = (
    [(name, rdtype, "secure") for name, rdtype, _ in SECURE_CASES]
    + [(name, rdtype, "insecure") for name, rdtype, _, _ in INSECURE_CASES]
    + [(name, rdtype, "bogus") for name, rdtype, _ in BOGUS_CASES]
)


@needs_unbound
def test_forward_mode_validates_behind_a_non_validating_upstream(
    hierarchy: SignedHierarchy,
    plain_unbound: Unbound,
    start_server: Callable[[dict[str, Any]], RunningServer],
) -> None:
    server = start_server(forward_config(hierarchy, plain_unbound))
    got = {(name, rdtype): outcome(ask(server, name, rdtype)) for name, rdtype, _ in ALL_CASES}
    assert got == {(name, rdtype): expected for name, rdtype, expected in ALL_CASES}
    assert [code for code, _ in ede_of(ask(server, "www.future.test"))] == [8]
    cd = ask(server, "www.bogus.test", cd=True)
    assert cd.rcode() == dns.rcode.NOERROR and not authenticated(cd)


@needs_unbound
def test_forward_mode_without_validation_passes_the_upstream_on(
    hierarchy: SignedHierarchy,
    plain_unbound: Unbound,
    start_server: Callable[[dict[str, Any]], RunningServer],
) -> None:
    server = start_server(forward_config(hierarchy, plain_unbound, dnssec="off"))
    assert ask(server, "www.bogus.test").rcode() == dns.rcode.NOERROR


@needs_unbound
def test_forward_zone_with_dnssec_false_is_not_validated(
    hierarchy: SignedHierarchy,
    plain_unbound: Unbound,
    validating_unbound: Unbound,
    start_server: Callable[[dict[str, Any]], RunningServer],
) -> None:
    zones = [
        {"name": "bogus.test", "upstreams": [f"udp://{plain_unbound.address}:5300"], "dnssec": False},
        {"name": "secure.test", "upstreams": [f"udp://{validating_unbound.address}:5300"], "dnssec": False},
        {"name": "expired.test", "upstreams": [f"udp://{plain_unbound.address}:5300"]},
    ]
    config = base_config(resolver=resolver(hierarchy))
    config["forward_zones"] = zones
    server = start_server(config)
    assert ask(server, "www.bogus.test").rcode() == dns.rcode.NOERROR
    # The validating upstream says AD; unvalidated here, the answer is not marked authentic.
    assert not authenticated(ask(server, "www.secure.test"))
    assert [code for code, _ in ede_of(ask(server, "www.expired.test"))] == [7]  # dnssec = true: validated


@needs_unbound
def test_unbound_with_the_same_trust_anchor_agrees_on_every_case(validating_unbound: Unbound) -> None:
    """The same signed hierarchy through Unbound 1.17: secure, insecure and bogus agree case by case, but
    for two choices of ours: NSEC3 iterations above 50, which Unbound before 1.18 accepts up to 150, and
    RSASHA1 (algorithm 5), which Unbound 1.17 still validates and we treat as unsupported (insecure)."""
    got = {}
    cases = [case for case in ALL_CASES if case[0] != DEEP_NAME]  # Unbound minimises it label by label: slow
    for name, rdtype, _ in cases:
        query = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True)
        got[(name, rdtype)] = outcome(dns.query.udp(query, validating_unbound.address, port=5300, timeout=10))
    expected = {(name, rdtype): state for name, rdtype, state in cases}
    expected[("nope.iter.test", "A")] = "secure"
    expected[("www.sha1.test", "A")] = "secure"
    assert got == expected


# ------------------------------------------------------------------------------------ blockdns check --dnssec


def check_dnssec(
    hierarchy: SignedHierarchy, tmp_path: Path, name: str, *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "blockdns.toml"
    settings = resolver(hierarchy)
    lines = ["[resolver]"] + [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return subprocess.run(
        [sys.executable, "-m", "blockdns", "check", name, "--dnssec", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "status", "ede", "words"),
    [
        ("www.secure.test", "secure", None, "chain of signatures"),
        ("www.insecure.test", "insecure", None, "insecure.test. is an unsigned delegation"),
        ("www.expired.test", "bogus", 7, "expired"),
        ("www.nokey.test", "bogus", 9, "no DNSKEY of nokey.test. matches its DS"),
    ],
)
def test_check_dnssec_json_says_the_status_and_why(
    hierarchy: SignedHierarchy, tmp_path: Path, name: str, status: str, ede: int | None, words: str
) -> None:
    result = check_dnssec(hierarchy, tmp_path, name, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["dnssec"]
    assert report["status"] == status and report["ede"] == ede and words in report["reason"]


def test_check_dnssec_text_reads_like_delv(hierarchy: SignedHierarchy, tmp_path: Path) -> None:
    result = check_dnssec(hierarchy, tmp_path, "www.bogus.test")
    assert result.returncode == 0, result.stderr
    assert "www.bogus.test A: DNSSEC bogus" in result.stdout
    assert "; validation failed: the RRSIG over www.bogus.test. A does not verify" in result.stdout
    assert "; EDE 6" in result.stdout
    secure = check_dnssec(hierarchy, tmp_path, "www.secure.test", "--type", "txt")
    assert "www.secure.test TXT: DNSSEC secure\n; fully validated" in secure.stdout
    bad = check_dnssec(hierarchy, tmp_path, "www.secure.test", "--type", "NOPE")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--type" in bad.stderr


def test_a_cold_validated_name_costs_what_it_costs_unbound(hierarchy: SignedHierarchy) -> None:
    """Five queries for www.secure.test once the root is primed and its keys known, as Unbound needs: the
    DS sets come with the referrals (a DO query gets them signed), so no DS query is asked on the way."""
    from blockdns.config import ResolverSettings
    from blockdns.dnsname import ROOT, from_text
    from blockdns.resolve.recursive import RecursiveResolver

    async def cold() -> tuple[int, str]:
        settings = ResolverSettings(root_hints=[hierarchy.root], ipv6=False, trust_anchors=[hierarchy.anchor])
        resolver = RecursiveResolver(settings)
        await resolver.start()
        await resolver.resolve(ROOT, 2, 1, do=False, cd=False)  # the root's DNSKEY set validated
        before = hierarchy.queries()
        result = await resolver.resolve(from_text("www.secure.test"), 1, 1, do=False, cd=False)
        await resolver.close()
        return hierarchy.queries() - before, result.security.value

    assert asyncio.run(cold()) == (5, "secure")  # test. NS, secure.test. NS, A; test. and secure.test. DNSKEY


def test_concurrent_cold_questions_share_one_proof_of_each_key_set(hierarchy: SignedHierarchy) -> None:
    from blockdns.config import ResolverSettings
    from blockdns.dnsname import ROOT, from_text
    from blockdns.resolve.recursive import RecursiveResolver

    async def burst() -> tuple[int, set[str]]:
        settings = ResolverSettings(root_hints=[hierarchy.root], ipv6=False, trust_anchors=[hierarchy.anchor])
        resolver = RecursiveResolver(settings)
        await resolver.start()
        await resolver.resolve(ROOT, 2, 1, do=False, cd=False)
        before = resolver.stats.validation_lookups
        names = [from_text(f"n{index}.wild.secure.test") for index in range(10)]
        results = await asyncio.gather(*(resolver.resolve(name, 1, 1, do=False, cd=False) for name in names))
        await resolver.close()
        return resolver.stats.validation_lookups - before, {result.security.value for result in results}

    lookups, outcomes = asyncio.run(burst())
    assert outcomes == {"secure"}
    # DS and DNSKEY of test. and of secure.test., once for the ten questions (the DS sets from the cache,
    # which the referrals filled); each question on its own asked them again: 24 lookups.
    assert lookups == 4


def test_past_a_work_bound_the_answer_is_bogus_with_ede_6(hierarchy: SignedHierarchy) -> None:
    from blockdns.config import ResolverSettings
    from blockdns.dnsname import from_text
    from blockdns.errors import UpstreamError
    from blockdns.resolve.dnssec.work import Limits
    from blockdns.resolve.recursive import RecursiveResolver

    async def bounded(limits: Limits) -> tuple[int, str]:
        settings = ResolverSettings(root_hints=[hierarchy.root], ipv6=False, trust_anchors=[hierarchy.anchor])
        resolver = RecursiveResolver(settings)
        assert resolver.validator is not None
        resolver.validator.limits = limits
        try:
            result = await resolver.resolve(from_text("www.secure.test"), 1, 1, do=False, cd=False)
            return 0, result.security.value
        except UpstreamError as err:
            return err.ede_code, str(err)
        finally:
            await resolver.close()

    # The root's, test.'s and secure.test.'s DNSKEY sets, test.'s DS set... : more than two checks.
    code, text = asyncio.run(bounded(Limits(signature_checks=2)))
    assert code == 6 and "validation stopped: more than 2 signature checks" in text
    assert asyncio.run(bounded(Limits(fetches=1)))[0] == 6
    assert asyncio.run(bounded(Limits())) == (0, "secure")


def test_secure_data_is_kept_no_longer_than_its_signatures_allow(server: RunningServer) -> None:
    """RFC 4035 §5.3.3: no longer than the RRSIG's original TTL (here 300 where the server says 86400),
    nor past the signature's expiration (here about 100 s away, under a TTL of 300)."""
    raised = ask(server, "www.ttl.test")
    assert authenticated(raised) and raised.answer[0].ttl == 300
    expiring = ask(server, "www.soon.test")
    assert authenticated(expiring) and 0 < expiring.answer[0].ttl <= 100
