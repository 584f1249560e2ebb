"""Configuration: every mistake is one line naming the file and key, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blockdns import config
from blockdns.errors import ConfigError


def blockdns(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blockdns", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ("[server]\nlisten = ['127.0.0.1:1053']\nfoo = 1\n", "server.foo", "unknown key"),
        ("[nonsense]\n", "nonsense", "unknown key"),
        ("[server]\nlisten = ['999.1.1.1:53']\n", "server.listen", "not an IP address"),
        ("[server]\nlisten = ['127.0.0.1:99999']\n", "server.listen", "bad port"),
        ("[server]\nallow_clients = ['10.0.0.0/33']\n", "server.allow_clients", ""),
        ("[cache]\nmax_entries = 'many'\n", "cache.max_entries", "integer"),
        ("[cache]\nmin_ttl = 100\nmax_ttl = 10\n", "cache", "min_ttl is larger than max_ttl"),
        ("[cache]\nstale_max_age = 'a while'\n", "cache.stale_max_age", "duration"),
        ("[cache]\nserve_stale = 'sometimes'\n", "cache.serve_stale", "bool"),
        ("[cache]\nprefetch = 2\n", "cache.prefetch", "bool"),
        ("[resolver]\nmode = 'telepathy'\n", "resolver.mode", "recursive"),
        ("[resolver]\nupstreams = ['quic://dns.example']\n", "resolver.upstreams", "udp://"),
        ("[resolver]\nupstreams = ['https://dns.example']\n", "resolver.upstreams", "/dns-query"),
        ("[resolver]\nupstreams = ['tls://1.2.3.4#not..a.name']\n", "resolver.upstreams", "host name"),
        ("[resolver]\nupstreams = ['tls://dns.example/path']\n", "resolver.upstreams", "no path"),
        ("[resolver]\nbootstrap = ['dns.example']\n", "resolver.bootstrap", "not an IP"),
        ("[blocking]\nresponse = 'teapot'\n", "blocking.response", "nxdomain"),
        ("[blocking]\ncustom_ipv4 = '::1'\n", "blocking.custom_ipv4", "IPv4"),
        ("[policy]\nblock = ['vendr:openai']\n", "policy.block", "not a selector"),
        ("[policy]\nblock = ['category:robots']\n", "policy.block", "unknown category"),
        ("[policy]\nblock = ['domain:bad..name']\n", "policy.block", "empty label"),
        ("[policy]\nblock = ['vendor:deepseek', 'vendor:DeepSeek']\n", "policy.block", "listed twice"),
        ("[[groups]]\nname='a'\nclients=['10.0.0.0/8']\nallow=['all', 'all']\n", "groups.0.allow", "twice"),
        ("[[groups]]\nname = 'a'\nclients = ['nope']\n", "groups.0.clients", ""),
        (
            "[[groups]]\nname='a'\nclients=['10.0.0.0/8']\n[[groups]]\nname='a'\nclients=['10.1.0.0/16']\n",
            "(top level)",
            "unique",
        ),
        ("[lists]\nrefresh = 'soon'\n", "lists.refresh", "duration"),
        ("[querylog]\nclients = 'some'\n", "querylog.clients", "full"),
        ("[api]\nlisten = 'localhost:80'\n", "api.listen", "not an IP address"),
        ("[api]\nallowed_hosts = ['dns.example.org:443']\n", "api.allowed_hosts", "host name"),
        ("[api]\nallowed_hosts = ['*.example.org']\n", "api.allowed_hosts", ".example.org"),
        ("[api]\nread_token = 'yes please'\n", "api.read_token", "bool"),
        ("[server]\nlisten = = 1\n", "line 2", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, toml, key, words):
    path = tmp_path / "blockdns.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert message.startswith(str(path.resolve()) if "TOML" not in words else str(path))
    assert key in message and words in message
    assert "\n" not in message


def test_config_check_cli_exit_codes_and_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nlisten = ['127.0.0.1:1053']\ntypo = true\n")
    result = blockdns("config", "check", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "server.typo: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    good = tmp_path / "good.toml"
    good.write_text("[policy]\nblock = ['domain:deepseek.com']\n")
    result = blockdns("config", "check", "--config", str(good))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_missing_config_file_is_exit_2(tmp_path):
    result = blockdns("config", "check", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_unknown_vendor_or_feed_in_policy_is_exit_2(tmp_path):
    path = tmp_path / "blockdns.toml"
    path.write_text("[policy]\nblock = ['vendor:no-such-vendor']\n")
    result = blockdns("config", "check", "--config", str(path))
    assert result.returncode == 2 and "no-such-vendor" in result.stderr
    path.write_text("[policy]\nblock = ['feed:no-such-feed']\n")
    result = blockdns("config", "check", "--config", str(path))
    assert result.returncode == 2 and "no-such-feed" in result.stderr


def test_defaults_match_the_interface():
    settings = config.Settings()
    assert settings.server.listen == ["127.0.0.1:1053", "[::1]:1053"]
    assert settings.resolver.mode == "recursive"
    assert settings.policy.block == ["all", "category:bypass"]
    assert settings.api.listen == "127.0.0.1:8053"
    assert settings.api.allowed_hosts == [] and settings.api.read_token is False
    assert settings.blocking.response == "nxdomain" and settings.blocking.bypass_protection
    assert settings.querylog.max_rows == 10_000_000


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    path = tmp_path / "etc" / "blockdns.toml"
    path.parent.mkdir()
    path.write_text("[lists]\ndata_dir = 'state/lists'\n[querylog]\npath = 'state/log.sqlite'\n")
    settings = config.load(path)
    assert settings.resolve_path(settings.lists.data_dir) == path.parent.resolve() / "state" / "lists"
    assert settings.querylog_path() == path.parent.resolve() / "state" / "log.sqlite"


def test_blockdns_toml_in_the_working_directory_is_read(tmp_path):
    (tmp_path / "blockdns.toml").write_text("[blocking]\nttl = 42\n")
    result = blockdns("config", "check", cwd=tmp_path)
    assert result.returncode == 0 and str(tmp_path / "blockdns.toml") in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["check"], "Missing argument"),
        (["log", "--limit", "many"], "--limit"),
        (["nosuchcommand"], "No such command"),
        (["serve", "--bogus"], "No such option"),
        (["config", "check", "--config", "{tmp}"], "cannot read"),  # a directory
    ],
)
def test_every_bad_argument_is_one_line_and_exit_2(tmp_path, args, words):
    result = blockdns(*(arg.replace("{tmp}", str(tmp_path)) for arg in args), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "╭" not in result.stderr and "Traceback" not in result.stderr


def test_encrypted_upstreams_parse_to_host_port_path_and_tls_name():
    settings = config.from_dict(
        {
            "resolver": {
                "mode": "forward",
                "upstreams": [
                    "tls://9.9.9.9#dns.quad9.net",
                    "https://[2620:fe::fe]:8443/dns-query#DNS.Quad9.net.",
                    "tls://dot.example:8853",
                ],
                "bootstrap": ["192.0.2.53", "[2001:db8::53]:5353"],
                "tls_ca": "ca.pem",
            }
        },
        source=Path("/etc/blockdns/blockdns.toml"),
    )
    dot, doh, named = settings.resolver.upstream_list()
    assert (dot.protocol, dot.host, dot.port, dot.verify_name) == ("tls", "9.9.9.9", 853, "dns.quad9.net")
    assert (doh.host, doh.port, doh.path, doh.verify_name) == (
        "2620:fe::fe",
        8443,
        "/dns-query",
        "dns.quad9.net",
    )
    assert str(doh) == "https://[2620:fe::fe]:8443/dns-query#dns.quad9.net"
    assert named.host_is_name and named.verify_name == "dot.example" and not dot.host_is_name
    assert settings.resolver.bootstrap_addresses() == [("192.0.2.53", 53), ("2001:db8::53", 5353)]
    assert settings.tls_ca_path() == Path("/etc/blockdns/ca.pem")
