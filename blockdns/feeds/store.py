"""The feed data directory: content-addressed data files committed through the manifest.

Layout of ``data_dir``::

    manifest.json                 which data file is current for each feed, and how it was fetched
    <feed>.<sha256[:16]>.list     one version of a feed's data (the stored line format of feeds.model)
    raw/<sha256>.txt              bodies of multi-file feeds (v2fly includes), for re-parsing after a 304
    .update.lock                  held while an update runs

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

Readers (the server, via :func:`blockdns.feeds.model.data_path`) resolve a feed's file through the manifest.
Runs exclude each other with an ``flock`` on ``.update.lock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
from pathlib import Path
from types import TracebackType

from blockdns.errors import ConfigError, FeedError
from blockdns.feeds.manifest import FeedState, Manifest, read_manifest, write_manifest
from blockdns.feeds.model import plain_data_path, write_atomic

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


class DataStore:
    """One update run's view of ``data_dir``. ``dry_run`` reads but never writes."""

    def __init__(self, data_dir: Path, *, dry_run: bool = False) -> None:
        self.data_dir = data_dir
        self.dry_run = dry_run
        self.manifest = self._load_manifest()
        self._lock_fd: int | None = None

    def _load_manifest(self) -> Manifest:
        try:
            return read_manifest(self.data_dir)
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
        """The current data file's text when it exists and matches the manifest's sha256, else None."""
        state = self.manifest.feeds.get(feed)
        if state is None or not state.file:
            return self._plain_text(feed)
        try:
            text = (self.data_dir / Path(state.file).name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return text if sha256_text(text) == state.sha256 else None

    def _plain_text(self, feed: str) -> str | None:
        """Data the manifest does not know (written by hand or by an older version): for comparison only."""
        try:
            return plain_data_path(self.data_dir, feed).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

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
