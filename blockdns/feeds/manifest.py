"""``data_dir/manifest.json``: what ``lists update`` last did for each feed, and which data file is current.

::

    {"version": 1,
     "feeds": {NAME: {"url", "etag", "last_modified", "sha256", "fetched_at", "entries", "rejected", "status",
                      "file", "skipped", "checked_at", "error", "fingerprint", "sources"}}}

``status`` is ``ok`` (new data written), ``unchanged`` (the source had nothing new), ``failed`` (the download
failed) or ``refused`` (the body was refused). Whatever the status, ``file``, ``sha256``, ``entries``,
``rejected``, ``etag`` and ``last_modified`` describe the last *good* data, which is what the server uses;
``error`` says why the last attempt did not replace it. ``sources`` records the conditional-request validators
and body hashes of every URL the feed was built from (the feed's own URL and any v2fly ``include:`` files).

The manifest never imports the fetch path. It only reads and writes the file; which data file is current
for a feed is resolved against one reading of it by :class:`blockdns.feeds.store.StoredFeeds`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blockdns.errors import ConfigError
from blockdns.feeds.model import write_atomic

MANIFEST_NAME = "manifest.json"
Status = Literal["ok", "unchanged", "failed", "refused"]


class SourceState(BaseModel):
    """One fetched URL: its validators for the next conditional request and the hash of the body it sent."""

    model_config = ConfigDict(extra="ignore")

    etag: str | None = None
    last_modified: str | None = None
    body_sha256: str | None = None


class FeedState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None  # of the current data file
    fetched_at: str | None = None  # when the current data was last fetched or confirmed unchanged (UTC)
    entries: int = 0
    rejected: int = 0
    status: Status = "ok"
    file: str | None = None  # the current data file, a name inside data_dir
    skipped: int = 0
    checked_at: str | None = None  # when the feed was last tried, whatever the outcome
    error: str | None = None
    fingerprint: str | None = None  # what the data depends on besides the bodies (url, format, match)
    sources: dict[str, SourceState] = Field(default_factory=dict)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int = 1
    feeds: dict[str, FeedState] = Field(default_factory=dict)

    def to_text(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"


def manifest_path(data_dir: Path) -> Path:
    return data_dir / MANIFEST_NAME


def read_manifest(data_dir: Path) -> Manifest:
    """The manifest of ``data_dir``; an empty one when there is none. A damaged file raises ConfigError."""
    path = manifest_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Manifest()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read: {err}", file=str(path)) from None
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"damaged manifest: {where}: {first['msg']}", file=str(path)) from None


def write_manifest(data_dir: Path, manifest: Manifest) -> None:
    write_atomic(manifest_path(data_dir), manifest.to_text())
