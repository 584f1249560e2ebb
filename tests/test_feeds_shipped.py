"""The shipped ``lists/feeds.toml``: valid, licences recorded, vendors exist, doubtful feeds disabled."""

from __future__ import annotations

from blockdns.catalog import load_catalog
from blockdns.config import Settings
from blockdns.feeds.model import default_feeds_file, load_definitions
from blockdns.runtime import load_feed_definitions


def test_shipped_feeds_load_and_name_catalogue_vendors() -> None:
    definitions = load_feed_definitions(Settings(), load_catalog())
    names = {definition.name for definition in definitions}
    assert {"v2fly-category-ai-non-cn", "v2fly-category-ai-cn", "hagezi-doh-vpn-proxy-bypass"} <= names
    assert all(definition.license for definition in definitions)


def test_shipped_feed_choices() -> None:
    feeds = {definition.name: definition for definition in load_definitions(default_feeds_file())}
    assert feeds["v2fly-category-ai-non-cn"].url.endswith("/data/category-ai-!cn")
    assert feeds["v2fly-category-ai-non-cn"].license == "MIT"
    assert feeds["hagezi-doh-vpn-proxy-bypass"].category == "bypass"
    assert feeds["hagezi-doh-vpn-proxy-bypass"].license == "GPL-3.0"
    assert feeds["microsoft-365"].role == "guard"
    # Licence or scope in doubt: defined, documented, disabled.
    for name in ("anthropic-api-ranges", "openai-gptbot-ranges", "microsoft-365"):
        assert not feeds[name].enabled, name
    assert all(feed.url.startswith("https://") for feed in feeds.values())
