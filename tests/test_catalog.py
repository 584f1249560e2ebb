"""The shipped catalogue: its contents, its evidence, and the decisions policies make over it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import publicsuffixlist
import pytest
from typer.testing import CliRunner

from blockdns import config
from blockdns.catalog import COUNTRY_CODES, Catalog, load_catalog
from blockdns.catalog_discover import feed_evidence
from blockdns.catalog_lint import lint
from blockdns.cli.main import app
from blockdns.entries import EntrySets
from blockdns.policy import FeedSource, Policy, compile_policy
from blockdns.runtime import build_policy

LISTS = Path(__file__).resolve().parent.parent / "lists"
EVIDENCE = Path(__file__).resolve().parent / "data" / "catalog" / "evidence"

# fmt: off
REQUIRED_VENDORS = [
    "openai", "anthropic", "google-gemini", "microsoft-copilot", "github-copilot", "deepseek", "mistral",
    "perplexity", "meta-ai", "xai", "character-ai", "poe", "huggingface", "cohere", "groq", "together",
    "replicate", "openrouter", "moonshot", "alibaba-qwen", "baidu-ernie", "bytedance-doubao",
    "tencent-yuanbao", "zhipu", "minimax", "iflytek-spark", "baichuan", "01-ai", "stepfun", "manus",
    "stability", "midjourney", "elevenlabs", "cursor", "windsurf", "tabnine", "jetbrains-ai", "encrypted-dns",
]
# fmt: on


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(LISTS / "vendors", LISTS / "guard.toml")


def compiled(catalog: Catalog, block: list[str], allow: list[str] | None = None) -> Policy:
    return compile_policy(catalog, block, allow or [])


def blocked_names(policy: Policy, names: list[str]) -> set[str]:
    return {name for name in names if policy.decide(name).blocked}


# ------------------------------------------------------------------------------------------- contents


def test_shipped_catalogue_lints_clean() -> None:
    findings = lint(LISTS / "vendors", LISTS / "guard.toml")
    assert [str(finding) for finding in findings] == []


def test_every_required_vendor_exists(catalog: Catalog) -> None:
    assert sorted(set(REQUIRED_VENDORS) - set(catalog.vendors)) == []


def test_catalogue_is_broad(catalog: Catalog) -> None:
    assert (
        len(catalog.in_all()) >= 250
    )  # AI vendors, not counting the opt-in bypass and voice-assistant files
    assert sum(len(vendor.domains) for vendor in catalog.vendors.values()) >= 450
    assert {vendor.jurisdiction for vendor in catalog.vendors.values()} >= {
        "US",
        "CN",
        "FR",
        "GB",
        "RU",
        "KR",
    }


def test_every_vendor_is_reviewed_and_every_domain_has_evidence(catalog: Catalog) -> None:
    citation = re.compile(r"https?://\S+|[\w.-]+/[\w.-]+ \S.*")
    for vendor in catalog.vendors.values():
        assert vendor.reviewed.isoformat() == "2026-11-27", vendor.id
        assert vendor.jurisdiction in COUNTRY_CODES | {"ZZ"}, vendor.id
        for entry in vendor.domains:
            assert citation.fullmatch(entry.evidence.strip()), (vendor.id, entry.name, entry.evidence)


# A host in a URL or a quoted string of a source-code excerpt (an AI client's provider registry):
# 'https://api.302.ai', "api.featherless.ai/v1".
_SOURCE_HOST = re.compile(r"""(?:https?://|['"`])([a-z0-9-]+(?:\.[a-z0-9-]+)+)(?=[/'"`:])""")
_SOURCE_SUFFIXES = (".ts", ".py", ".go", ".json", ".rb")


def _names_in_list_file(path: Path) -> set[str]:
    """Hostnames in a v2fly, hosts, adblock, plain-domains or Markdown-table file (enough syntax for the
    copies here), or the hosts of the URLs and quoted names in a source-code excerpt."""
    if path.suffix in _SOURCE_SUFFIXES:
        return {host.lower() for host in _SOURCE_HOST.findall(path.read_text(encoding="utf-8"))}
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("| "):  # a Markdown table row (not adblock "||name^"): the name is the first cell
            names.add(line.strip("|").split("|")[0].strip().lower())
            continue
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("!"):
            continue
        token = text.split()[-1] if text.startswith(("0.0.0.0 ", "127.0.0.1 ")) else text.split()[0]
        token = token.removeprefix("||").removesuffix("^").removeprefix("full:").removeprefix("domain:")
        names.add(token.lower())
    return names


def _public_suffix_rules() -> set[str]:
    dat = Path(publicsuffixlist.__file__).parent / "public_suffix_list.dat"
    return {line.strip().removeprefix("*.") for line in dat.read_text(encoding="utf-8").splitlines()}


def test_every_list_citation_is_backed_by_the_cited_file(catalog: Catalog) -> None:
    psl_rules = _public_suffix_rules()
    cache: dict[Path, set[str]] = {}
    unbacked = []
    for vendor in catalog.vendors.values():
        for entry in vendor.domains:
            if entry.evidence.startswith(("http://", "https://")):
                continue
            repo, path = entry.evidence.split()[:2]
            if repo == "publicsuffix/list":
                found = entry.name in psl_rules
            else:
                copy = EVIDENCE / repo / path
                assert copy.is_file(), f"{vendor.id}: cites {entry.evidence!r}; copy it into {EVIDENCE}"
                names = cache.setdefault(copy, _names_in_list_file(copy))
                # A registry names the hosts a client calls (api.example.ai): they back an entry that covers
                # them (example.ai), never an exact entry for another name.
                found = entry.name in names or (
                    entry.match == "suffix" and any(name.endswith(f".{entry.name}") for name in names)
                )
            if not found:
                unbacked.append((vendor.id, entry.name, entry.evidence))
    assert unbacked == []


def test_no_domain_belongs_to_two_vendors(catalog: Catalog) -> None:
    owners: dict[str, str] = {}
    for vendor in catalog.vendors.values():
        for entry in vendor.domains:
            assert owners.setdefault(entry.name, vendor.id) == vendor.id, entry.name


def test_look_alikes_and_shared_parents_are_not_listed(catalog: Catalog) -> None:
    listed = {entry.name for vendor in catalog.vendors.values() for entry in vendor.domains}
    assert listed.isdisjoint({"gemini.com", "deepseek.ai", "stablediffusionweb.com", "ai.com"})
    assert listed.isdisjoint({"google.com", "microsoft.com", "facebook.com", "vercel.com", "github.com"})


def test_bypass_file_covers_the_well_known_resolvers(catalog: Catalog) -> None:
    bypass = catalog.vendors["encrypted-dns"]
    assert bypass.categories == ("bypass",)
    assert bypass.jurisdiction == "ZZ"
    policy = compiled(catalog, ["category:bypass"])
    resolvers = ["dns.google", "mozilla.cloudflare-dns.com", "one.one.one.one", "dns.quad9.net",
                 "doh.opendns.com", "dns.adguard-dns.com", "dns.nextdns.io", "doh.cleanbrowsing.org",
                 "dns.mullvad.net", "mask.icloud.com", "mask-h2.icloud.com"]  # fmt: skip
    assert blocked_names(policy, resolvers) == set(resolvers)
    assert blocked_names(policy, ["www.icloud.com", "quad9.net", "chatgpt.com"]) == set()


# -------------------------------------------------------------------------------------------- guards


def test_under_block_all_no_guarded_name_is_blocked(catalog: Catalog) -> None:
    policy = compiled(catalog, ["all"])
    guarded = catalog.guarded_names()
    assert {"google.com", "microsoft.com", "github.com", "notion.so", "fengkongcloud.com"} <= set(guarded)
    probes = [probe for name in guarded for probe in (name, f"www.{name}")]
    assert blocked_names(policy, probes) == set()
    assert policy.dropped_by_guard == {}  # nothing in the catalogue had to be dropped


# ----------------------------------------------------------------------------------------- decisions

REAL_HOSTNAMES = [
    ("chat.deepseek.com", "deepseek", True),
    ("api.deepseek.com", "deepseek", True),
    ("api.openai.com", "openai", True),
    ("chatgpt.com", "openai", True),
    ("files.oaiusercontent.com", "openai", True),
    ("gemini.google.com", "google-gemini", True),
    ("generativelanguage.googleapis.com", "google-gemini", True),
    ("claude.ai", "anthropic", True),
    ("api.anthropic.com", "anthropic", True),
    ("copilot.microsoft.com", "microsoft-copilot", True),
    ("api.githubcopilot.com", "github-copilot", True),
    ("grok.x.com", "xai", True),
    ("kimi.moonshot.cn", "moonshot", True),
    ("chat.qwen.ai", "alibaba-qwen", True),
    ("dashscope.aliyuncs.com", "alibaba-qwen", True),
    ("www.doubao.com", "bytedance-doubao", True),
    ("huggingface.co", "huggingface", True),
    ("some-demo.hf.space", "huggingface", True),
    ("mozilla.cloudflare-dns.com", "encrypted-dns", True),
    ("www.google.com", None, False),
    ("mail.google.com", None, False),
    ("github.com", None, False),
    ("gemini.com", None, False),
    ("microsoft.com", None, False),
    ("www.bing.com", None, False),
    ("x.com", None, False),
    ("deepseek.ai", None, False),
    ("example.org", None, False),
]


@pytest.mark.parametrize(("name", "vendor", "blocked"), REAL_HOSTNAMES)
def test_real_hostnames_under_the_default_policy(
    catalog: Catalog, name: str, vendor: str | None, blocked: bool
) -> None:
    decision = compiled(catalog, ["all", "category:bypass"]).decide(name)
    assert decision.blocked is blocked
    assert (decision.rule.vendor.id if decision.rule and decision.rule.vendor else None) == vendor


def test_vendor_selector_selects_only_that_vendor(catalog: Catalog) -> None:
    policy = compiled(catalog, ["vendor:deepseek"])
    assert blocked_names(policy, ["chat.deepseek.com", "api.openai.com", "claude.ai", "deepseek.ai"]) == {
        "chat.deepseek.com"
    }
    assert policy.decide("chat.deepseek.com").to_json()["selector"] == "vendor:deepseek"


def test_category_selector(catalog: Catalog) -> None:
    policy = compiled(catalog, ["category:coding"])
    assert blocked_names(
        policy, ["cursor.com", "api.githubcopilot.com", "chat.deepseek.com", "suno.com"]
    ) == {
        "cursor.com",
        "api.githubcopilot.com",
    }


def test_domain_selector_covers_the_name_and_below(catalog: Catalog) -> None:
    policy = compiled(catalog, ["domain:example.org"])
    assert blocked_names(policy, ["example.org", "a.b.example.org", "notexample.org", "chatgpt.com"]) == {
        "example.org",
        "a.b.example.org",
    }


def test_most_specific_entry_wins(catalog: Catalog) -> None:
    policy = compiled(catalog, ["vendor:openai"], ["domain:platform.openai.com"])
    assert policy.decide("chat.openai.com").blocked
    assert not policy.decide("platform.openai.com").blocked
    assert not policy.decide("api.platform.openai.com").blocked
    narrower_block = compiled(catalog, ["domain:api.openai.com"], ["vendor:openai"])
    assert narrower_block.decide("api.openai.com").blocked
    assert not narrower_block.decide("chat.openai.com").blocked


def test_allow_beats_block_on_the_same_entry(catalog: Catalog) -> None:
    policy = compiled(catalog, ["vendor:openai"], ["domain:openai.com"])
    decision = policy.decide("api.openai.com")
    assert decision.action == "allow"
    assert decision.entry == "openai.com"
    assert policy.decide("chatgpt.com").blocked


def test_block_all_ai_except_microsoft_copilot(catalog: Catalog) -> None:
    policy = compiled(catalog, ["all"], ["vendor:microsoft-copilot"])
    assert policy.decide("copilot.microsoft.com").action == "allow"
    assert blocked_names(policy, ["chatgpt.com", "claude.ai", "chat.deepseek.com", "gemini.google.com"]) == {
        "chatgpt.com",
        "claude.ai",
        "chat.deepseek.com",
        "gemini.google.com",
    }


def test_block_chinese_jurisdiction_ai(catalog: Catalog) -> None:
    policy = compiled(catalog, ["jurisdiction:CN"])
    chinese = ["chat.deepseek.com", "kimi.moonshot.cn", "chat.qwen.ai", "www.doubao.com", "yiyan.baidu.com",
               "yuanbao.tencent.com", "chatglm.cn", "www.coze.com"]  # fmt: skip
    elsewhere = ["chatgpt.com", "claude.ai", "chat.mistral.ai", "gemini.google.com", "www.baidu.com"]
    assert blocked_names(policy, chinese + elsewhere) == set(chinese)
    for name in chinese:
        assert policy.decide(name).to_json()["jurisdiction"] == "CN"


def test_block_deepseek_only(catalog: Catalog) -> None:
    policy = compiled(catalog, ["vendor:deepseek"])
    assert policy.decide("chat.deepseek.com").blocked
    assert policy.decide("api.deepseek.com").blocked
    others = [
        entry.name
        for vendor in catalog.vendors.values()
        if vendor.id != "deepseek"
        for entry in vendor.domains
    ]
    assert blocked_names(policy, others) == set()
    assert not policy.decide("fengkongcloud.com").blocked  # DeepSeek's captcha provider stays reachable


# ---------------------------------------------------------------------------- settings, runtime, CLI


def _config_file(tmp_path: Path, extra: str = "") -> Path:
    feeds = tmp_path / "feeds.toml"
    feeds.write_text("")  # no feeds: decisions come from the catalogue alone
    path = tmp_path / "blockdns.toml"
    path.write_text(
        f'[lists]\ncatalog = "{LISTS / "vendors"}"\nguard = "{LISTS / "guard.toml"}"\n'
        f'feeds = "{feeds}"\ndata_dir = "{tmp_path / "data"}"\n{extra}'
    )
    return path


def test_build_policy_from_settings_with_a_group(tmp_path: Path) -> None:
    (tmp_path / "feeds.toml").write_text("")
    settings = config.from_dict(
        {
            "policy": {"block": ["all"], "allow": ["vendor:microsoft-copilot"]},
            "groups": [{"name": "research", "clients": ["10.20.0.0/16"], "block": ["jurisdiction:CN"]}],
            "lists": {
                "catalog": str(LISTS / "vendors"),
                "guard": str(LISTS / "guard.toml"),
                "feeds": str(tmp_path / "feeds.toml"),
                "data_dir": str(tmp_path / "data"),
            },
        }
    )
    policy = build_policy(settings)
    assert policy.decide("chatgpt.com", "192.168.1.5").blocked
    assert not policy.decide("copilot.microsoft.com", "192.168.1.5").blocked
    assert not policy.decide("chatgpt.com", "10.20.3.4").blocked
    research = policy.decide("chat.deepseek.com", "10.20.3.4")
    assert research.blocked and research.group == "research"


def test_check_json_explains_a_block(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["check", "Chat.DeepSeek.com.", "--json", "--config", str(_config_file(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "chat.deepseek.com"
    assert data["blocked"] is True
    assert data["action"] == "block"
    assert data["rule"] == "deepseek.com"
    assert data["selector"] == "all"
    assert (data["vendor"], data["category"], data["jurisdiction"], data["group"]) == (
        "deepseek",
        "chat",
        "CN",
        "default",
    )


def test_check_json_explains_an_allowed_look_alike(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["check", "gemini.com", "--json", "--config", str(_config_file(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["blocked"], data["action"], data["rule"], data["vendor"]) == (False, "none", None, None)


def test_lists_vendors_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lists", "vendors", "--json", "--config", str(_config_file(tmp_path))])
    assert result.exit_code == 0, result.output
    vendors = {vendor["id"]: vendor for vendor in json.loads(result.stdout)}
    assert set(REQUIRED_VENDORS) <= set(vendors)
    deepseek = vendors["deepseek"]
    assert (deepseek["name"], deepseek["jurisdiction"], deepseek["categories"]) == (
        "DeepSeek",
        "CN",
        ["chat", "api"],
    )
    assert deepseek["domain_count"] == len(deepseek["domains"]) >= 1
    assert "fengkongcloud.com" in deepseek["shared"]


def test_lists_vendors_table(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lists", "vendors", "--config", str(_config_file(tmp_path))])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if " deepseek " in line)
    assert "DeepSeek" in row and "CN" in row and "chat, api" in row


def test_lists_lint_on_the_shipped_catalogue_exits_0(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lists", "lint", "--config", str(_config_file(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "catalogue clean" in result.stdout


# ------------------------------------------------------------------------------------ scope of "all"


def test_all_leaves_out_bypass_and_voice_assistants(catalog: Catalog) -> None:
    every = compiled(catalog, ["all"])
    assert every.decide("chatgpt.com").blocked
    assert not every.decide("dns.google").blocked  # encrypted DNS is its own selector
    assert not every.decide("alice.yandex.net").blocked  # smart speakers only when the admin says so
    assert not every.decide("miaibox.com").blocked
    assert every.decide("alice.yandex.ru").blocked  # Alice's chat is an AI chat like any other
    default = compiled(catalog, config.Settings().policy.block)
    assert default.decide("dns.google").blocked and default.decide("chatgpt.com").blocked
    voice = compiled(catalog, ["category:voice-assistant"])
    assert blocked_names(voice, ["alice.yandex.net", "miaibox.com", "chatgpt.com"]) == {
        "alice.yandex.net",
        "miaibox.com",
    }


def test_borderline_categories_can_be_left_out(catalog: Catalog) -> None:
    policy = compiled(catalog, ["all"], ["category:translation", "category:writing"])
    assert not policy.decide("api.deepl.com").blocked
    assert not policy.decide("quillbot.com").blocked
    assert policy.decide("chatgpt.com").blocked
    assert compiled(catalog, ["all"]).decide("api.deepl.com").blocked


# ------------------------------------------------------------------------------- guards against feeds


def _feed(name: str, *suffix: str, vendor: str | None = None, category: str | None = "chat") -> FeedSource:
    return FeedSource(name, vendor, category, "block", EntrySets(block_suffix=set(suffix)))


def test_a_guard_protects_its_whole_subtree_against_feeds(catalog: Catalog) -> None:
    feed = _feed(
        "ai-list",
        "host.livekit.cloud",  # LiveKit's shared WebRTC host, below the guarded livekit.cloud
        "browser-intake-datadoghq.com",  # Datadog's intake for every customer
        "o33249.ingest.sentry.io",
        "themeforest.net",
        "some-new-ai.example",
    )
    policy = compile_policy(catalog, ["feed:ai-list"], feeds=[feed])
    assert blocked_names(
        policy,
        ["host.livekit.cloud", "browser-intake-datadoghq.com", "o33249.ingest.sentry.io", "themeforest.net",
         "x.some-new-ai.example"],
    ) == {"x.some-new-ai.example"}  # fmt: skip
    assert policy.dropped_by_guard["host.livekit.cloud"] == "livekit.cloud"
    assert policy.dropped_by_guard["o33249.ingest.sentry.io"] == "sentry.io"


def test_a_catalogue_entry_may_name_an_exact_host_below_a_guard(catalog: Catalog) -> None:
    assert "livekit.cloud" in catalog.guarded_names()
    policy = compiled(catalog, ["vendor:openai"])
    assert policy.decide("chatgpt.livekit.cloud").blocked
    assert not policy.decide("host.livekit.cloud").blocked
    # The same host from a feed is dropped: nobody reviewed it.
    feed_only = compile_policy(catalog, ["feed:f"], feeds=[_feed("f", "chatgpt.livekit.cloud")])
    assert not feed_only.decide("chatgpt.livekit.cloud").blocked


def test_guard_list_covers_the_platforms_ai_vendors_build_on(catalog: Catalog) -> None:
    guarded = set(catalog.guard)
    assert {
        "datadoghq.com", "sentry.io", "auth0.com", "stripe.com", "arkoselabs.com", "livekit.cloud",
        "agora.io", "b-cdn.net", "imgix.net", "netlify.app", "workers.dev", "volces.com", "envato.com",
    } <= guarded  # fmt: skip


def test_a_feed_on_github_is_cited_as_a_list_reference() -> None:
    raw = "https://raw.githubusercontent.com/v2fly/domain-list-community/master/data/category-ai-!cn"
    assert feed_evidence(raw) == "v2fly/domain-list-community data/category-ai-!cn"
    assert feed_evidence("https://lists.example/ai.txt") == "https://lists.example/ai.txt"
