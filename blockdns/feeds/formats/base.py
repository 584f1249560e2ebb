"""What every parser shares: the entry collector, rejected-line issues, and the error budget.

A parser reads a body line by line and tells a :class:`Collector` what each line means:

* an entry (block or allow, exact or suffix, or a network), whose name the collector normalises;
* ``skip(reason)``: valid syntax of the format that DNS cannot express (a cosmetic adblock rule, a v2fly
  ``regexp:``), counted per reason;
* ``reject(where, reason, text)``: a line the parser cannot accept (a broken name, a malformed rule). Rejected
  lines count against the feed's error budget (``FeedDefinition.max_rejected``, a share of the lines that
  held something); past it the body is not the declared format and :meth:`Collector.result` raises
  :class:`FeedFormatError`.

Comments and blank lines are neither.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from blockdns.entries import EntrySets, Network
from blockdns.errors import FeedFormatError, InvalidName
from blockdns.feeds.compact import compact
from blockdns.names import normalise

MAX_KEPT_ISSUES = 200  # issues kept for the report; the rest are only counted


@dataclass(frozen=True, slots=True)
class Issue:
    """A rejected line: ``feed:where: reason: 'text'`` (``where`` is a line number or a JSON path)."""

    feed: str
    where: str
    reason: str
    text: str

    def __str__(self) -> str:
        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return f"{self.feed}:{self.where}: {self.reason}: {shown!r}"


@dataclass(slots=True)
class ParseResult:
    """A parsed, normalised and compacted feed body."""

    data: EntrySets
    considered: int  # lines (or JSON items) that held something other than a comment
    rejected: int
    skipped: Counter[str] = field(default_factory=Counter)
    issues: list[Issue] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """What a parser needs from the feed definition."""

    feed: str
    format: str
    max_rejected: float = 0.1
    suffix: bool = False  # "domains" feeds: entries cover subdomains (match = "suffix")
    guard: bool = False  # role = "guard": no compaction; partial wildcards protect their parent domain


def split_lines(text: str) -> list[str]:
    """Lines as editors number them: split on LF only, a trailing CR removed."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def strip_comment(line: str, marker: str = "#") -> str:
    index = line.find(marker)
    return (line if index == -1 else line[:index]).strip()


_ADDRESS_SHAPE = re.compile(r"[0-9.]+|.*:.*")


def is_address(text: str) -> bool:
    """True for an IPv4 or IPv6 literal (checked cheaply first: most lines hold names)."""
    if not _ADDRESS_SHAPE.fullmatch(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class Collector:
    """Collects entries and issues for one feed body."""

    def __init__(self, options: ParseOptions) -> None:
        self.options = options
        self.data = EntrySets()
        self.considered = 0
        self.rejected = 0
        self.skipped: Counter[str] = Counter()
        self.issues: list[Issue] = []

    # -- what a line was

    def line(self) -> None:
        """Count a line that holds something (an entry, a skipped rule or a rejected line)."""
        self.considered += 1

    def reject(self, where: int | str, reason: str, text: str) -> None:
        self.rejected += 1
        if len(self.issues) < MAX_KEPT_ISSUES:
            self.issues.append(Issue(self.options.feed, str(where), reason, text.strip()))

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    # -- entries

    def name(self, raw: str, where: int | str, text: str) -> str | None:
        """``raw`` normalised, or None after rejecting the line (or skipping an address literal)."""
        if is_address(raw.strip().strip("[]")):
            self.skip("address literal instead of a name")
            return None
        try:
            return normalise(raw)
        except InvalidName as err:
            self.reject(where, str(err), text)
            return None

    def domain(self, raw: str, *, suffix: bool, allow: bool, where: int | str, text: str) -> bool:
        """Add one name entry; a leading ``*.`` makes it a suffix entry. False when the name was refused."""
        raw = raw.strip()
        if raw.startswith("*."):
            suffix = True
        name = self.name(raw, where, text)
        if name is None:
            return False
        data = self.data
        if allow:
            (data.allow_suffix if suffix else data.allow_exact).add(name)
        else:
            (data.block_suffix if suffix else data.block_exact).add(name)
        return True

    def network(self, network: Network) -> None:
        self.data.networks.append(network)

    # -- the end

    def result(self) -> ParseResult:
        """Check the error budget, then compact the entries. Raises FeedFormatError past the budget."""
        options = self.options
        if self.rejected and self.rejected > options.max_rejected * max(self.considered, 1):
            first = self.issues[0] if self.issues else None
            line = int(first.where) if first and first.where.isdigit() else None
            share = f"{self.rejected} of {self.considered} lines rejected"
            example = f"; first: {first.reason}: {first.text[:60]!r}" if first else ""
            raise FeedFormatError(
                f"not {options.format} format ({share}, budget {options.max_rejected:.0%}){example}",
                feed=options.feed,
                line=line,
            )
        # A guard feed's names each protect themselves and their parents from wholesale blocking, so a name
        # below another one is not redundant there: only duplicates go (the sets already dropped them).
        data = self.data if options.guard else compact(self.data)
        return ParseResult(
            data=data,
            considered=self.considered,
            rejected=self.rejected,
            skipped=self.skipped,
            issues=self.issues,
        )
