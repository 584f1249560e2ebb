"""Local data: record lines read as zone-file syntax, hosts files, the CNAME rules and the PTRs made for
addresses; every mistake is one line naming the file and the key or line."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockdns import config, dnsname
from blockdns.errors import ConfigError
from blockdns.localdata import (
    TYPE_MX,
    TYPE_PTR,
    TYPE_SRV,
    TYPE_TXT,
    LocalData,
    Record,
    Source,
    parse_hosts,
    parse_record_text,
)
from blockdns.runtime import load_local
from blockdns.wire import TYPE_A, TYPE_AAAA, TYPE_CNAME


def settings_with(tmp_path: Path, toml: str) -> config.Settings:
    path = tmp_path / "blockdns.toml"
    path.write_text(toml)
    return config.load(path)


def test_every_record_type_is_read_with_its_ttl_and_data() -> None:
    lines = {
        "nas.home.arpa. 600 IN A 192.168.1.10": (TYPE_A, 600, bytes([192, 168, 1, 10])),
        "nas.home.arpa. IN AAAA fd00::10": (TYPE_AAAA, 300, ipaddress.ip_address("fd00::10").packed),
        "files.home.arpa. 1h CNAME nas.home.arpa.": (TYPE_CNAME, 3600, dnsname.from_text("nas.home.arpa")),
        'nas.home.arpa. TXT "v=spf1 -all" "two"': (TYPE_TXT, 300, b"\x0bv=spf1 -all\x03two"),
        "home.arpa. 60 MX 10 mail.home.arpa.": (
            TYPE_MX,
            60,
            b"\x00\x0a" + dnsname.from_text("mail.home.arpa"),
        ),
        "_ldap._tcp.corp.example. SRV 0 100 389 dc1.corp.example.": (
            TYPE_SRV,
            300,
            b"\x00\x00\x00\x64\x01\x85" + dnsname.from_text("dc1.corp.example"),
        ),
        "7.1.168.192.in-addr.arpa. PTR printer.home.arpa.": (
            TYPE_PTR,
            300,
            dnsname.from_text("printer.home.arpa"),
        ),
    }
    for line, (rtype, ttl, rdata) in lines.items():
        [(owner, got_type, got_ttl, got_rdata)] = parse_record_text(line)
        assert (got_type, got_ttl, got_rdata) == (rtype, ttl, rdata), line
        assert owner == dnsname.from_text(line.split()[0])
    # The trailing dot is optional (names are absolute), and names are case-folded.
    assert parse_record_text("NAS.Home.Arpa A 192.168.1.10")[0][0] == dnsname.from_text("nas.home.arpa")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("nas.home.arpa. 300 IN A 999.1.1.1", "malformed record"),
        ("nas.home.arpa. 300 IN A", "expecting an identifier"),
        ("nas.home.arpa. 300 IN A 192.168.1.10 192.168.1.11", "expected EOL"),
        ("nas.home.arpa. 300 IN NS ns.home.arpa.", "NS records are not served locally"),
        ("nas.home.arpa. 300 CH A 192.168.1.10", "class"),
        ("*.home.arpa. 300 IN A 192.168.1.10", "wildcard"),
        ("nas.home.arpa. 3000000000 IN A 192.168.1.10", "RFC 2181"),
        ("$ORIGIN home.arpa.", ""),
        ("", "no record"),
        ("home.arpa. MX ten mail.home.arpa.", "expecting an integer"),
    ],
)
def test_a_bad_record_is_one_error_naming_the_key_and_the_line(tmp_path: Path, line: str, words: str) -> None:
    toml = f"[local]\nrecords = ['nas.home.arpa. A 192.168.1.10', {line!r}]\n"
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, toml)
    message = str(caught.value)
    assert "local.records.1" in message and words in message and "\n" not in message
    assert repr(line.strip()) in message  # the line itself, as written


def test_config_check_reports_a_bad_record_and_a_bad_hosts_line_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "blockdns.toml"
    path.write_text("[local]\nrecords = ['printer.home.arpa. A 192.168.1.300']\n")
    result = subprocess.run(
        [sys.executable, "-m", "blockdns", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "local.records.0" in result.stderr and "192.168.1.300" in result.stderr
    hosts = tmp_path / "hosts"
    hosts.write_text("192.168.1.10 nas\n\n# printers\n192.168.1.300 printer\n")
    path.write_text("[local]\nhosts_files = ['hosts']\n")
    result = subprocess.run(
        [sys.executable, "-m", "blockdns", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"{hosts}: line 4: '192.168.1.300' is not an IP address" in result.stderr


def test_hosts_files_give_every_name_on_a_line_both_families_and_skip_comments() -> None:
    text = (
        "# /etc/hosts\n"
        "127.0.0.1   localhost\n"
        "192.168.1.10 nas nas.home.arpa   # the NAS\n"
        "fd00::10     nas.home.arpa\n"
        "fe80::1%eth0 router.home.arpa\n"
        "\n   \t\n"
    )
    records = list(parse_hosts(text, "hosts"))
    assert [
        (dnsname.to_text(r.owner), r.rtype, ipaddress.ip_address(r.rdata).compressed) for r in records
    ] == [
        ("localhost.", TYPE_A, "127.0.0.1"),
        ("nas.", TYPE_A, "192.168.1.10"),
        ("nas.home.arpa.", TYPE_A, "192.168.1.10"),
        ("nas.home.arpa.", TYPE_AAAA, "fd00::10"),
        ("router.home.arpa.", TYPE_AAAA, "fe80::1"),
    ]
    assert records[1].source == Source("hosts", "line 3")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("192.168.1.300 printer", "'192.168.1.300' is not an IP address"),
        ("printer 192.168.1.30", "'printer' is not an IP address"),
        ("192.168.1.30", "no host name"),
        ("192.168.1.30 bad..name", "empty label"),
        ("192.168.1.30 under_score ok-name a+b", "'a+b'"),
    ],
)
def test_a_bad_hosts_line_is_one_error_naming_the_file_and_line(
    tmp_path: Path, line: str, words: str
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"192.168.1.10 nas\n{line}\n")
    settings = settings_with(tmp_path, "[local]\nhosts_files = ['hosts']\n")
    with pytest.raises(ConfigError) as caught:
        load_local(settings)
    message = str(caught.value)
    assert message.startswith(f"{hosts}: line 2: ") and words in message and "\n" not in message


def test_a_missing_hosts_file_is_named(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, "[local]\nhosts_files = ['absent']\n")
    with pytest.raises(ConfigError, match="absent: no such hosts file"):
        load_local(settings)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_no_text_breaks_the_hosts_parser(text: str) -> None:
    try:
        list(parse_hosts(text, "hosts"))
    except ConfigError as err:
        assert "\n" not in str(err)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_no_text_breaks_the_record_parser(text: str) -> None:
    try:
        parse_record_text(text)
    except ValueError as err:
        assert str(err)


def build(*lines: str) -> LocalData:
    source = Source("blockdns.toml", "local.records")
    records = [
        Record(owner, rtype, ttl, rdata, source)
        for line in lines
        for owner, rtype, ttl, rdata in parse_record_text(line)
    ]
    return LocalData.build(records)


def ptr_of(local: LocalData, address: str) -> str | None:
    return local.ptr_name(ipaddress.ip_address(address))


def test_every_address_gets_a_ptr_to_its_first_name_unless_one_is_written() -> None:
    local = build(
        "nas.home.arpa. A 192.168.1.10",
        "files.home.arpa. A 192.168.1.10",
        "nas.home.arpa. AAAA fd00::10",
        "printer.home.arpa. A 192.168.1.20",
        "20.1.168.192.in-addr.arpa. PTR laserjet.home.arpa.",
    )
    assert ptr_of(local, "192.168.1.10") == "nas.home.arpa"
    assert ptr_of(local, "fd00::10") == "nas.home.arpa"
    assert ptr_of(local, "192.168.1.20") == "laserjet.home.arpa"
    assert ptr_of(local, "127.0.0.1") == "localhost"  # RFC 6761: built in
    assert ptr_of(local, "::1") == "localhost"
    assert ptr_of(local, "192.168.1.99") is None
    reverse = dnsname.from_text("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa")
    assert local.get(reverse) is not None
    made = local.describe(dnsname.from_text("10.1.168.192.in-addr.arpa"))
    assert made == [
        (
            "10.1.168.192.in-addr.arpa. 300 IN PTR nas.home.arpa.",
            "blockdns.toml: local.records, the PTR of its address",
        )
    ]


def test_records_of_one_set_merge_with_the_smallest_ttl() -> None:
    local = build("nas.home.arpa. 600 A 192.168.1.10", "nas.home.arpa. 60 A 192.168.1.11")
    rrset = local.rrsets[dnsname.from_text("nas.home.arpa")][TYPE_A]
    assert rrset.ttl == 60 and len(rrset.rdatas) == 2


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (["nas.home.arpa. CNAME files.home.arpa.", "nas.home.arpa. A 192.168.1.10"], "stands alone"),
        (["a.home.arpa. CNAME b.home.arpa.", "a.home.arpa. CNAME c.home.arpa."], "more than one CNAME"),
        (["a.home.arpa. CNAME b.home.arpa.", "b.home.arpa. CNAME a.home.arpa."], "loop"),
        ([f"c{n}.home.arpa. CNAME c{n + 1}.home.arpa." for n in range(12)], "chain more than 8"),
    ],
)
def test_cname_rules(lines: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        build(*lines)
    assert "blockdns.toml: local.records" in str(caught.value)


def test_localhost_stays_a_loopback_name_beside_a_hosts_file() -> None:
    local = LocalData.build(parse_hosts("127.0.0.1 localhost\n::1 localhost ip6-localhost\n", "hosts"))
    types = local.rrsets[dnsname.from_text("localhost")]
    assert types[TYPE_A].rdatas == (bytes([127, 0, 0, 1]),) and len(types[TYPE_AAAA].rdatas) == 1
