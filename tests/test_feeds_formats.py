"""Each feed format's meaning, on real samples (tests/data/feeds) and on small bodies written for the case."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from blockdns.entries import EntrySets
from blockdns.errors import FeedFormatError
from blockdns.feeds.compact import compact
from blockdns.feeds.formats import PARSERS, ParseOptions, ParseResult
from blockdns.feeds.formats.v2fly import ListTree

SAMPLES = Path(__file__).resolve().parent / "data" / "feeds"


def parse(fmt: str, text: str, **options: object) -> ParseResult:
    return PARSERS[fmt](text, ParseOptions(feed="sample", format=fmt, **options))  # type: ignore[arg-type]


def entries(data: EntrySets) -> set[str]:
    return set(data.lines())


# ----------------------------------------------------------------------------------------------- domains


def test_domains_are_exact_unless_the_definition_says_suffix() -> None:
    body = "# a comment\nExample.COM.\n\n! another comment\nb.example.org  # inline\n"
    body += "*.wild.example\n.dot.example\n"
    assert entries(parse("domains", body).data) == {
        "=example.com",
        "=b.example.org",
        "+wild.example",
        "+dot.example",
    }
    assert entries(parse("domains", body, suffix=True).data) == {
        "+example.com",
        "+b.example.org",
        "+wild.example",
        "+dot.example",
    }


def test_domains_idna_names_become_a_labels() -> None:
    assert entries(parse("domains", "bücher.example\n").data) == {"=xn--bcher-kva.example"}


def test_domains_rejected_lines_carry_feed_and_line() -> None:
    body = "".join(f"ok{i}.example\n" for i in range(30)) + "bad_name!.example\n"
    result = parse("domains", body)
    assert result.rejected == 1
    assert str(result.issues[0]).startswith("sample:31: ")


def test_domains_past_the_error_budget_is_not_the_format() -> None:
    body = "ok.example\n" + "this is not a domain\n" * 5
    with pytest.raises(FeedFormatError, match=r"sample:2: not domains format \(5 of 6 lines rejected"):
        parse("domains", body)


def test_a_body_of_another_format_fails_the_budget() -> None:
    hosts = (SAMPLES / "adaway" / "hosts-head.txt").read_text()
    with pytest.raises(FeedFormatError):
        parse("domains", hosts)


# ------------------------------------------------------------------------------------------------- hosts


def test_hosts_sample_is_exact_and_skips_localhost() -> None:
    result = parse("hosts", (SAMPLES / "adaway" / "hosts-head.txt").read_text())
    names = entries(result.data)
    assert "=analytics.163.com" in names
    assert not any("localhost" in line for line in names)
    assert all(line.startswith("=") for line in names)
    assert result.rejected == 0


def test_hosts_several_names_inline_comments_and_redirects() -> None:
    body = (
        "0.0.0.0 a.example b.example # two names\n"
        "127.0.0.1\tc.example\n"
        ":: d.example\n"
        "::1 localhost ip6-localhost\n"
        "255.255.255.255 broadcasthost\n"
        "192.0.2.10 intranet.example\n"
    )
    result = parse("hosts", body)
    assert entries(result.data) == {"=a.example", "=b.example", "=c.example", "=d.example"}
    assert result.skipped == {"redirect to an address other than a null or loopback one": 1}


def test_laylavish_hosts_file() -> None:
    result = parse("hosts", (SAMPLES / "laylavish" / "noai_hosts.txt").read_text())
    assert len(result.data.block_exact) > 2000
    assert "=forkful.ai" in entries(result.data)


# ----------------------------------------------------------------------------------------------- adblock


def test_adblock_rules() -> None:
    body = (
        "[Adblock Plus 2.0]\n"
        "! comment\n"
        "# pi-hole style comment\n"
        "||ads.example^\n"
        "||sub.ads.example^\n"  # covered by its parent: compacted away
        "|exact.example^\n"
        "||kept.example^$important\n"
        "@@||good.ads.example^\n"
        "@@|only.ads.example^\n"
        "||third.example^$third-party\n"
        "example.com##.banner\n"
        "example.com#@#.banner\n"
        "/banner[0-9]+/\n"
        "||example.net/path/ad.js\n"
        "||*.wild.example^\n"
        "||mid*dle.example^\n"
    )
    result = parse("adblock", body)
    assert entries(result.data) == {
        "+ads.example",
        "=exact.example",
        "+kept.example",
        "@+good.ads.example",
        "@=only.ads.example",
        "+wild.example",
    }
    assert result.skipped == {
        "modifier $third-party": 1,
        "cosmetic rule": 2,
        "regular expression": 1,
        "URL or path pattern": 1,
        "wildcard inside a name": 1,
    }


def test_adblock_cosmetic_only_list_has_no_entries_but_no_rejects() -> None:
    result = parse("adblock", (SAMPLES / "laylavish" / "list-excerpt.txt").read_text())
    assert len(result.data) == 0
    assert result.rejected == 0
    assert result.skipped["cosmetic rule"] > 20
    assert result.skipped["modifier $ehide"] == 1


# ----------------------------------------------------------------------------------------------- dnsmasq


def test_dnsmasq_directives() -> None:
    body = (
        "# hagezi style\n"
        "address=/ads.example/#\n"
        "address=/nx.example/\n"
        "address=/null4.example/0.0.0.0\n"
        "address=/a.example/b.example/\n"
        "server=/local.example/\n"
        "local=/other.example/\n"
        "server=/ok.ads.example/#\n"
        "address=/redirect.example/192.0.2.1\n"
        "server=/fwd.example/192.0.2.53\n"
        "address=/#/\n"
        "cache-size=1000\n"
        "address=/*.wild.example/\n"
    )
    result = parse("dnsmasq", body)
    assert entries(result.data) == {
        "+ads.example",
        "+nx.example",
        "+null4.example",
        "+a.example",
        "+b.example",
        "+local.example",
        "+other.example",
        "@+ok.ads.example",
        "+wild.example",
    }
    assert result.rejected == 0
    assert sum(result.skipped.values()) == 4


def test_dnsmasq_malformed_line_is_rejected() -> None:
    result = parse("dnsmasq", "address=/a.example/\n" * 20 + "address=/oops\n")
    assert result.rejected == 1
    assert result.issues[0].where == "21"


# --------------------------------------------------------------------------------------------------- rpz


RPZ_ZONE = """\
$TTL 300
$ORIGIN rpz.example.
@ IN SOA localhost. hostmaster.localhost. (
        2024010101 ; serial
        3600 600 86400 300 )
    IN NS localhost.
; triggers
exact.example        CNAME .
*.wild.example       CNAME .
both.example         CNAME .
*.both.example       CNAME .
nodata.example       CNAME *.
ok.wild.example      CNAME rpz-passthru.
*.fine.wild.example  CNAME rpz-passthru.
local.example        A 0.0.0.0
absolute.example.rpz.example. 300 IN CNAME .
24.0.2.0.192.rpz-ip  CNAME .
48.zz.db8.2001.rpz-ip CNAME .
ns.example.rpz-nsdname CNAME .
tcp.example          CNAME rpz-tcp-only.
"""


def test_rpz_triggers_and_actions() -> None:
    result = parse("rpz", RPZ_ZONE)
    assert entries(result.data) == {
        "=exact.example",
        "+wild.example",
        "+both.example",
        "=nodata.example",
        "@=ok.wild.example",
        "@+fine.wild.example",
        "=local.example",
        "=absolute.example",
        "%192.0.2.0/24",
        "%2001:db8::/48",
    }
    assert result.rejected == 0
    assert result.skipped == {"rpz-nsdname trigger": 1, "rpz-tcp-only action": 1}


def test_rpz_without_origin_uses_relative_names() -> None:
    zone = "$TTL 60\n@ SOA ns. host. 1 2 3 4 5\n@ NS ns.\nbad.example CNAME .\n*.bad2.example CNAME .\n"
    assert entries(parse("rpz", zone).data) == {"=bad.example", "+bad2.example"}


def test_rpz_owner_outside_the_zone_is_rejected() -> None:
    zone = "$ORIGIN rpz.example.\n@ SOA ns. host. 1 2 3 4 5\n" + "a.example CNAME .\n" * 20
    zone += "elsewhere.example. CNAME .\n"
    result = parse("rpz", zone)
    assert result.rejected == 1
    assert result.issues[0].reason == "owner outside the zone"


def test_rpz_unclosed_parenthesis_is_reported() -> None:
    zone = "@ SOA ns. host. ( 1 2 3 4 5\n" + "".join(f"n{i}.example CNAME .\n" for i in range(60))
    with pytest.raises(FeedFormatError):
        parse("rpz", zone, max_rejected=0.0)


# ------------------------------------------------------------------------------------------------- v2fly


def v2fly_tree(root: str) -> ParseResult:
    tree = ListTree(ParseOptions(feed="v2fly", format="v2fly"), root)
    tree.add(root, (SAMPLES / "v2fly" / root).read_text())
    for _ in range(10):
        pending = tree.missing()
        if not pending:
            break
        for name in pending:
            tree.add(name, (SAMPLES / "v2fly" / name).read_text())
    return tree.result()


def test_v2fly_category_ai_follows_includes() -> None:
    result = v2fly_tree("category-ai-!cn")
    names = entries(result.data)
    assert "+anthropic.com" in names  # include:anthropic, bare line
    assert "+openai.com" in names
    assert "=openaiapi-site.azureedge.net" in names  # full:
    assert "=browser-intake-datadoghq.com" in names  # full: with @ads
    assert "+mistral.ai" in names  # the root file's own line
    assert result.skipped["regexp: rule"] >= 1
    assert result.rejected == 0


def test_v2fly_category_ai_cn_has_inline_comment_on_include() -> None:
    result = v2fly_tree("category-ai-cn")
    names = entries(result.data)
    assert "+deepseek.com" in names
    assert "=cueme-api.quark.cn" in names
    assert any(name.startswith("+trae") or name.startswith("+marscode") for name in names)


def test_v2fly_attributes_filter_includes() -> None:
    tree = ListTree(ParseOptions(feed="f", format="v2fly"), "root")
    tree.add("root", "include:vendor @ads\ninclude:other @-ads\n")
    tree.add("vendor", "tracker.example @ads\nmain.example\n")
    tree.add("other", "full:t2.example @ads\nkeep.example @cn\n")
    assert entries(tree.result().data) == {"+tracker.example", "+keep.example"}


def test_v2fly_include_cycle_is_rejected_not_looped() -> None:
    tree = ListTree(ParseOptions(feed="f", format="v2fly", max_rejected=1.0), "a")
    tree.add("a", "include:b\na.example\n")
    tree.add("b", "include:a\nb.example\n")
    result = tree.result()
    assert entries(result.data) == {"+a.example", "+b.example"}
    assert result.issues[0].reason == "include cycle"
    assert result.issues[0].where == "b:1"


def test_v2fly_rule_kinds() -> None:
    body = "domain:a.example\nfull:b.example\nregexp:^c.*$\nkeyword:ai\nbogus:x\nd.example &aff @attr\n"
    result = parse("v2fly", body, max_rejected=1.0)
    assert entries(result.data) == {"+a.example", "=b.example", "+d.example"}
    assert result.skipped == {"regexp: rule": 1, "keyword: rule": 1}
    assert result.issues[0].reason == "unknown rule type 'bogus'"


def test_v2fly_include_names_cannot_leave_the_directory() -> None:
    result = parse("v2fly", "include:../secret\ninclude:a/b\n" + "ok.example\n" * 20)
    assert result.rejected == 2
    assert all(issue.reason == "malformed include" for issue in result.issues)


# ------------------------------------------------------------------------------------------ json formats


def test_ipranges_json_openai_and_google_samples() -> None:
    openai = parse("ipranges-json", (SAMPLES / "vendor-samples" / "openai-gptbot.json").read_text())
    assert openai.data.networks
    assert all(network.version == 4 for network in openai.data.networks)
    google = parse("ipranges-json", (SAMPLES / "vendor-samples" / "google-goog.json").read_text())
    versions = {network.version for network in google.data.networks}
    assert versions == {4, 6}


def test_ipranges_json_collapses_and_rejects() -> None:
    body = (
        '{"prefixes": [{"ipv4Prefix": "192.0.2.0/25"}, {"ipv4Prefix": "192.0.2.128/25"},'
        ' {"ipv6Prefix": "2001:db8::/32"}, {"ipv4Prefix": "192.0.2.7/32"}, {"service": "x"}]}'
    )
    result = parse("ipranges-json", body, max_rejected=0.5)
    assert result.data.networks == [
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    ]
    assert result.issues[0].where == "prefixes[4]"


@pytest.mark.parametrize("body", ["not json", "[]", '{"prefixes": 3}', "{" * 100_000])
def test_ipranges_json_wrong_shapes_are_format_errors(body: str) -> None:
    with pytest.raises(FeedFormatError, match="sample"):
        parse("ipranges-json", body)


def test_m365_endpoints_guard_names() -> None:
    body = (SAMPLES / "vendor-samples" / "microsoft365-endpoints-worldwide.json").read_text()
    result = parse("m365-endpoints", body, guard=True)
    names = entries(result.data)
    assert "=outlook.office.com" in names
    assert "+microsoft.com" in names  # *.microsoft.com
    assert "+sharepoint.com" in names  # *-files.sharepoint.com protects its parent in a guard feed
    assert "+onmicrosoft.com" in names  # autodiscover.*.onmicrosoft.com
    assert not result.data.networks  # ips are not used
    as_block = parse("m365-endpoints", body, guard=False)
    assert as_block.skipped["wildcard inside a name"] == 4


# --------------------------------------------------------------------------------------------- compaction


def test_compaction_keeps_meaningful_nesting() -> None:
    data = EntrySets(
        block_suffix={"a.example", "b.a.example", "d.c.a.example", "x.example"},
        block_exact={"e.a.example", "x.example", "only.example"},
        allow_suffix={"c.a.example", "x.example"},
        allow_exact={"f.c.a.example", "g.a.example"},
    )
    assert entries(compact(data)) == {
        "+a.example",  # b.a.example and e.a.example are covered by it
        "@+c.a.example",
        "+d.c.a.example",  # a block inside an allow inside a block stays
        "@+x.example",  # allow wins on the same name, against the block suffix and the exact block
        "=only.example",
        "@=g.a.example",
    }  # f.c.a.example (allow inside an allow) went
