"""The README's "office" and "home lab" configurations, read from the README itself and run end to end: every
server they name is replaced by a fake on loopback that counts what it is asked, the root servers by the
fake hierarchy, the hosts file by a temporary one; everything else in them is used as written."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.rcode
import dns.reversename
import pytest

from conftest import LISTS_DIR, RunningServer, ede_of
from fakeauth import ROOT_SERVERS, FakeHierarchy, build_test_hierarchy
from fakedns import FakeDNS

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_config(heading: str) -> dict[str, Any]:
    """The first TOML block after ``heading`` in the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    block = re.search(r"```toml\n(.*?)```", text[start:], re.DOTALL)
    assert block is not None, heading
    return tomllib.loads(block.group(1))


def on_loopback(raw: dict[str, Any], servers: dict[str, str]) -> dict[str, Any]:
    """The README config with its listeners on a loopback port, no log or API, the shipped catalogue, and
    every upstream it names replaced by the fake ``servers[upstream]`` (each must have one)."""
    raw["server"]["listen"] = ["127.0.0.1:0"]
    raw["querylog"] = {"path": ""}
    raw["api"] = {"listen": ""}
    raw["lists"] = {
        "refresh": "0",
        "catalog": str(LISTS_DIR / "vendors"),
        "feeds": str(LISTS_DIR / "feeds.toml"),
    }
    resolver = raw.setdefault("resolver", {})
    resolver["upstreams"] = [servers[upstream] for upstream in resolver.get("upstreams", [])]
    for zone in raw.get("forward_zones", []):
        zone["upstreams"] = [servers[upstream] for upstream in zone["upstreams"]]
    return raw


def ptr(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


def first(response: dns.message.Message) -> str:
    return response.answer[-1][0].to_text()


@pytest.fixture(scope="module")
def hierarchy() -> Iterator[FakeHierarchy]:
    with build_test_hierarchy() as servers:
        yield servers


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeDNS]]:
    started = {
        "dc1": FakeDNS("127.0.14.10"),
        "dc2": FakeDNS("127.0.14.11"),
        "router": FakeDNS("127.0.14.1"),
        "public": FakeDNS("127.0.14.9"),
    }
    for fake in started.values():
        fake.start()
    yield started
    for fake in started.values():
        fake.stop()


def test_the_office_example(
    start_server: Callable[..., RunningServer], hierarchy: FakeHierarchy, fakes: dict[str, FakeDNS]
) -> None:
    dc1, dc2 = fakes["dc1"], fakes["dc2"]
    dc1.answer("dc1.corp.example", "A", "10.20.0.10")
    dc1.answer("_ldap._tcp.dc._msdcs.corp.example", "SRV", "0 100 389 dc1.corp.example.")
    dc1.answer("55.0.20.10.in-addr.arpa", "PTR", "ws55.corp.example.")
    dc1.silence("fs1.corp.example")  # the first controller is down for this one: the second answers
    dc2.answer("fs1.corp.example", "A", "10.20.0.12")
    raw = on_loopback(
        readme_config("### Example: an office"), {"udp://10.20.0.10": dc1.url, "udp://10.20.0.11": dc2.url}
    )
    assert raw["resolver"]["mode"] == "recursive"
    raw["resolver"] |= {"root_hints": ROOT_SERVERS, "ipv6": False, "timeout": 0.5}
    hierarchy.reset()
    server = start_server(raw)

    assert first(server.query("dc1.corp.example")) == "10.20.0.10"
    assert first(server.query("_ldap._tcp.dc._msdcs.corp.example", "SRV")) == "0 100 389 dc1.corp.example."
    assert first(server.query(ptr("10.20.0.55"), "PTR")) == "ws55.corp.example."
    assert first(server.query("fs1.corp.example")) == "10.20.0.12"
    printer = server.query("scan.office.corp.example")
    assert printer.flags & dns.flags.AA and first(printer) == "10.20.0.30"
    assert first(server.query("nas.office.corp.example", "AAAA")) == "fd20::40"
    assert first(server.query(ptr("10.20.0.30"), "PTR")) == "printer.office.corp.example."
    assert server.query(ptr("192.168.1.7"), "PTR").rcode() == dns.rcode.NXDOMAIN  # no zone: served here
    assert first(server.query("www.glue.test")) == "192.0.2.1"  # recursion from the (fake) root
    blocked = server.query("chat.openai.com")
    assert blocked.rcode() == dns.rcode.NXDOMAIN and ede_of(blocked)[0][0] == 15
    assert ede_of(server.query("copilot.microsoft.com")) == []  # allowed: not blocked

    asked_dcs = {name for name, _, _ in dc1.calls + dc2.calls}
    assert asked_dcs == {
        "dc1.corp.example",
        "_ldap._tcp.dc._msdcs.corp.example",
        "55.0.20.10.in-addr.arpa",
        "fs1.corp.example",
    }
    asked_root = {query.qname for server_ in hierarchy for query in server_.queries}
    assert not {name for name in asked_root if "corp" in name or name.endswith("arpa.")}


def test_the_home_lab_example(
    start_server: Callable[..., RunningServer], fakes: dict[str, FakeDNS], tmp_path: Path
) -> None:
    router, public = fakes["router"], fakes["public"]
    router.answer("laptop.lan", "A", "192.168.1.23")
    router.answer("23.1.168.192.in-addr.arpa", "PTR", "laptop.lan.")
    public.answer("www.example.org", "A", "192.0.2.80")
    public.answer("chat.deepseek.com", "A", "192.0.2.66")
    servers = {
        "udp://9.9.9.9:53": public.url,
        "tcp://149.112.112.112:53": f"tcp://{public.host}:{public.port}",
        "udp://192.168.1.1": router.url,
    }
    raw = on_loopback(readme_config("### Example: a home lab"), servers)
    [hosts_file] = raw["local"]["hosts_files"]
    assert hosts_file == "/etc/blockdns/lab.hosts"
    (tmp_path / "lab.hosts").write_text(
        "192.168.1.21 pve1 pve1.home.arpa\n192.168.1.22 pve2 pve2.home.arpa\n"
    )
    raw["local"]["hosts_files"] = ["lab.hosts"]
    server = start_server(raw)

    nas = server.query("grafana.home.arpa")
    assert nas.flags & dns.flags.AA and [rrset.rdtype for rrset in nas.answer] == [5, 1]
    assert first(nas) == "192.168.1.10"
    assert first(server.query("nas.home.arpa", "AAAA")) == "fd00:1::10"
    assert first(server.query("_smb._tcp.home.arpa", "SRV")) == "0 0 445 nas.home.arpa."
    assert first(server.query("nas.home.arpa", "TXT")) == '"rack 1, shelf 2"'
    assert first(server.query("pve2.home.arpa")) == "192.168.1.22"
    assert first(server.query(ptr("192.168.1.21"), "PTR")) == "pve1."
    assert first(server.query(ptr("192.168.1.10"), "PTR")) == "nas.home.arpa."
    assert first(server.query("laptop.lan")) == "192.168.1.23"
    assert first(server.query(ptr("192.168.1.23"), "PTR")) == "laptop.lan."
    assert server.query("printer.home.arpa").rcode() == dns.rcode.NXDOMAIN  # nobody is asked
    assert server.query(ptr("10.0.0.1"), "PTR").rcode() == dns.rcode.NXDOMAIN  # nor for this
    assert first(server.query("www.example.org")) == "192.0.2.80"
    assert ede_of(server.query("chat.deepseek.com"))[0][0] == 15  # category:chat

    assert router.calls == [("laptop.lan", "A", "udp"), ("23.1.168.192.in-addr.arpa", "PTR", "udp")]
    assert [name for name, _, _ in public.calls] == ["www.example.org"]
