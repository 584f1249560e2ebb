"""The feed data directory: content-addressed data files committed through the manifest.

Layout of ``data_dir``::

    manifest.json                 which data file is current for each feed, and how it was fetched
    <feed>.<sha256[:16]>.list     one version of a feed's data (the stored line format of feeds.model)
    raw/<sha256>.txt              bodies of multi-file feeds (v2fly includes), for re-parsing after a 304
    .update.lock                  held while an update runs
    catalog.cache                 not feed data: the compiled catalogue (:mod:`blockdns.catalog_cache`)

Why a kill at any moment leaves every feed fully old or fully new, with a manifest that matches its data:

1. A new version of a feed's data is written under a name derived from its own SHA-256, through
   :func:`write_atomic` (temporary file, fsync, rename, fsync of the directory). Until the manifest names it,
   nothing reads it; an old version is never overwritten, because a different content has a different name.
2. The feed is then committed by rewriting ``manifest.json`` (again temporary file, fsync, rename): its entry
   now names the new file and records that file's ``sha256``. The rename is the single commit point. Killed
   before it, the manifest still names the old file, which is still there; killed after it, the manifest names
   the new one, which is already complete on disk.
3. Files the manifest no longer names are deleted at the *start* of the next run (:meth:`DataStore.collect`),
   never during the run that replaced them, so a server that read the previous manifest a moment earlier can
   still open the file it names.

This module is also the only reader. :class:`StoredFeeds` reads ``manifest.json`` once and resolves every feed
against that one reading (:meth:`StoredFeeds.data_file`: the file the manifest names, else the plain
``<feed>.list`` written by hand or by an older version), so one load sees every feed as of the same commit.
:func:`read_feed_sources` hands each enabled feed's entries to the policy compiler, which opens no files; an
update run's :class:`DataStore` resolves the last good data the same way. Runs exclude each other with an
``flock`` on ``.update.lock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from blockdns.entries import EntrySets
from blockdns.errors import ConfigError, FeedError
from blockdns.feeds.manifest import FeedState, Manifest, read_manifest, write_manifest
from blockdns.feeds.model import FeedDefinition, read_data, write_atomic
from blockdns.policy import FeedSource

log = logging.getLogger("blockdns.feeds")

LOCK_NAME = ".update.lock"
RAW_DIR = "raw"
_VERSIONED = re.compile(r".+\.[0-9a-f]{16}\.list")
_RAW = re.compile(r"[0-9a-f]{64}\.txt")
_TEMPORARY = re.compile(r"\..+\.tmp")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def versioned_name(feed: str, sha256: str) -> str:
    return f"{feed}.{sha256[:16]}.list"


class StoredFeeds:
    """``data_dir`` as one reading of its manifest left it: which file holds each feed's current data."""

    def __init__(self, data_dir: Path, manifest: Manifest) -> None:
        self.data_dir = data_dir
        self.manifest = manifest

    @classmethod
    def read(cls, data_dir: Path) -> StoredFeeds:
        """Read ``data_dir/manifest.json`` (none: every feed is plain); a damaged one raises ConfigError."""
        return cls(data_dir, read_manifest(data_dir))

    def data_file(self, feed: str) -> Path:
        """The file holding ``feed``'s current data: the one the manifest names, else ``<feed>.list``.

        The only place a feed's data file is resolved. ``lists update`` names each version of the data after
        its content and commits it by rewriting the manifest, so the manifest alone says which file is
        current; without an entry (data written by hand or by an older version) the plain name is used.
        """
        state = self.manifest.feeds.get(feed)
        if state is None or not state.file:
            return self.data_dir / f"{feed}.list"
        return self.data_dir / Path(state.file).name

    def entries(self, feed: str) -> EntrySets:
        """``feed``'s current entries. A missing file raises OSError, a corrupt line ConfigError."""
        return read_data(self.data_file(feed))

    def sources(self, definitions: Sequence[FeedDefinition]) -> list[FeedSource]:
        """Every enabled feed that has data, and its definition's tags; a feed not fetched yet is left out."""
        sources = []
        for definition in definitions:
            path = self.data_file(definition.name)
            if not definition.enabled or not path.exists():
                continue
            sources.append(
                FeedSource(
                    name=definition.name,
                    vendor=definition.vendor,
                    category=definition.category,
                    role=definition.role,
                    entries=read_data(path),
                )
            )
        return sources


def read_feed_sources(definitions: Sequence[FeedDefinition], data_dir: Path) -> list[FeedSource]:
    """What the policy compiler needs from the store: each enabled, fetched feed's tags and entries.

    The manifest is read once for all feeds, and only when some feed is defined: a configuration without
    feeds never looks at ``data_dir``. A damaged manifest or data file raises ConfigError.
    """
    if not definitions:
        return []
    return StoredFeeds.read(data_dir).sources(definitions)


class DataStore(StoredFeeds):
    """One update run's view of ``data_dir``. ``dry_run`` reads but never writes.

    A damaged manifest is not fatal here, unlike for a reader: the run starts from an empty one and fetches
    every feed in full, which writes a good manifest again.
    """

    def __init__(self, data_dir: Path, *, dry_run: bool = False) -> None:
        super().__init__(data_dir, self._load_manifest(data_dir))
        self.dry_run = dry_run
        self._lock_fd: int | None = None

    @staticmethod
    def _load_manifest(data_dir: Path) -> Manifest:
        try:
            return read_manifest(data_dir)
        except ConfigError as err:
            log.warning("%s; starting from an empty manifest (every feed is fetched in full)", err)
            return Manifest()

    # -- run exclusion

    def __enter__(self) -> DataStore:
        if self.dry_run:
            return self
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot write: {err.strerror}", file=str(self.data_dir)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FeedError(f"{self.data_dir}: another lists update is running") from None
        self._lock_fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # -- reading the last good data

    def current_text(self, feed: str) -> str | None:
        """The current data file's text when it exists and matches the manifest's sha256, else None.

        Data the manifest does not know (the plain ``<feed>.list``, written by hand or by an older version)
        has no sha256 to check: it is returned for comparison only.
        """
        try:
            text = self.data_file(feed).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        state = self.manifest.feeds.get(feed)
        if state is None or not state.file:
            return text
        return text if sha256_text(text) == state.sha256 else None

    def raw_text(self, body_sha256: str | None) -> str | None:
        if not body_sha256 or not _RAW.fullmatch(f"{body_sha256}.txt"):
            return None
        try:
            text = (self.data_dir / RAW_DIR / f"{body_sha256}.txt").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return text if sha256_text(text) == body_sha256 else None

    # -- writing

    def commit(
        self, feed: str, state: FeedState, data_text: str | None = None, raw: dict[str, str] | None = None
    ) -> None:
        """Write the feed's new data file (if any) and raw bodies, then its manifest entry (the commit)."""
        if self.dry_run:
            return
        for body_sha, text in (raw or {}).items():
            path = self.data_dir / RAW_DIR / f"{body_sha}.txt"
            if not path.exists():
                write_atomic(path, text)
        if data_text is not None:
            digest = sha256_text(data_text)
            state = state.model_copy(update={"file": versioned_name(feed, digest), "sha256": digest})
            path = self.data_dir / state.file  # type: ignore[operator]
            if not (path.exists() and sha256_text(path.read_text(encoding="utf-8")) == digest):
                write_atomic(path, data_text)
        self.manifest.feeds[feed] = state
        write_manifest(self.data_dir, self.manifest)

    def collect(self) -> list[Path]:
        """Delete data files and raw bodies the manifest does not name, and leftover temporary files."""
        if self.dry_run or not self.data_dir.is_dir():
            return []
        states = self.manifest.feeds.values()
        named = {Path(state.file).name for state in states if state.file}
        bodies = {f"{s.body_sha256}.txt" for state in states for s in state.sources.values() if s.body_sha256}
        doomed = [
            path
            for path in self.data_dir.iterdir()
            if (_VERSIONED.fullmatch(path.name) and path.name not in named) or _TEMPORARY.fullmatch(path.name)
        ]
        raw_dir = self.data_dir / RAW_DIR
        if raw_dir.is_dir():
            doomed += [p for p in raw_dir.iterdir() if _RAW.fullmatch(p.name) and p.name not in bodies]
            doomed += [p for p in raw_dir.iterdir() if _TEMPORARY.fullmatch(p.name)]
        removed = []
        for path in doomed:
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                log.warning("cannot remove %s: %s", path, err.strerror)
            else:
                removed.append(path)
        return removed
