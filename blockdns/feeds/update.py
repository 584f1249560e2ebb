"""``blockdns lists update``: fetch every enabled feed, parse, normalise, compare, and commit feed by feed.

Nothing lost, nothing poisoned. For each feed, one of:

* ``ok``: new data, written and committed (see :mod:`blockdns.feeds.store` for why a kill at any moment
  leaves every feed fully old or fully new and the manifest consistent with the data);
* ``unchanged``: the source answered 304, sent the same bytes, or produced the same entries;
* ``failed``: the download failed (HTTP error, timeout, broken transfer) — the last good data stays;
* ``refused``: the body was refused (HTML, empty, too large, not the declared format, no entries, or it
  shrank by more than half against the last good data without ``--force``) — the last good data stays.

A run with any failed or refused feed exits 1. ``--force`` accepts a shrink, never HTML, an empty body or a
body that is not the declared format. ``--dry-run`` does everything but write.

The server refreshes by running ``python -m blockdns lists update --config FILE`` in a subprocess (see
:func:`blockdns.feeds.refresh.update_command`) and reloading afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from blockdns.catalog import Catalog
from blockdns.entries import EntrySets
from blockdns.errors import ConfigError, FeedError, FeedFormatError, FetchError
from blockdns.feeds.checks import BodyRefused
from blockdns.feeds.download import FeedDownloader
from blockdns.feeds.fetch import Fetcher, FetchOptions
from blockdns.feeds.formats import Issue, ParseResult
from blockdns.feeds.manifest import FeedState, Status
from blockdns.feeds.model import FeedDefinition, parse_data, render_data
from blockdns.feeds.progress import Progress, SilentProgress
from blockdns.feeds.store import DataStore

PARSER_VERSION = 1  # bump when parsing changes meaning, so the next run fetches every feed in full


class ShrinkRefused(FeedError):
    """The new data lost more than half of the last good entries (accepted with --force)."""


@dataclass(slots=True)
class FeedOutcome:
    name: str
    status: Status
    added: int = 0
    removed: int = 0
    total: int = 0
    rejected: int = 0
    skipped: int = 0
    error: str | None = None
    issues: list[Issue] = field(default_factory=list)
    new_names: list[str] = field(default_factory=list)  # new block names, for the review queue

    @property
    def bad(self) -> bool:
        return self.status in ("failed", "refused")


@dataclass(slots=True)
class UpdateReport:
    outcomes: list[FeedOutcome]
    dry_run: bool = False
    review: dict[str, list[str]] = field(default_factory=dict)  # feed -> new names no vendor covers

    @property
    def failed(self) -> bool:
        return any(outcome.bad for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(definition: FeedDefinition) -> str:
    """What the stored data depends on besides the bodies; a change means fetching in full again."""
    parts = [definition.url, definition.format, definition.match, definition.role, PARSER_VERSION]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def data_header(definition: FeedDefinition) -> str:
    return f"feed: {definition.name}\nsource: {definition.url}\nformat: {definition.format}"


def _entries(data: EntrySets) -> set[str]:
    return set(data.lines())


class Updater:
    """One run over a set of feed definitions."""

    def __init__(
        self,
        store: DataStore,
        fetcher: Fetcher,
        *,
        force: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.force = force
        self.progress = progress or SilentProgress()

    async def run(self, definitions: Iterable[FeedDefinition]) -> list[FeedOutcome]:
        enabled = [definition for definition in definitions if definition.enabled]
        self.progress.start(len(enabled))
        try:
            return list(await asyncio.gather(*(self._feed(definition) for definition in enabled)))
        finally:
            self.progress.close()

    async def _feed(self, definition: FeedDefinition) -> FeedOutcome:
        try:
            outcome = await self._update(definition)
        except OSError as err:  # the data directory, not the feed: disk full, permissions
            reason = err.strerror or str(err)
            outcome = FeedOutcome(
                definition.name, "failed", error=f"cannot write in {self.store.data_dir}: {reason}"
            )
        self.progress.done(definition.name, outcome.status)
        return outcome

    async def _update(self, definition: FeedDefinition) -> FeedOutcome:
        name = definition.name
        previous_state = self.store.manifest.feeds.get(name)
        previous_text = self.store.current_text(name)
        previous = _parse_stored(previous_text)
        conditional = previous is not None and previous_state is not None
        conditional = conditional and previous_state.fingerprint == fingerprint(definition)  # type: ignore[union-attr]
        downloader = FeedDownloader(
            self.fetcher, self.store, definition, previous_state if conditional else None
        )
        try:
            result = await downloader.parse()
            if result is None:
                return self._unchanged(definition, previous_state, downloader, previous)
            self._check(definition, result, previous)
        except (BodyRefused, FeedFormatError, ShrinkRefused) as err:
            return self._keep(definition, previous_state, previous, "refused", str(err))
        except FetchError as err:
            return self._keep(definition, previous_state, previous, "failed", str(err))
        return self._replace(definition, previous_state, previous, downloader, result)

    def _check(self, definition: FeedDefinition, result: ParseResult, previous: EntrySets | None) -> None:
        total = len(result.data)
        if total == 0:
            skipped = f" ({result.skipped_total} rules DNS cannot express)" if result.skipped_total else ""
            raise FeedFormatError(
                f"no usable entries{skipped}; is format = {definition.format!r} right?", feed=definition.name
            )
        if previous is not None and total * 2 < len(previous) and not self.force:
            raise ShrinkRefused(
                f"{definition.name}: would shrink from {len(previous)} to {total} entries "
                "(more than half); run with --force to accept"
            )

    def _state(self, definition: FeedDefinition, base: FeedState | None, **changes: object) -> FeedState:
        state = base or FeedState(url=definition.url)
        return state.model_copy(update={"checked_at": now_utc(), **changes})

    def _unchanged(
        self,
        definition: FeedDefinition,
        previous_state: FeedState | None,
        downloader: FeedDownloader,
        previous: EntrySets | None,
    ) -> FeedOutcome:
        download = downloader.download
        root = download.sources.get(definition.url)
        state = self._state(
            definition,
            previous_state,
            status="unchanged",
            error=None,
            fetched_at=now_utc(),
            etag=root.etag if root else None,
            last_modified=root.last_modified if root else None,
            sources=download.sources,
        )
        self.store.commit(definition.name, state, raw=download.raw_bodies())
        total = len(previous) if previous is not None else 0
        return FeedOutcome(
            definition.name, "unchanged", total=total, rejected=state.rejected, skipped=state.skipped
        )

    def _keep(
        self,
        definition: FeedDefinition,
        previous_state: FeedState | None,
        previous: EntrySets | None,
        status: Status,
        error: str,
    ) -> FeedOutcome:
        state = self._state(definition, previous_state, status=status, error=error)
        self.store.commit(definition.name, state)
        total = len(previous) if previous is not None else 0
        return FeedOutcome(definition.name, status, total=total, error=error)

    def _replace(
        self,
        definition: FeedDefinition,
        previous_state: FeedState | None,
        previous: EntrySets | None,
        downloader: FeedDownloader,
        result: ParseResult,
    ) -> FeedOutcome:
        download = downloader.download
        root = download.sources.get(definition.url)
        new_entries = _entries(result.data)
        old_entries = _entries(previous) if previous is not None else set()
        text = render_data(result.data, data_header(definition))
        changed = new_entries != old_entries
        state = self._state(
            definition,
            previous_state,
            url=definition.url,
            status="ok" if changed else "unchanged",
            error=None,
            fetched_at=now_utc(),
            etag=root.etag if root else None,
            last_modified=root.last_modified if root else None,
            entries=len(result.data),
            rejected=result.rejected,
            skipped=result.skipped_total,
            fingerprint=fingerprint(definition),
            sources=download.sources,
        )
        self.store.commit(definition.name, state, text, raw=download.raw_bodies())
        new_names = sorted(
            line[1:] for line in new_entries - old_entries if line[0] in "+=" and definition.role == "block"
        )
        return FeedOutcome(
            definition.name,
            state.status,
            added=len(new_entries - old_entries),
            removed=len(old_entries - new_entries),
            total=len(result.data),
            rejected=result.rejected,
            skipped=result.skipped_total,
            issues=result.issues,
            new_names=new_names,
        )


def _parse_stored(text: str | None) -> EntrySets | None:
    """The last good data; None when there is none or it is damaged (then the feed is fetched in full)."""
    if text is None:
        return None
    try:
        return parse_data(text.splitlines(), source="last good data")
    except ConfigError:
        return None


def review_queue(outcomes: Iterable[FeedOutcome], catalog: Catalog | None) -> dict[str, list[str]]:
    """New block names per feed that no catalogue vendor's domain entry covers."""
    if catalog is None:
        return {}
    suffixes: set[str] = set()
    exact: set[str] = set()
    for vendor in catalog.vendors.values():
        for entry in vendor.domains:
            (exact if entry.match == "exact" else suffixes).add(entry.name)

    def covered(name: str) -> bool:
        if name in exact or name in suffixes:
            return True
        start = name.find(".")
        while start != -1:
            if name[start + 1 :] in suffixes:
                return True
            start = name.find(".", start + 1)
        return False

    queue = {}
    for outcome in outcomes:
        names = [name for name in outcome.new_names if not covered(name)]
        if names:
            queue[outcome.name] = names
    return queue


async def update_feeds(
    definitions: Iterable[FeedDefinition],
    data_dir: Path,
    *,
    catalog: Catalog | None = None,
    force: bool = False,
    dry_run: bool = False,
    fetch_options: FetchOptions | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    progress: Progress | None = None,
) -> UpdateReport:
    """Update every enabled feed of ``definitions`` in ``data_dir``; see the module docstring."""
    with DataStore(data_dir, dry_run=dry_run) as store:
        store.collect()
        async with Fetcher(fetch_options, transport) as fetcher:
            outcomes = await Updater(store, fetcher, force=force, progress=progress).run(definitions)
    return UpdateReport(outcomes, dry_run=dry_run, review=review_queue(outcomes, catalog))


def run_update(
    definitions: Iterable[FeedDefinition],
    data_dir: Path,
    *,
    catalog: Catalog | None = None,
    force: bool = False,
    dry_run: bool = False,
    fetch_options: FetchOptions | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    progress_stream: TextIO | None = None,
) -> UpdateReport:
    """Synchronous entry point (the CLI's): runs :func:`update_feeds` in a fresh event loop."""
    from blockdns.feeds.progress import progress_for

    progress = progress_for(progress_stream if progress_stream is not None else sys.stderr)
    return asyncio.run(
        update_feeds(
            definitions,
            data_dir,
            catalog=catalog,
            force=force,
            dry_run=dry_run,
            fetch_options=fetch_options,
            transport=transport,
            progress=progress,
        )
    )
