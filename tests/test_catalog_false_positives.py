"""Names an office cannot lose stay resolvable under the broadest AI policy, with the shipped AI feeds on.

The feeds are the real lists (copies in tests/data/feeds): v2fly's AI categories, which carry shared hosts
(Datadog's and Sentry's intake, LiveKit's WebRTC host, Envato's marketplace) beside AI services, and
laylavish's 2,000-name AI hosts list. The guard list must keep every name below from being blocked, while
the feeds' AI names still are.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blockdns.catalog import Catalog, load_catalog
from blockdns.feeds.formats import PARSERS
from blockdns.feeds.formats.base import ParseOptions, ParseResult
from blockdns.feeds.formats.v2fly import ListTree
from blockdns.policy import FeedSource, Policy, compile_policy

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "feeds"

# Services an office runs on, and the platforms AI vendors build on that other customers share.
_MUST_NOT_BLOCK_TEXT = """
google.com mail.google.com docs.google.com accounts.google.com gstatic.com fonts.googleapis.com
storage.googleapis.com youtube.com googlevideo.com microsoft.com login.microsoftonline.com office.com
outlook.office365.com teams.microsoft.com graph.microsoft.com update.microsoft.com live.com bing.com
www.bing.com azure.com blob.core.windows.net azureedge.net azurefd.net apple.com icloud.com mzstatic.com
amazon.com amazonaws.com s3.amazonaws.com cloudfront.net github.com api.github.com
raw.githubusercontent.com github.io gitlab.com slack.com zoom.us webex.com discord.com whatsapp.com
telegram.org facebook.com instagram.com fbcdn.net linkedin.com x.com reddit.com wikipedia.org
stackoverflow.com medium.com substack.com cloudflare.com akamaihd.net akamaized.net fastly.net
jsdelivr.net unpkg.com dropbox.com notion.so atlassian.net trello.com figma.com canva.com miro.com
salesforce.com hubspot.com zendesk.com intercom.io stripe.com js.stripe.com paypal.com mozilla.org
brave.com opera.com samsung.com debian.org python.org pypi.org files.pythonhosted.org
registry.npmjs.org docker.io vercel.app netlify.app herokuapp.com firebaseio.com grammarly.com
spotify.com adobe.com baidu.com qq.com weixin.qq.com taobao.com alipay.com aliyun.com jd.com
bilibili.com zhihu.com douyin.com tiktok.com feishu.cn larksuite.com yandex.ru naver.com kakao.com
sentry.io o33249.ingest.sentry.io datadoghq.com browser-intake-datadoghq.com auth0.com okta.com
recaptcha.net hcaptcha.com livekit.cloud host.livekit.cloud agora.io twilio.com segment.io
mixpanel.com amplitude.com envato.com themeforest.net qualtrics.com
"""
MUST_NOT_BLOCK = _MUST_NOT_BLOCK_TEXT.split()

# AI names the same feeds carry that no catalogue vendor lists: proof the feeds are applied at all.
FEED_ONLY_AI_NAMES = ["chutes.ai", "notegpt.io", "sider.ai", "ai-art-generator.art"]


def _v2fly(root: str) -> ParseResult:
    tree = ListTree(ParseOptions(feed=root, format="v2fly"), root)
    tree.add(root, (SAMPLES / "v2fly" / root).read_text())
    for _ in range(10):
        for name in tree.missing():
            tree.add(name, (SAMPLES / "v2fly" / name).read_text())
    assert not tree.missing()
    return tree.result()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "lists" / "vendors", ROOT / "lists" / "guard.toml")


@pytest.fixture(scope="module")
def broadest_policy(catalog: Catalog) -> Policy:
    laylavish = PARSERS["hosts"](
        (SAMPLES / "laylavish" / "noai_hosts.txt").read_text(), ParseOptions(feed="laylavish", format="hosts")
    )
    feeds = [
        FeedSource("v2fly-category-ai-non-cn", None, "chat", "block", _v2fly("category-ai-!cn").data),
        FeedSource("v2fly-category-ai-cn", None, "chat", "block", _v2fly("category-ai-cn").data),
        FeedSource("laylavish", None, "chat", "block", laylavish.data),
    ]
    return compile_policy(catalog, ["all", "category:bypass", "category:chat"], [], feeds=feeds)


def test_no_name_an_office_needs_is_blocked(broadest_policy: Policy) -> None:
    blocked = {name: broadest_policy.decide(name).rule for name in MUST_NOT_BLOCK}
    assert {name: rule for name, rule in blocked.items() if rule is not None and rule.action == "block"} == {}


def test_the_feeds_ai_names_are_blocked(catalog: Catalog, broadest_policy: Policy) -> None:
    catalogue_only = compile_policy(catalog, ["all", "category:bypass", "category:chat"], [])
    for name in FEED_ONLY_AI_NAMES:
        assert not catalogue_only.decide(name).blocked, name
        assert broadest_policy.decide(name).blocked, name
