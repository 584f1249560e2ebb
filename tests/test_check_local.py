"""``blockdns check NAME`` says when a local record, a locally served zone or a forward zone answers a name,
and what policy says where it still applies (a local CNAME's target)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blockdns.cli.main import app

from conftest import TEST_CATALOG

CONFIG = f"""
[policy]
block = ["vendor:deepseek"]

[lists]
catalog = "{TEST_CATALOG / "vendors"}"
guard = "{TEST_CATALOG / "guard.toml"}"
feeds = "{TEST_CATALOG / "feeds.toml"}"
refresh = "0"

[local]
records = [
  "nas.home.arpa. 300 IN A 192.168.1.10",
  "chat.deepseek.com. A 10.0.0.5",
  "assistant.home.arpa. CNAME api.deepseek.com.",
  "wiki.home.arpa. CNAME wiki.corp.example.",
]
hosts_files = ["hosts"]

[[forward_zones]]
name = "corp.example"
upstreams = ["udp://10.0.0.10", "tcp://10.0.0.11"]
dnssec = false
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "hosts").write_text("192.168.1.21 pve1.home.arpa\n")
    path = tmp_path / "blockdns.toml"
    path.write_text(CONFIG)
    return path


def check(config_file: Path, name: str, *extra: str) -> str:
    result = CliRunner().invoke(app, ["check", name, "--config", str(config_file), *extra])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_local_record_is_named_with_where_it_was_written(config_file: Path) -> None:
    out = check(config_file, "nas.home.arpa")
    assert out.splitlines()[0] == "nas.home.arpa: answered by a local record (group default)"
    assert f"nas.home.arpa. 300 IN A 192.168.1.10    ({config_file}: local.records.0)" in out
    assert "policy does not apply" in out
    ptr = check(config_file, "21.1.168.192.in-addr.arpa")
    assert f"PTR pve1.home.arpa.    ({config_file.parent / 'hosts'}: line 1, the PTR of its address)" in ptr


def test_a_local_record_beats_policy_but_its_cname_target_does_not(config_file: Path) -> None:
    own = check(config_file, "chat.deepseek.com")
    assert "answered by a local record" in own and "without it: blocked by policy: vendor:deepseek" in own
    data = json.loads(check(config_file, "chat.deepseek.com", "--json"))
    assert data["blocked"] is False and data["answered_by"]["kind"] == "local-record"
    assert data["rule"] == "deepseek.com"  # what policy alone would have done is still there
    through = check(config_file, "assistant.home.arpa")
    assert through.splitlines()[0] == "assistant.home.arpa: BLOCKED (group default)"
    assert "leaves the local data at api.deepseek.com" in through and "vendor:deepseek" in through
    data = json.loads(check(config_file, "assistant.home.arpa", "--json"))
    assert data["blocked"] is True and data["target_decision"]["rule"] == "deepseek.com"
    assert data["answered_by"]["cname_target"] == "api.deepseek.com"


def test_served_zones_and_forward_zones_are_named(config_file: Path) -> None:
    zone = check(config_file, "tablet.home.arpa")
    assert "allowed" in zone and "locally served zone home.arpa (RFC 8375)" in zone
    reverse = check(config_file, "7.0.0.10.in-addr.arpa")
    assert "locally served zone 10.in-addr.arpa (RFC 6303)" in reverse
    forward = check(config_file, "dc1.corp.example")
    assert "forward zone corp.example: resolved by udp://10.0.0.10, tcp://10.0.0.11" in forward
    data = json.loads(check(config_file, "dc1.corp.example", "--json"))
    assert data["answered_by"] | {"records": []} == {
        "kind": "forward-zone",
        "records": [],
        "zone": "corp.example",
        "upstreams": ["udp://10.0.0.10", "tcp://10.0.0.11"],
        "cname_target": None,
        "target": None,
    }
    wiki = check(config_file, "wiki.home.arpa")
    assert "leaves the local data at wiki.corp.example" in wiki and "forward zone corp.example" in wiki
    elsewhere = json.loads(check(config_file, "www.example.org", "--json"))
    assert elsewhere["answered_by"]["kind"] == "resolver" and elsewhere["blocked"] is False
