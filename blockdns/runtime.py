"""From settings to a compiled policy and to local data: the one place that loads the catalogue, the feed
data, the local records and the hosts files.

Both the server (at start and on every reload) and the CLI (``check``, ``config check``, ``lists export``)
call :func:`build_policy` and :func:`load_local`, so they can never disagree about a decision.
"""

from __future__ import annotations

from pathlib import Path

from blockdns.catalog import Catalog, load_catalog, shipped_lists_dir
from blockdns.catalog_cache import load_compiled_catalog
from blockdns.catalog_compiled import CompiledCatalog
from blockdns.config import Settings
from blockdns.errors import ConfigError, SelectorError
from blockdns.feeds.model import FeedDefinition, default_feeds_file, load_definitions
from blockdns.feeds.store import read_feed_sources
from blockdns.localdata import LocalData, read_hosts_file, records_from_settings
from blockdns.policy import GroupSpec, Policy, compile_policy, parse_selector
from blockdns.server.ddr import ddr_records


def catalog_dir(settings: Settings) -> Path:
    path = settings.lists.catalog
    return settings.resolve_path(path) if path else shipped_lists_dir() / "vendors"


def guard_file(settings: Settings) -> Path | None:
    path = settings.lists.guard
    return settings.resolve_path(path) if path else None


def feeds_file(settings: Settings) -> Path:
    path = settings.lists.feeds
    return settings.resolve_path(path) if path else default_feeds_file()


def data_dir(settings: Settings) -> Path:
    return settings.resolve_path(settings.lists.data_dir)


def load_settings_catalog(settings: Settings) -> Catalog:
    """The full catalogue, every entry with its evidence: what the ``lists`` commands work on."""
    return load_catalog(catalog_dir(settings), guard_file(settings))


def load_compiled_settings_catalog(settings: Settings) -> CompiledCatalog:
    """The catalogue in the form the policy keeps, through the compiled-catalogue cache in the data dir."""
    return load_compiled_catalog(catalog_dir(settings), guard_file(settings), data_dir(settings))


def load_feed_definitions(settings: Settings, catalog: Catalog | CompiledCatalog) -> list[FeedDefinition]:
    path = feeds_file(settings)
    if settings.lists.feeds is not None and not path.exists():
        raise ConfigError("no such file", file=str(settings.source or "<defaults>"), key="lists.feeds")
    definitions = load_definitions(path)
    for index, definition in enumerate(definitions):
        if definition.vendor is not None and definition.vendor not in catalog.vendors:
            raise ConfigError(
                f"feed {definition.name!r} names vendor {definition.vendor!r}, which is not in the catalogue",
                file=str(path),
                key=f"feeds.{index}.vendor",
            )
    return definitions


def build_policy(settings: Settings) -> Policy:
    """Load the catalogue and fetched feed data and compile every group's selectors."""
    catalog = load_compiled_settings_catalog(settings)
    definitions = load_feed_definitions(settings, catalog)
    _check_feed_selectors(settings, {definition.name for definition in definitions})
    feeds = read_feed_sources(definitions, data_dir(settings))
    groups = [
        GroupSpec(group.name, tuple(group.networks()), tuple(group.block), tuple(group.allow))
        for group in settings.groups
    ]
    try:
        return compile_policy(catalog, settings.policy.block, settings.policy.allow, groups, feeds)
    except SelectorError as err:
        raise ConfigError(str(err), file=str(settings.source or "<defaults>"), key="policy") from None


def _check_feed_selectors(settings: Settings, feed_names: set[str]) -> None:
    places = [("policy.block", settings.policy.block), ("policy.allow", settings.policy.allow)]
    for index, group in enumerate(settings.groups):
        places += [(f"groups.{index}.block", group.block), (f"groups.{index}.allow", group.allow)]
    for key, selectors in places:
        for text in selectors:
            selector = parse_selector(text)
            if selector.kind == "feed" and selector.value not in feed_names:
                raise ConfigError(
                    f"{text}: no feed named {selector.value!r} is defined",
                    file=str(settings.source or "<defaults>"),
                    key=key,
                )


def load_local(settings: Settings) -> LocalData:
    """The local records and every hosts file, merged (reads the files: call it off the event loop)."""
    records = list(records_from_settings(settings.local.records, str(settings.source or "<defaults>")))
    for path in settings.hosts_paths():
        records += read_hosts_file(path)
    records += ddr_records(settings)  # RFC 9462 SVCB records naming the encrypted listeners
    return LocalData.build(records)
