"""Local names, locally served zones and conditional forwarding, end to end: the real server on loopback,
dnspython as the client, fake DNS servers for the public upstream, the office's domain controller and the
home router, each counting what it was asked (so each test proves which names reach which server)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from conftest import TEST_LISTS_TOML, RunningServer, base_config, ede_of
from fakeauth import ROOT_SERVERS, FakeHierarchy, build_test_hierarchy
from fakedns import FakeDNS

PUBLIC, CORP, ROUTER = "127.0.12.1", "127.0.12.2", "127.0.12.3"

RECORDS = [
    "nas.home.arpa. 600 IN A 192.168.1.10",
    "nas.home.arpa. IN AAAA fd00::10",
    'nas.home.arpa. 120 IN TXT "backups nightly" "rack 2"',
    "home.arpa. MX 10 nas.home.arpa.",
    "_smb._tcp.home.arpa. SRV 0 100 445 nas.home.arpa.",
    "files.home.arpa. CNAME share.home.arpa.",
    "share.home.arpa. CNAME nas.home.arpa.",
    "web.home.arpa. 60 CNAME www.example.org.",
    "gone.home.arpa. CNAME removed.home.arpa.",
    "20.1.168.192.in-addr.arpa. PTR laserjet.home.arpa.",
    "printer.home.arpa. A 192.168.1.20",
]


@pytest.fixture
def public() -> Iterator[FakeDNS]:
    fake = FakeDNS(PUBLIC)
    fake.answer("www.example.org", "A", "192.0.2.80", ttl=300)
    fake.answer("chat.deepseek.com", "A", "192.0.2.66")
    fake.answer("api.deepseek.com", "A", "192.0.2.67")
    fake.answer("8.8.8.8.in-addr.arpa", "PTR", "dns.google.")
    yield fake.start()
    fake.stop()


@pytest.fixture
def corp() -> Iterator[FakeDNS]:
    fake = FakeDNS(CORP)
    fake.answer("corp.example", "SOA", "dc1.corp.example. hostmaster.corp.example. 7 900 600 86400 60")
    fake.answer("dc1.corp.example", "A", "10.0.0.10")
    fake.answer("_ldap._tcp.corp.example", "SRV", "0 100 389 dc1.corp.example.")
    fake.answer("10.0.0.10.in-addr.arpa", "PTR", "dc1.corp.example.")
    yield fake.start()
    fake.stop()


@pytest.fixture
def router() -> Iterator[FakeDNS]:
    fake = FakeDNS(ROUTER)
    fake.answer("5.1.168.192.in-addr.arpa", "PTR", "tv.lan.")
    fake.answer("ws1.lab.corp.example", "A", "10.9.0.1")
    fake.answer("camera.home.arpa", "A", "192.168.1.50")
    yield fake.start()
    fake.stop()


def local_config(upstream: FakeDNS | None, **sections: Any) -> dict[str, Any]:
    sections.setdefault("local", {"records": RECORDS})
    return base_config(upstream, **sections)


def rdata(response: dns.message.Message) -> list[tuple[str, int, str, str]]:
    return [
        (rrset.name.to_text(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), item.to_text())
        for rrset in response.answer
        for item in rrset
    ]


def soa_owner(response: dns.message.Message) -> str:
    [soa] = [rrset for rrset in response.authority if rrset.rdtype == dns.rdatatype.SOA]
    return soa.name.to_text()


def authoritative(response: dns.message.Message) -> bool:
    return bool(response.flags & dns.flags.AA)


def ptr(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


# ------------------------------------------------------------------------------------------ local records


def test_local_records_of_every_type_are_answered_with_aa(
    start_server: Callable[..., RunningServer], public: FakeDNS
) -> None:
    server = start_server(local_config(public))
    expected = {
        ("nas.home.arpa", "A"): [("nas.home.arpa.", 600, "A", "192.168.1.10")],
        ("nas.home.arpa", "AAAA"): [("nas.home.arpa.", 300, "AAAA", "fd00::10")],
        ("nas.home.arpa", "TXT"): [("nas.home.arpa.", 120, "TXT", '"backups nightly" "rack 2"')],
        ("home.arpa", "MX"): [("home.arpa.", 300, "MX", "10 nas.home.arpa.")],
        ("_smb._tcp.home.arpa", "SRV"): [("_smb._tcp.home.arpa.", 300, "SRV", "0 100 445 nas.home.arpa.")],
        (ptr("192.168.1.10"), "PTR"): [(ptr("192.168.1.10"), 600, "PTR", "nas.home.arpa.")],
        (ptr("fd00::10"), "PTR"): [(ptr("fd00::10"), 300, "PTR", "nas.home.arpa.")],
        (ptr("192.168.1.20"), "PTR"): [(ptr("192.168.1.20"), 300, "PTR", "laserjet.home.arpa.")],
        ("files.home.arpa", "A"): [
            ("files.home.arpa.", 300, "CNAME", "share.home.arpa."),
            ("share.home.arpa.", 300, "CNAME", "nas.home.arpa."),
            ("nas.home.arpa.", 600, "A", "192.168.1.10"),
        ],
        ("files.home.arpa", "CNAME"): [("files.home.arpa.", 300, "CNAME", "share.home.arpa.")],
    }
    for (name, rdtype), records in expected.items():
        for tcp in (False, True):
            response = server.query(name, rdtype, tcp=tcp)
            assert response.rcode() == dns.rcode.NOERROR and authoritative(response), (name, rdtype)
            assert rdata(response) == records, (name, rdtype)
    # The client's spelling of the name comes back (0x20), the answer is the same.
    mixed = server.query("NaS.HoMe.ArPa")
    assert mixed.question[0].name.to_text() == "NaS.HoMe.ArPa." and rdata(mixed)[0][3] == "192.168.1.10"
    assert public.calls == []


def test_local_names_get_nodata_and_nxdomain_with_the_zones_soa(
    start_server: Callable[..., RunningServer], public: FakeDNS
) -> None:
    server = start_server(local_config(public))
    nodata = server.query("printer.home.arpa", "AAAA")  # the name exists, not with this type
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and authoritative(nodata)
    assert soa_owner(nodata) == "home.arpa."
    soa = nodata.authority[0][0]
    assert (soa.mname.to_text(), soa.rname.to_text(), soa.minimum) == ("home.arpa.", "nobody.invalid.", 300)
    chained = server.query("files.home.arpa", "MX")  # a chain to a name without MX: CNAMEs, then NODATA
    assert [r[2] for r in rdata(chained)] == ["CNAME", "CNAME"] and soa_owner(chained) == "home.arpa."
    missing = server.query("nothing.home.arpa")
    assert (
        missing.rcode() == dns.rcode.NXDOMAIN
        and authoritative(missing)
        and soa_owner(missing) == "home.arpa."
    )
    below = server.query("x.nas.home.arpa")
    assert below.rcode() == dns.rcode.NXDOMAIN
    # _tcp.home.arpa owns nothing but has a name below it: NODATA, never NXDOMAIN (RFC 8020).
    empty = server.query("_tcp.home.arpa", "TXT")
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer and soa_owner(empty) == "home.arpa."
    apex = server.query("home.arpa", "SOA")
    assert rdata(apex) == [("home.arpa.", 300, "SOA", "home.arpa. nobody.invalid. 1 3600 1200 604800 300")]
    assert public.calls == []


def test_a_local_cname_to_an_outside_name_is_resolved_and_cached(
    start_server: Callable[..., RunningServer], public: FakeDNS
) -> None:
    server = start_server(local_config(public))
    for _ in range(3):
        response = server.query("web.home.arpa")
        assert response.rcode() == dns.rcode.NOERROR and authoritative(response)
        assert [r[2:] for r in rdata(response)] == [("CNAME", "www.example.org."), ("A", "192.0.2.80")]
        assert rdata(response)[0][1] == 60  # the local CNAME keeps the TTL it was written with
    assert public.calls == [("www.example.org", "A", "udp")]  # the target once: then from the cache
    nodata = server.query("web.home.arpa", "AAAA")  # the upstream's negative answer after the CNAME
    assert nodata.rcode() == dns.rcode.NOERROR and [r[2] for r in rdata(nodata)] == ["CNAME"]
    assert soa_owner(nodata) == "www.example.org."
    gone = server.query("gone.home.arpa", "A")  # a chain into the local zone, to a name it lacks
    assert gone.rcode() == dns.rcode.NXDOMAIN and authoritative(gone) and soa_owner(gone) == "home.arpa."
    assert rdata(gone) == [("gone.home.arpa.", 300, "CNAME", "removed.home.arpa.")]


# ----------------------------------------------------------------------------------------------- policy


def test_policy_applies_to_local_names_except_a_record_for_the_exact_name(
    start_server: Callable[..., RunningServer], public: FakeDNS
) -> None:
    records = [*RECORDS, "chat.deepseek.com. A 10.0.0.5", "assistant.home.arpa. CNAME api.deepseek.com."]
    raw = local_config(
        public,
        local={"records": records},
        policy={"block": ["vendor:deepseek", "domain:guests.home.arpa"]},
    )
    server = start_server(raw)
    own_word = server.query("chat.deepseek.com")  # a local record for the very name: answered
    assert rdata(own_word) == [("chat.deepseek.com.", 300, "A", "10.0.0.5")] and authoritative(own_word)
    through = server.query("assistant.home.arpa")  # a local CNAME into a blocked name: blocked
    assert through.rcode() == dns.rcode.NXDOMAIN and not through.answer
    assert ede_of(through) == [
        (15, "blocked by policy: vendor:deepseek (DeepSeek, CN, chat/api) (via CNAME api.deepseek.com)")
    ]
    below = server.query("tablet.guests.home.arpa")  # in a local zone without a record: policy first
    assert below.rcode() == dns.rcode.NXDOMAIN and ede_of(below)[0][0] == 15
    assert public.calls == []


def test_policy_applies_to_forwarded_names(
    start_server: Callable[..., RunningServer], public: FakeDNS, corp: FakeDNS
) -> None:
    raw = local_config(
        public,
        policy={"block": ["domain:secret.corp.example"]},
        forward_zones=[{"name": "corp.example", "upstreams": [corp.url]}],
    )
    server = start_server(raw)
    blocked = server.query("vault.secret.corp.example")
    assert blocked.rcode() == dns.rcode.NXDOMAIN and ede_of(blocked)[0][0] == 15
    assert server.query("dc1.corp.example").answer[0][0].address == "10.0.0.10"
    assert corp.calls == [("dc1.corp.example", "A", "udp")] and public.calls == []


# ------------------------------------------------------------------------------ locally served zones


SPECIAL = [
    ("foo.invalid", "A", "invalid."),
    ("printer.local", "A", "local."),
    ("facebookcorewwwi.onion", "A", "onion."),
    ("unknown.home.arpa", "AAAA", "home.arpa."),
]
PRIVATE = {
    "10.1.2.3": "10.in-addr.arpa.",
    "172.20.0.1": "20.172.in-addr.arpa.",
    "192.168.7.99": "168.192.in-addr.arpa.",
    "100.64.1.1": "64.100.in-addr.arpa.",
    "169.254.1.1": "254.169.in-addr.arpa.",
    "127.0.0.2": "127.in-addr.arpa.",
    "192.0.2.1": "2.0.192.in-addr.arpa.",
    "fd12:3456::1": "d.f.ip6.arpa.",
    "fe80::1234": "8.e.f.ip6.arpa.",
    "2001:db8::1": "8.b.d.0.1.0.0.2.ip6.arpa.",
}


def assert_served_here(server: RunningServer) -> None:
    for name, rdtype, zone in SPECIAL:
        response = server.query(name, rdtype)
        assert response.rcode() == dns.rcode.NXDOMAIN and authoritative(response), name
        assert soa_owner(response) == zone
    for address, zone in PRIVATE.items():
        response = server.query(ptr(address), "PTR")
        assert response.rcode() == dns.rcode.NXDOMAIN and authoritative(response), address
        assert soa_owner(response) == zone, address
    loopback = {
        ("localhost", "A"): "127.0.0.1",
        ("localhost", "AAAA"): "::1",
        ("app.localhost", "A"): "127.0.0.1",
    }
    for (name, rdtype), address in loopback.items():
        response = server.query(name, rdtype)
        assert rdata(response)[0][3] == address and authoritative(response)
    assert rdata(server.query(ptr("127.0.0.1"), "PTR"))[0][3] == "localhost."
    assert server.query("app.localhost", "TXT").rcode() == dns.rcode.NOERROR  # exists: NODATA


def test_special_use_names_and_private_reverse_lookups_never_leave_in_forward_mode(
    start_server: Callable[..., RunningServer], public: FakeDNS
) -> None:
    server = start_server(local_config(public))
    assert_served_here(server)
    assert public.calls == []
    # The upstream is there: a public address's reverse lookup does reach it.
    assert rdata(server.query(ptr("8.8.8.8"), "PTR"))[0][3] == "dns.google."
    assert public.calls == [("8.8.8.8.in-addr.arpa", "PTR", "udp")]


def test_private_reverse_off_sends_them_upstream(
    start_server: Callable[..., RunningServer], public: FakeDNS
) -> None:
    server = start_server(local_config(public, local={"records": RECORDS, "private_reverse": False}))
    server.query(ptr("192.168.7.99"), "PTR")
    assert public.calls == [("99.7.168.192.in-addr.arpa", "PTR", "udp")]
    assert rdata(server.query(ptr("192.168.1.10"), "PTR"))[0][3] == "nas.home.arpa."  # records still answer
    assert server.query("x.home.arpa").rcode() == dns.rcode.NXDOMAIN and len(public.calls) == 1


@pytest.fixture(scope="module")
def hierarchy() -> Iterator[FakeHierarchy]:
    with build_test_hierarchy() as servers:
        yield servers


def recursive(**sections: Any) -> dict[str, Any]:
    resolver = {"mode": "recursive", "root_hints": ROOT_SERVERS, "ipv6": False, "timeout": 2.0}
    return local_config(None, resolver=resolver, **sections)


def asked_names(hierarchy: FakeHierarchy) -> set[str]:
    return {query.qname for server in hierarchy for query in server.queries}


def test_nothing_local_reaches_the_root_in_recursive_mode(
    start_server: Callable[..., RunningServer], hierarchy: FakeHierarchy, corp: FakeDNS
) -> None:
    hierarchy.reset()
    server = start_server(recursive(forward_zones=[{"name": "corp.example", "upstreams": [corp.url]}]))
    assert_served_here(server)
    assert server.query("dc1.corp.example").answer[0][0].address == "10.0.0.10"
    assert rdata(server.query("nas.home.arpa"))[0][3] == "192.168.1.10"
    # Recursion works (the root and test. are asked for this one), yet nothing local was ever asked.
    assert server.query("www.glue.test").answer[0][0].address == "192.0.2.1"
    asked = asked_names(hierarchy)
    assert "www.glue.test." in asked or "glue.test." in asked
    leaked = {
        name for name in asked if name.endswith(("arpa.", "invalid.", "local.", "onion.", "localhost."))
    }
    assert leaked == set() and not any("corp" in name for name in asked)
    assert corp.calls == [("dc1.corp.example", "A", "udp")]


def test_a_forward_zone_takes_a_private_reverse_zone_in_recursive_mode(
    start_server: Callable[..., RunningServer], hierarchy: FakeHierarchy, router: FakeDNS
) -> None:
    hierarchy.reset()
    zones = [{"name": "1.168.192.in-addr.arpa", "upstreams": [router.url]}]
    server = start_server(recursive(forward_zones=zones))
    assert rdata(server.query(ptr("192.168.1.5"), "PTR"))[0][3] == "tv.lan."
    assert rdata(server.query(ptr("192.168.1.10"), "PTR"))[0][3] == "nas.home.arpa."  # local record first
    assert server.query(ptr("192.168.2.5"), "PTR").rcode() == dns.rcode.NXDOMAIN  # the rest stays local
    assert router.calls == [("5.1.168.192.in-addr.arpa", "PTR", "udp")]
    assert not {name for name in asked_names(hierarchy) if name.endswith("arpa.")}


# ------------------------------------------------------------------------------- conditional forwarding


def test_forward_zones_route_by_longest_suffix_over_any_transport(
    start_server: Callable[..., RunningServer], public: FakeDNS, corp: FakeDNS, router: FakeDNS
) -> None:
    zones = [
        {"name": "corp.example", "upstreams": [corp.url], "dnssec": False},
        {"name": "lab.corp.example", "upstreams": [f"tcp://{ROUTER}:{router.port}"]},
        {"name": "10.in-addr.arpa", "upstreams": [corp.url]},
        {"name": "1.168.192.in-addr.arpa", "upstreams": [router.url]},
        {"name": "home.arpa", "upstreams": [router.url]},
    ]
    server = start_server(local_config(public, forward_zones=zones))
    assert server.query("dc1.corp.example").answer[0][0].address == "10.0.0.10"
    assert server.query("_ldap._tcp.corp.example", "SRV").answer[0][0].target.to_text() == "dc1.corp.example."
    assert server.query("corp.example", "SOA").answer[0][0].serial == 7
    assert rdata(server.query(ptr("10.0.0.10"), "PTR"))[0][3] == "dc1.corp.example."
    assert server.query("ws1.lab.corp.example").answer[0][0].address == "10.9.0.1"
    assert rdata(server.query(ptr("192.168.1.5"), "PTR"))[0][3] == "tv.lan."
    assert server.query("camera.home.arpa").answer[0][0].address == "192.168.1.50"
    assert rdata(server.query("nas.home.arpa"))[0][3] == "192.168.1.10"  # a local record still answers
    assert server.query(ptr("192.168.2.5"), "PTR").rcode() == dns.rcode.NXDOMAIN  # served here
    assert server.query("www.example.org").answer[0][0].address == "192.0.2.80"
    assert corp.calls == [
        ("dc1.corp.example", "A", "udp"),
        ("_ldap._tcp.corp.example", "SRV", "udp"),
        ("corp.example", "SOA", "udp"),
        ("10.0.0.10.in-addr.arpa", "PTR", "udp"),
    ]
    assert router.calls == [
        ("ws1.lab.corp.example", "A", "tcp"),
        ("5.1.168.192.in-addr.arpa", "PTR", "udp"),
        ("camera.home.arpa", "A", "udp"),
    ]
    assert public.calls == [("www.example.org", "A", "udp")]


# --------------------------------------------------------------------------------------------- hosts files


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def rewrite(path: Path, text: str) -> None:
    """Replace the file in one step (the watcher polls every 0.1 s here: a write in place could be read
    while empty) and move its mtime forward, so the watcher sees a change whatever the clock says."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(text)
    stamp = max(before + 1_000_000, time.time_ns())
    os.utime(staged, ns=(stamp, stamp))
    os.replace(staged, path)


def answer_of(server: RunningServer, name: str, rdtype: str = "A") -> str | None:
    response = server.query(name, rdtype)
    return rdata(response)[-1][3] if response.answer else dns.rcode.to_text(response.rcode())


def test_hosts_files_reload_when_they_change_without_a_restart(
    start_server: Callable[..., RunningServer],
    public: FakeDNS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("blockdns.server.app.WATCH_INTERVAL", 0.1)
    hosts = tmp_path / "hosts"
    rewrite(hosts, "192.168.1.30 tv tv.home.arpa\n")
    server = start_server(local_config(public, local={"hosts_files": ["hosts"]}))
    assert answer_of(server, "tv.home.arpa") == "192.168.1.30"
    assert answer_of(server, "tv") == "192.168.1.30"
    assert answer_of(server, ptr("192.168.1.30"), "PTR") == "tv."  # the first name on the line
    assert answer_of(server, "fridge.home.arpa") == "NXDOMAIN"

    rewrite(hosts, "192.168.1.31 tv.home.arpa\n192.168.1.32 fridge.home.arpa\nfd00::32 fridge.home.arpa\n")
    wait_for(lambda: answer_of(server, "tv.home.arpa") == "192.168.1.31")
    assert answer_of(server, "fridge.home.arpa") == "192.168.1.32"
    assert answer_of(server, "fridge.home.arpa", "AAAA") == "fd00::32"
    assert answer_of(server, ptr("192.168.1.32"), "PTR") == "fridge.home.arpa."
    assert answer_of(server, "tv") == "NXDOMAIN"  # gone from the file: asked upstream like any name
    assert public.calls == [("tv", "A", "udp")]
    assert server.server is not None and server.server.reloads == 0  # the policy was not recompiled

    rewrite(hosts, "192.168.1.33 tv.home.arpa\n192.168.1.300 broken\n")
    wait_for(lambda: any("hosts files not reloaded" in r.getMessage() for r in caplog.records))
    [refusal] = [r.getMessage() for r in caplog.records if "hosts files not reloaded" in r.getMessage()]
    assert f"{hosts}: line 2: '192.168.1.300' is not an IP address" in refusal
    assert answer_of(server, "tv.home.arpa") == "192.168.1.31"  # the old names keep serving

    rewrite(hosts, "192.168.1.33 tv.home.arpa\n")
    wait_for(lambda: answer_of(server, "tv.home.arpa") == "192.168.1.33")
    assert len(public.calls) == 1


def test_a_reload_that_changes_the_forward_zones_starts_a_fresh_cache(
    public: FakeDNS, corp: FakeDNS, tmp_path: Path
) -> None:
    from blockdns import config

    public.answer("dc1.corp.example", "A", "192.0.2.99")  # what the public side says about the name
    path = tmp_path / "blockdns.toml"

    def write(zones: str) -> None:
        path.write_text(
            f'[server]\nlisten = ["127.0.0.1:0"]\n'
            f'[resolver]\nmode = "forward"\nupstreams = ["{public.url}"]\ntimeout = 1.0\n'
            f"{TEST_LISTS_TOML}"
            f'[querylog]\npath = ""\n[api]\nlisten = ""\n{zones}'
        )

    write("")
    server = RunningServer(config.load(path)).start()
    try:
        assert server.server is not None
        assert server.query("dc1.corp.example").answer[0][0].address == "192.0.2.99"
        write(f'[[forward_zones]]\nname = "corp.example"\nupstreams = ["{corp.url}"]\n')
        assert server.call(server.server.reload()).ok
        assert server.query("dc1.corp.example").answer[0][0].address == "10.0.0.10"  # not the cached one
        write(
            f'[[forward_zones]]\nname = "corp.example"\nupstreams = ["{corp.url}"]\n\n[blocking]\nttl = 60\n'
        )
        assert server.call(server.server.reload()).ok
        assert server.query("dc1.corp.example").answer[0][0].address == "10.0.0.10"
        assert corp.calls == [("dc1.corp.example", "A", "udp")]  # zones unchanged: the cache was kept
    finally:
        server.stop()
