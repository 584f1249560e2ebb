"""Getting one feed's text: its URL, and for v2fly feeds every ``include:`` file, each conditionally.

A :class:`Download` holds the texts and the new per-URL validators, and says whether anything changed since
the last good run. A URL that answers 304 is re-read from the raw body kept for it (v2fly), or, for a feed of
one URL, makes the whole feed unchanged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from blockdns.errors import FeedFormatError
from blockdns.feeds.checks import body_text
from blockdns.feeds.fetch import Fetcher, Validators
from blockdns.feeds.formats import ParseResult, options_for, parse
from blockdns.feeds.formats.v2fly import MAX_FILES, ListTree
from blockdns.feeds.manifest import FeedState, SourceState
from blockdns.feeds.model import FeedDefinition
from blockdns.feeds.store import DataStore, sha256_text


@dataclass(slots=True)
class Download:
    sources: dict[str, SourceState] = field(default_factory=dict)  # url -> validators and body hash
    texts: dict[str, str] = field(default_factory=dict)  # url -> text (only bodies that were read)
    changed: bool = False  # some body differs from the last good run's (or there was none)

    def raw_bodies(self) -> dict[str, str]:
        """Bodies to keep for re-parsing: body sha256 -> text."""
        return {self.sources[url].body_sha256 or "": text for url, text in self.texts.items()}


class FeedDownloader:
    """Downloads one feed. ``previous`` is the last good manifest entry when conditional requests are safe."""

    def __init__(
        self, fetcher: Fetcher, store: DataStore, definition: FeedDefinition, previous: FeedState | None
    ):
        self.fetcher = fetcher
        self.store = store
        self.definition = definition
        self.previous = previous
        self.download = Download()

    async def _text(self, url: str, *, keep_raw: bool) -> str | None:
        """The text at ``url``; None when it is unchanged and there is no need (or way) to read it again."""
        before = self.previous.sources.get(url) if self.previous else None
        cached = self.store.raw_text(before.body_sha256) if before and keep_raw else None
        usable = before is not None and (cached is not None or not keep_raw)
        validators = Validators(before.etag, before.last_modified) if usable and before else None
        fetched = await self.fetcher.fetch(url, validators)
        if fetched.not_modified and before is not None:
            self.download.sources[url] = SourceState(
                etag=fetched.etag, last_modified=fetched.last_modified, body_sha256=before.body_sha256
            )
            if keep_raw:
                self.download.texts[url] = cached or ""
            return cached
        assert fetched.body is not None
        text = body_text(
            fetched.body, url, content_type=fetched.content_type, max_bytes=self.fetcher.options.max_bytes
        )
        digest = sha256_text(text)
        self.download.sources[url] = SourceState(
            etag=fetched.etag, last_modified=fetched.last_modified, body_sha256=digest
        )
        if before is None or before.body_sha256 != digest:
            self.download.changed = True
        if keep_raw:
            self.download.texts[url] = text
        return text

    async def parse(self) -> ParseResult | None:
        """Download and parse; None when nothing changed since the last good run."""
        if self.definition.format == "v2fly":
            return await self._parse_tree()
        text = await self._text(self.definition.url, keep_raw=False)
        if text is None:
            return None
        if not self.download.changed:
            return None
        return parse(text, self.definition)

    async def _parse_tree(self) -> ParseResult | None:
        url = self.definition.url
        base, _, leaf = url.rpartition("/")
        root = unquote(leaf) or urlsplit(url).path
        tree = ListTree(options_for(self.definition), root)
        tree.add(root, await self._text(url, keep_raw=True) or "")
        pending = tree.missing()
        while pending:
            if len(tree.files) + len(pending) > MAX_FILES:
                raise FeedFormatError(f"includes more than {MAX_FILES} files", feed=self.definition.name)
            texts = await asyncio.gather(*(self._text(f"{base}/{name}", keep_raw=True) for name in pending))
            for name, text in zip(pending, texts, strict=True):
                tree.add(name, text or "")
            pending = tree.missing()
        previous_urls = set(self.previous.sources) if self.previous else set()
        if not self.download.changed and previous_urls == set(self.download.sources):
            return None
        return tree.result()
