"""Feed definitions (``lists/feeds.toml``) and the normalised data a feed leaves in ``data_dir``.

Stored data format, one file per feed in ``data_dir`` (which file is current for a feed is recorded in
``data_dir/manifest.json`` and resolved by :class:`blockdns.feeds.store.StoredFeeds`), one entry per line
(:meth:`blockdns.entries.EntrySets.lines`), written atomically by ``lists update``::

    +name        block name and everything below it
    =name        block exactly name
    @+name       allow name and everything below it
    @=name       allow exactly name
    %cidr        block answers whose address lies in this network (ipranges-json feeds)
    # ...        comment

A guard feed (``role = "guard"``) stores its names as ``+name`` / ``=name``; the role in the definition says
they protect rather than block.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blockdns.catalog import CATEGORIES, shipped_lists_dir
from blockdns.entries import EntrySets
from blockdns.errors import ConfigError
from blockdns.tomlfile import read_toml, schema_problems

FeedFormat = Literal[
    "domains", "hosts", "adblock", "dnsmasq", "rpz", "v2fly", "ipranges-json", "m365-endpoints"
]


class FeedDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    url: str = Field(pattern=r"^(https?|file)://")
    format: FeedFormat
    category: str | None = None
    vendor: str | None = None
    license: str | None = None
    role: Literal["block", "guard"] = "block"
    match: Literal["exact", "suffix"] | None = None  # only for "domains": exact unless "suffix"
    enabled: bool = True
    description: str | None = None
    max_rejected: float = Field(0.1, ge=0, le=1)  # error budget: share of lines that may be rejected

    def model_post_init(self, _context: object) -> None:
        if self.category is not None and self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}; one of {', '.join(CATEGORIES)}")


class FeedsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    feeds: list[FeedDefinition] = []


def default_feeds_file() -> Path:
    return shipped_lists_dir() / "feeds.toml"


def load_definitions(path: Path | None = None) -> list[FeedDefinition]:
    path = path or default_feeds_file()
    if not path.exists():
        return []
    try:
        definitions = FeedsFile.model_validate(read_toml(path)).feeds
    except ValidationError as err:
        key, message = schema_problems(err)[0]
        raise ConfigError(message, file=str(path), key=key) from None
    names = [d.name for d in definitions]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"feed name {name!r} is defined twice", file=str(path), key="feeds")
    return definitions


def read_data(path: Path) -> EntrySets:
    """Read stored feed data. Lines were validated when written; a corrupt line raises ConfigError."""
    with path.open(encoding="utf-8") as handle:
        return parse_data(handle, source=str(path))


def parse_data(lines: Iterable[str], source: str = "<data>") -> EntrySets:
    """Stored feed data from its lines (see the module docstring); a corrupt line raises ConfigError."""
    data = EntrySets()
    targets = {"+": data.block_suffix, "=": data.block_exact}
    allow_targets = {"+": data.allow_suffix, "=": data.allow_exact}
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\n")
        if not line or line[0] == "#":
            continue
        kind = line[0]
        if kind in targets and len(line) > 1:
            targets[kind].add(line[1:])
        elif kind == "@" and len(line) > 2 and line[1] in allow_targets:
            allow_targets[line[1]].add(line[2:])
        elif kind == "%":
            try:
                data.networks.append(ipaddress.ip_network(line[1:], strict=False))
            except ValueError:
                raise ConfigError(f"line {number}: bad network {line[1:]!r}", file=source) from None
        else:
            raise ConfigError(f"line {number}: unknown entry {line[:40]!r}", file=source)
    return data


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``path`` so a reader sees either the old or the new file, never a mix (temp, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = text.encode("utf-8") if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def render_data(data: EntrySets, header: str = "") -> str:
    """The stored text of ``data``: ``# header`` lines, then one entry per line in a stable order."""
    lines = [f"# {line}" for line in header.splitlines()] + data.lines()
    return "\n".join(lines) + "\n"


def write_data(path: Path, data: EntrySets, header: str = "") -> None:
    write_atomic(path, render_data(data, header))
