"""The DNSSEC keys of ``[resolver]``: one-line errors, defaults by mode, the built-in IANA anchors, and a
private root without anchors turning validation off with one log line."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import dns.dnssec
import dns.name
import pytest

from blockdns import config
from blockdns.config import ResolverSettings
from blockdns.errors import ConfigError
from blockdns.resolve.recursive import RecursiveResolver
from blockdns.trustanchors import IANA_ROOT_ANCHORS, builtin_anchors, parse_anchor

GOOD_DS = ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ("[resolver]\ndnssec = 'maybe'\n", "resolver.dnssec", "'validate' or 'off'"),
        ("[resolver]\ntrust_anchors = ['. IN DS 20326 8 2 ZZ']\n", "resolver.trust_anchors", "bad DS data"),
        ("[resolver]\ntrust_anchors = ['. IN A 192.0.2.1']\n", "resolver.trust_anchors", "DS or DNSKEY"),
        ("[resolver]\ntrust_anchors = ['example.']\n", "resolver.trust_anchors", "not a DS or DNSKEY"),
        ("[resolver]\ntrust_anchors = ['. IN DNSKEY 257 3 13 !!!']\n", "resolver.trust_anchors", "DNSKEY"),
        ("[resolver]\nnegative_trust_anchors = ['bad..name']\n", "resolver.negative_trust_anchors", "empty"),
        ("[[forward_zones]]\nname = 'corp.example'\nupstreams = ['udp://10.0.0.1']\ndnssec = 'sometimes'\n",
         "forward_zones.0.dnssec", "bool"),
    ],
)  # fmt: skip
def test_bad_dnssec_config_is_one_line_naming_the_key(
    tmp_path: Path, toml: str, key: str, words: str
) -> None:
    path = tmp_path / "blockdns.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert message.startswith(str(path.resolve()))
    assert key in message and words in message and "\n" not in message


def test_the_cli_refuses_a_bad_anchor_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[resolver]\ntrust_anchors = ['. IN DS 20326 8 2 E06']\n")
    result = subprocess.run(
        [sys.executable, "-m", "blockdns", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "resolver.trust_anchors" in result.stderr


def test_defaults_validate_in_recursive_mode_only() -> None:
    assert ResolverSettings().validating()
    assert not ResolverSettings(mode="forward").validating()
    assert ResolverSettings(mode="forward", dnssec="validate").validating()
    assert not ResolverSettings(dnssec="off").validating()


def test_the_iana_root_keys_are_built_in_and_go_with_the_built_in_root() -> None:
    anchors = builtin_anchors()
    assert {anchor.rdata.key_tag for anchor in anchors} == {20326, 38696}  # type: ignore[attr-defined]
    assert all(anchor.zone == dns.name.root for anchor in anchors)
    assert ResolverSettings().anchor_lines() == IANA_ROOT_ANCHORS
    assert ResolverSettings(root_hints=["127.0.0.1:5300"]).anchor_lines() == ()
    custom = ResolverSettings(root_hints=["127.0.0.1:5300"], trust_anchors=[GOOD_DS])
    assert custom.anchor_lines() == (GOOD_DS,)


def test_anchor_lines_take_a_ttl_and_a_dnskey() -> None:
    key = (
        "example. 3600 IN DNSKEY 257 3 13 "
        "mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="
    )
    anchor = parse_anchor(key)
    assert anchor.zone == dns.name.from_text("example.")
    assert anchor.rdata.algorithm == 13 and anchor.rdata.flags == 257  # type: ignore[attr-defined]


def test_a_private_root_without_anchors_is_not_validated_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="blockdns.recursive"):
        resolver = RecursiveResolver(ResolverSettings(root_hints=["127.0.0.1:5300"]))
    assert resolver.validator is None
    lines = [
        record.getMessage() for record in caplog.records if "DNSSEC validation is off" in record.getMessage()
    ]
    assert len(lines) == 1 and "trust_anchors" in lines[0]
    with caplog.at_level(logging.WARNING, logger="blockdns.recursive"):
        caplog.clear()
        validating = RecursiveResolver(
            ResolverSettings(root_hints=["127.0.0.1:5300"], trust_anchors=[GOOD_DS])
        )
    assert validating.validator is not None and not caplog.records
