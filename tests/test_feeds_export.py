"""``lists export``: each format keeps the policy's meaning, and each target's own tool loads the result."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from blockdns import config
from blockdns.errors import SelectorError, UserError
from blockdns.feeds.export import export_text
from blockdns.feeds.fetch import FetchOptions
from blockdns.feeds.formats import PARSERS, ParseOptions
from blockdns.feeds.update import update_feeds
from blockdns.runtime import build_policy, load_feed_definitions, load_settings_catalog

from ports import free_port

VENDOR = """\
name = "Acme AI"
jurisdiction = "US"
categories = ["chat"]
homepage = "https://acme.example"
reviewed = 2026-01-01

[[domains]]
name = "acme.example"
evidence = "https://acme.example/docs"

[[domains]]
name = "exact.acme-cdn.example"
match = "exact"
evidence = "https://acme.example/docs"
"""

ADBLOCK_FEED = """\
! a feed with every kind of entry
||tracker.example^
|only.example^
||blocked.example^
@@||open.blocked.example^
@@|door.blocked.example^
||inner.open.blocked.example^
"""

RANGES_FEED = '{"prefixes": [{"ipv4Prefix": "192.0.2.0/24"}, {"ipv6Prefix": "2001:db8:ac::/48"}]}'


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> config.Settings:
    """A config with a one-vendor catalogue, an adblock feed and an address-range feed, updated from file://."""
    root = tmp_path_factory.mktemp("export")
    (root / "catalog" / "vendors").mkdir(parents=True)
    (root / "catalog" / "vendors" / "acme.toml").write_text(VENDOR)
    (root / "mixed.txt").write_text(ADBLOCK_FEED)
    (root / "ranges.json").write_text(RANGES_FEED)
    (root / "feeds.toml").write_text(
        f'[[feeds]]\nname = "mixed"\nurl = "{(root / "mixed.txt").as_uri()}"\nformat = "adblock"\n'
        f'category = "agent"\n\n[[feeds]]\nname = "acme-ranges"\nurl = "{(root / "ranges.json").as_uri()}"\n'
        'format = "ipranges-json"\nvendor = "acme"\n'
    )
    (root / "blockdns.toml").write_text(
        '[policy]\nblock = ["vendor:acme", "feed:mixed"]\nallow = ["domain:docs.acme.example"]\n'
        '[lists]\ncatalog = "catalog/vendors"\nfeeds = "feeds.toml"\ndata_dir = "data"\n'
    )
    loaded = config.load(root / "blockdns.toml")
    definitions = load_feed_definitions(loaded, load_settings_catalog(loaded))
    report = asyncio.run(update_feeds(definitions, root / "data", fetch_options=FetchOptions(attempts=1)))
    assert report.exit_code == 0, report
    return loaded


def lines(settings: config.Settings, fmt: str, *select: str, zone: str | None = None) -> list[str]:
    return export_text(settings, fmt, select, zone).splitlines()


def body(settings: config.Settings, fmt: str, *select: str) -> list[str]:
    marker = {"adblock": "!", "rpz": ";"}.get(fmt, "#")
    return [line for line in lines(settings, fmt, *select) if line and not line.startswith(marker)]


# -------------------------------------------------------------------------------------------- meaning


def test_domains_export_is_exact_names_with_a_header_saying_so(settings: config.Settings) -> None:
    header = " ".join(line.lstrip("# ") for line in lines(settings, "domains") if line.startswith("#"))
    assert "names below these are NOT covered" in header
    assert "2 address ranges (acme-ranges) cannot be expressed" in header
    assert body(settings, "domains") == [
        "acme.example",
        "exact.acme-cdn.example",
        "blocked.example",
        "inner.open.blocked.example",
        "only.example",
        "tracker.example",
    ]


def test_hosts_export(settings: config.Settings) -> None:
    assert "0.0.0.0 tracker.example" in body(settings, "hosts")
    assert all(line.startswith("0.0.0.0 ") for line in body(settings, "hosts"))


def test_adblock_export_keeps_suffix_exact_and_exceptions(settings: config.Settings) -> None:
    assert body(settings, "adblock") == [
        "||acme.example^",
        "@@||docs.acme.example^",
        "|exact.acme-cdn.example^",
        "||blocked.example^",
        "@@|door.blocked.example^",
        "@@||open.blocked.example^",
        "||inner.open.blocked.example^$important",
        "|only.example^",
        "||tracker.example^",
    ]


def test_dnsmasq_export(settings: config.Settings) -> None:
    assert body(settings, "dnsmasq") == [
        "address=/acme.example/",
        "server=/docs.acme.example/#",
        "address=/exact.acme-cdn.example/",
        "server=/*.exact.acme-cdn.example/#",
        "address=/blocked.example/",
        "server=/door.blocked.example/#",
        "address=/*.door.blocked.example/",
        "server=/open.blocked.example/#",
        "address=/inner.open.blocked.example/",
        "address=/only.example/",
        "server=/*.only.example/#",
        "address=/tracker.example/",
    ]


def test_unbound_export(settings: config.Settings) -> None:
    text = lines(settings, "unbound")
    assert "server:" in text
    assert '    local-zone: "acme.example." always_nxdomain' in text
    assert '    local-zone: "docs.acme.example." always_transparent' in text
    assert '    local-zone: "only.example." transparent' in text
    assert '    local-data: "only.example. A 0.0.0.0"' in text
    assert any("exception for exactly door.blocked.example cannot be expressed" in line for line in text)


def test_rpz_export_is_a_complete_zone(settings: config.Settings) -> None:
    text = lines(settings, "rpz", zone="policy.example.")
    assert "$ORIGIN policy.example." in text
    assert any(line.startswith("@ SOA ") for line in text)
    assert "@ NS localhost." in text
    for expected in (
        "acme.example CNAME .",
        "*.acme.example CNAME .",
        "docs.acme.example CNAME rpz-passthru.",
        "*.docs.acme.example CNAME rpz-passthru.",
        "exact.acme-cdn.example CNAME .",
        "door.blocked.example CNAME rpz-passthru.",
        "24.0.2.0.192.rpz-ip CNAME .",
        "48.0.0.0.0.0.ac.db8.2001.rpz-ip CNAME .",
    ):
        assert expected in text
    assert "*.exact.acme-cdn.example CNAME ." not in text


def test_select_gives_a_union_and_default_is_the_policy(settings: config.Settings) -> None:
    only_feed = body(settings, "domains", "feed:mixed")
    assert "acme.example" not in only_feed and "tracker.example" in only_feed
    union = body(settings, "domains", "feed:mixed", "domain:extra.example")
    assert set(union) == {*only_feed, "extra.example"}
    assert body(settings, "domains") == body(settings, "domains", "vendor:acme", "feed:mixed")


def test_exports_agree_with_the_server_policy(settings: config.Settings) -> None:
    policy = build_policy(settings)
    reparsed = PARSERS["rpz"](export_text(settings, "rpz"), ParseOptions(feed="x", format="rpz")).data
    probes = [
        "acme.example", "a.acme.example", "docs.acme.example", "x.docs.acme.example", "door.blocked.example",
        "x.door.blocked.example", "open.blocked.example", "x.inner.open.blocked.example", "only.example",
        "x.only.example", "exact.acme-cdn.example", "x.exact.acme-cdn.example", "unrelated.example",
    ]  # fmt: skip
    for name in probes:
        hit = None
        for candidate in [name, *(name.split(".", i)[-1] for i in range(1, name.count(".") + 1))]:
            if candidate == name and (candidate in reparsed.block_exact or candidate in reparsed.allow_exact):
                hit = "block" if candidate in reparsed.block_exact else "allow"
                break
            if candidate in reparsed.block_suffix or candidate in reparsed.allow_suffix:
                hit = "allow" if candidate in reparsed.allow_suffix else "block"
                break
        assert (hit == "block") == policy.decide(name).blocked, name


def test_bad_usage(settings: config.Settings) -> None:
    with pytest.raises(SelectorError):
        export_text(settings, "domains", ["vendor:nobody"])
    with pytest.raises(SelectorError, match="no feed named 'nothing'"):
        export_text(settings, "domains", ["feed:nothing"])
    with pytest.raises(UserError, match="--zone applies only"):
        export_text(settings, "domains", (), "zone.example")
    with pytest.raises(UserError, match="--zone"):
        export_text(settings, "rpz", (), "bad..zone")


# ------------------------------------------------------------------------------ the targets load them


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (tests/system-deps.sh installs it)")
    return path


def test_unbound_checkconf_accepts_the_export(settings: config.Settings, tmp_path: Path) -> None:
    checkconf = need("unbound-checkconf")
    export = tmp_path / "blockdns.conf"
    export.write_text(export_text(settings, "unbound"))
    main = tmp_path / "unbound.conf"
    main.write_text(
        f'server:\n    directory: "{tmp_path}"\n    chroot: ""\n    username: ""\n    pidfile: ""\n'
        f'    use-syslog: no\ninclude: "{export}"\n'
    )
    result = subprocess.run([checkconf, str(main)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_named_checkzone_accepts_the_rpz_export(settings: config.Settings, tmp_path: Path) -> None:
    checkzone = need("named-checkzone")
    zone = tmp_path / "rpz.zone"
    zone.write_text(export_text(settings, "rpz"))
    result = subprocess.run(
        [checkzone, "rpz.blockdns", str(zone)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_dnsmasq_test_accepts_the_export(settings: config.Settings, tmp_path: Path) -> None:
    dnsmasq = need("dnsmasq")
    conf = tmp_path / "blockdns.conf"
    conf.write_text(export_text(settings, "dnsmasq"))
    result = subprocess.run(
        [dnsmasq, "--test", f"--conf-file={conf}"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def running_dnsmasq(settings: config.Settings, tmp_path: Path) -> Iterator[int]:
    """dnsmasq serving the export on loopback, forwarding everything else to a dead upstream."""
    dnsmasq = need("dnsmasq")
    conf = tmp_path / "blockdns.conf"
    conf.write_text(export_text(settings, "dnsmasq"))
    port = free_port()
    command = [
        dnsmasq, "--keep-in-foreground", f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
        "--no-resolv", "--no-hosts", "--server=127.0.0.1#9", f"--conf-file={conf}", "--pid-file=",
        f"--user={subprocess.run(['id', '-un'], capture_output=True, text=True).stdout.strip()}",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                dns.query.udp(
                    dns.message.make_query("acme.example", "A"), "127.0.0.1", port=port, timeout=0.2
                )
                break
            except dns.exception.Timeout:
                if process.poll() is not None:
                    pytest.skip(f"dnsmasq did not start: {process.stderr.read().decode()[:200]}")  # type: ignore[union-attr]
        yield port
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_dnsmasq_answers_as_the_policy_decides(running_dnsmasq: int) -> None:
    def answered_nxdomain(name: str) -> bool:
        try:
            reply = dns.query.udp(
                dns.message.make_query(name, "A"), "127.0.0.1", port=running_dnsmasq, timeout=0.25
            )
        except dns.exception.Timeout:
            return False  # forwarded to the dead upstream: not blocked
        return reply.rcode() == dns.rcode.NXDOMAIN

    assert answered_nxdomain("acme.example")
    assert answered_nxdomain("x.acme.example")
    assert not answered_nxdomain("docs.acme.example")
    assert answered_nxdomain("only.example")
    assert not answered_nxdomain("x.only.example")  # exact: the names below are not blocked
    assert not answered_nxdomain("door.blocked.example")  # exact exception
    assert answered_nxdomain("x.door.blocked.example")
    assert answered_nxdomain("x.inner.open.blocked.example")
