"""``blockdns lists lint``: every problem in the curated catalogue, not just the first.

:func:`blockdns.catalog.load_catalog` stops at the first bad file because a server must not run on half a
catalogue. Lint reads every vendor file and the guard list on its own terms, keeps going past broken files,
and reports one :class:`Finding` per problem:

- the file itself: TOML syntax, schema (unknown keys, missing keys, bad names, unknown category or country
  code), a file name that is not a vendor id, ``reviewed`` in the future;
- each block entry: missing or unusable evidence, listed twice in its vendor, lying below another entry of
  the same vendor (redundant), a public suffix, a guarded name or a parent of one (the global guard list or
  any vendor's ``[[shared]]``), the same name or a name below it listed by another vendor.

Errors make the catalogue wrong; warnings (duplicates and redundant entries inside one vendor) only make it
untidy. ``lists lint`` exits 1 on either.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList
from pydantic import BaseModel, Field, ValidationError

from blockdns.catalog import (
    VENDOR_ID,
    DomainEntry,
    GuardEntry,
    GuardFile,
    SharedEntry,
    VendorFile,
    default_guard_file,
    read_toml,
    schema_problems,
)
from blockdns.errors import CatalogError
from blockdns.names import suffixes

Severity = Literal["error", "warning"]
ModelT = TypeVar("ModelT", bound=BaseModel)

# "owner/repo path", e.g. "v2fly/domain-list-community data/deepseek"; anything may follow the path.
_REPO_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+\s+\S+.*")

# The path of a site's front page: empty, "/", a locale root ("/en", "/zh-CN/") or an index file.
_LANDING_PATH = re.compile(r"/?(?:[a-z]{2}(?:[-_][a-z]{2,4})?/?)?(?:index\.html?)?", re.IGNORECASE)

# List files that are not about AI services: a name in one of them says nothing about AI, so such a list is
# never the only evidence for a name. Each maps to what the list is about.
GENERAL_LISTS = {
    ("v2fly/domain-list-community", f"data/{name}"): f"every {name} host"
    for name in (
        "alibaba", "baidu", "bing", "bytedance", "facebook", "github", "google", "meta", "microsoft",
        "tencent", "envato", "liveperson",
    )
}  # fmt: skip
# Lists of ways around a resolver: evidence for the bypass file only.
BYPASS_LISTS = {("hagezi/dns-blocklists", "domains/doh-vpn-proxy-bypass.txt")}


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    file: Path
    key: str  # dotted key such as "domains.2.name", or "line 7" for a TOML syntax error
    message: str
    severity: Severity = "error"
    line: int | None = None

    def render(self, file: str | None = None) -> str:
        """``file:key: message``; warnings say so after the key."""
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{file or self.file}:{self.key}: {prefix}{self.message}"

    def __str__(self) -> str:
        return self.render()


@dataclass(slots=True)
class _Entry:
    """A block entry that passed the schema, with where it came from."""

    vendor: str
    file: Path
    index: int
    entry: DomainEntry

    @property
    def key(self) -> str:
        return f"domains.{self.index}.name"

    @property
    def covers_below(self) -> bool:
        return self.entry.match == "suffix"


@dataclass(slots=True)
class _Report:
    findings: list[Finding] = field(default_factory=list)

    def add(self, file: Path, key: str, message: str, severity: Severity = "error") -> None:
        self.findings.append(Finding(file, key, message, severity))

    def catalog_error(self, err: CatalogError, file: Path) -> None:
        key = err.key or "(file)"
        line = int(key.removeprefix("line ")) if key.startswith("line ") else None
        message = str(err).removeprefix(f"{err.file}: ").removeprefix(f"{err.key}: ")
        self.findings.append(Finding(file, key, message, "error", line))


def lint(catalog_dir: Path, guard_file: Path | None = None, *, today: dt.date | None = None) -> list[Finding]:
    """Every problem in the vendor files of ``catalog_dir`` and the guard list, in file order.

    ``guard_file`` defaults to ``guard.toml`` beside the catalogue directory (absent: no global guard).
    Raises :class:`CatalogError` only when the directory itself is missing.
    """
    if not catalog_dir.is_dir():
        raise CatalogError("catalogue directory not found", file=str(catalog_dir))
    today = today or dt.date.today()
    report = _Report()
    guard_path = guard_file or default_guard_file(catalog_dir)
    guarded: dict[str, str] = {}
    if guard_file is not None or guard_path.exists():
        guarded = _lint_guard_file(guard_path, report)
    entries: list[_Entry] = []
    for path in sorted(catalog_dir.glob("*.toml")):
        vendor_entries, shared = _lint_vendor_file(path, report, today)
        entries += vendor_entries
        for entry in shared:
            guarded.setdefault(entry.name, f"[[shared]] of vendor {path.stem}: {entry.note}")
    _check_guarded(entries, guarded, report)
    _check_across_vendors(entries, report)
    # A stable sort: within one key, problems keep the order in which the checks found them.
    return sorted(report.findings, key=lambda finding: (str(finding.file), _key_order(finding.key)))


_TABLE_RANK = {"domains": 2, "guard": 2, "shared": 3}


def _key_order(key: str) -> tuple[int, int]:
    """File-level problems first, then top-level keys, then the entry tables in document order."""
    if key.startswith(("line ", "(")):
        return (0, 0)
    table, _, rest = key.partition(".")
    index = rest.split(".", 1)[0]
    return (_TABLE_RANK.get(table, 1), int(index) if index.isdigit() else -1)


# ------------------------------------------------------------------------------------------ guard file


def _lint_guard_file(path: Path, report: _Report) -> dict[str, str]:
    raw = _read(path, report)
    if raw is None:
        return {}
    _validate(GuardFile, {key: value for key, value in raw.items() if key != "guard"}, path, report)
    guarded: dict[str, str] = {}
    for index, item in _items(raw, "guard", path, report):
        entry = _validate(GuardEntry, item, path, report, prefix=f"guard.{index}")
        if entry is None:
            continue
        if entry.name in guarded:
            report.add(path, f"guard.{index}.name", f"{entry.name!r} is listed twice", "warning")
        guarded.setdefault(entry.name, f"guard list: {entry.note}")
    return guarded


# ----------------------------------------------------------------------------------------- vendor file


def _lint_vendor_file(path: Path, report: _Report, today: dt.date) -> tuple[list[_Entry], list[SharedEntry]]:
    if not VENDOR_ID.fullmatch(path.stem):
        report.add(path, "(file name)", "a vendor id (the file's stem) is lowercase letters, digits and '-'")
    raw = _read(path, report)
    if raw is None:
        return [], []
    vendor = path.stem
    header = {key: value for key, value in raw.items() if key not in ("domains", "shared")}
    _validate(_VendorHeader, header, path, report)
    _check_reviewed(raw.get("reviewed"), path, today, report)
    if not raw.get("domains"):
        report.add(path, "domains", "a vendor file needs at least one [[domains]] entry")
    entries = []
    for index, item in _items(raw, "domains", path, report):
        entry = _validate(DomainEntry, item, path, report, prefix=f"domains.{index}")
        if entry is not None:
            _check_evidence(entry.evidence, path, f"domains.{index}.evidence", report)
            _check_list_scope(
                entry.evidence, raw.get("categories"), path, f"domains.{index}.evidence", report
            )
            entries.append(_Entry(vendor, path, index, entry))
    shared = []
    for index, item in _items(raw, "shared", path, report):
        shared_entry = _validate(SharedEntry, item, path, report, prefix=f"shared.{index}")
        if shared_entry is not None:
            shared.append(shared_entry)
    _check_within_vendor(entries, report)
    _check_public_suffixes(entries, report)
    return entries, shared


class _VendorHeader(VendorFile):
    """The vendor file's top-level keys; the entry tables are validated one by one."""

    domains: list[DomainEntry] = Field(default_factory=list)


def _check_reviewed(reviewed: object, path: Path, today: dt.date, report: _Report) -> None:
    # Checked on the raw value so that a file with other schema errors still gets this finding.
    if type(reviewed) is dt.date and reviewed > today:
        report.add(path, "reviewed", f"reviewed {reviewed} is in the future (today is {today})")


def _check_evidence(evidence: str, path: Path, key: str, report: _Report) -> None:
    text = evidence.strip()
    if not text:
        report.add(
            path, key, "evidence is blank: cite a vendor document URL or an 'owner/repo path' reference"
        )
    elif not (_is_web_url(text) or _REPO_REFERENCE.fullmatch(text)):
        report.add(
            path,
            key,
            f"evidence {text!r} is neither an http(s) URL nor an 'owner/repo path' reference "
            "such as 'v2fly/domain-list-community data/openai'",
        )
    elif _is_landing_page(text):
        report.add(
            path,
            key,
            f"evidence {text!r} is only a landing page: cite the page that shows the name (API reference, "
            "network/firewall allow-list, help article) or an 'owner/repo path' reference",
        )


def _check_list_scope(evidence: str, categories: object, path: Path, key: str, report: _Report) -> None:
    parts = evidence.split()
    if len(parts) < 2 or _is_web_url(parts[0]):
        return
    source = (parts[0], parts[1])
    about = GENERAL_LISTS.get(source)
    if (
        about is None
        and source in BYPASS_LISTS
        and not (isinstance(categories, list) and "bypass" in categories)
    ):
        about = "ways around a resolver"
    if about is not None:
        report.add(
            path,
            key,
            f"'{parts[0]} {parts[1]}' lists {about}, not AI services: it cannot be a name's only evidence; "
            "cite the vendor's documentation or an AI-specific list",
        )


def _is_web_url(text: str) -> bool:
    if any(char.isspace() for char in text):
        return False
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_landing_page(url: str) -> bool:
    """A front page proves only that the site exists, not that the name belongs to an AI service."""
    parts = urlsplit(url)
    return _is_web_url(url) and not parts.query and bool(_LANDING_PATH.fullmatch(parts.path))


def _check_within_vendor(entries: list[_Entry], report: _Report) -> None:
    first_by_name: dict[str, _Entry] = {}
    for item in entries:
        first = first_by_name.setdefault(item.entry.name, item)
        if first is not item:
            report.add(
                item.file, item.key, f"{item.entry.name!r} is listed twice (also {first.key})", "warning"
            )
    suffix_entries: dict[str, _Entry] = {}
    for item in entries:
        if item.covers_below:
            suffix_entries.setdefault(item.entry.name, item)
    for item in entries:
        for parent in list(suffixes(item.entry.name))[1:]:
            covering = suffix_entries.get(parent)
            if covering is not None:
                report.add(
                    item.file,
                    item.key,
                    f"{item.entry.name!r} is redundant: {covering.key} {parent!r} already covers it",
                    "warning",
                )
                break


@cache
def _public_suffix_list(only_icann: bool) -> PublicSuffixList:
    return PublicSuffixList(only_icann=only_icann)  # the copy shipped inside the package: no network access


def _check_public_suffixes(entries: list[_Entry], report: _Report) -> None:
    """An ICANN suffix (com, co.uk) is never an entry. A private-section suffix (a company's user-content
    domain such as oaiusercontent.com or vercel.app) is one only with ``public_suffix = true``."""
    every, icann = _public_suffix_list(False), _public_suffix_list(True)
    for item in entries:
        name, acknowledged = item.entry.name, item.entry.public_suffix
        if icann.is_public(name):
            message = (
                f"{name!r} is a public suffix: blocking it would block every site registered under it; "
                "list the vendor's own names instead"
            )
        elif every.is_public(name) and not acknowledged:
            message = (
                f"{name!r} is a public suffix (private section of the Public Suffix List): every name below "
                "it belongs to a different customer; if all of them are this vendor's user content, say "
                "public_suffix = true"
            )
        elif acknowledged and not every.is_public(name):
            report.add(item.file, f"domains.{item.index}.public_suffix", f"{name!r} is not a public suffix")
            continue
        else:
            continue
        report.add(item.file, item.key, message)


# ------------------------------------------------------------------------------------ across the files


def _check_guarded(entries: Iterable[_Entry], guarded: dict[str, str], report: _Report) -> None:
    """Mirror of the policy compiler's rule: a suffix entry may not equal or cover a guarded name."""
    covered_guard: dict[str, str] = {}
    for name in guarded:
        for parent in suffixes(name):
            covered_guard.setdefault(parent, name)
    for item in entries:
        name = item.entry.name
        if name in guarded:
            message = f"{name!r} is guarded ({guarded[name]}); the policy drops it"
        elif item.covers_below and name in covered_guard:
            inner = covered_guard[name]
            message = f"{name!r} covers the guarded name {inner!r} ({guarded[inner]}); the policy drops it"
        else:
            continue
        report.add(item.file, item.key, message + ": list the vendor's own hosts below it instead")


def _check_across_vendors(entries: list[_Entry], report: _Report) -> None:
    by_name: dict[str, list[_Entry]] = {}
    for item in entries:
        by_name.setdefault(item.entry.name, []).append(item)
    for item in entries:
        others = [other for other in by_name[item.entry.name] if other.vendor != item.vendor]
        if others:
            owners = ", ".join(sorted({other.vendor for other in others}))
            report.add(item.file, item.key, f"{item.entry.name!r} is also listed by vendor {owners}")
            continue
        for parent in list(suffixes(item.entry.name))[1:]:
            covering = [
                other
                for other in by_name.get(parent, ())
                if other.vendor != item.vendor and other.covers_below
            ]
            if covering:
                owner = covering[0]
                report.add(
                    item.file,
                    item.key,
                    f"{item.entry.name!r} lies below {parent!r}, listed by vendor {owner.vendor}; "
                    "a name belongs to one vendor",
                )
                break


# --------------------------------------------------------------------------------------------- helpers


def _read(path: Path, report: _Report) -> dict[str, Any] | None:
    try:
        return read_toml(path)
    except CatalogError as err:
        report.catalog_error(err, path)
        return None


def _items(raw: dict[str, Any], table: str, path: Path, report: _Report) -> list[tuple[int, Any]]:
    value = raw.get(table, [])
    if not isinstance(value, list):
        report.add(path, table, f"write each entry as a [[{table}]] table")
        return []
    return list(enumerate(value))


def _validate(
    model: type[ModelT], raw: Any, path: Path, report: _Report, *, prefix: str = ""
) -> ModelT | None:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        for key, message in schema_problems(err):
            full_key = f"{prefix}.{key}" if prefix and key != "(top level)" else (prefix or key)
            report.add(path, full_key, message)
        return None
