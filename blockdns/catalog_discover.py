"""``blockdns lists discover`` and ``lists accept``: the maintainer's weekly look at what the feeds know.

Discovery reads the enabled block feeds' last fetched data and lists, per catalogue vendor, the names the
feeds list and the catalogue does not cover: not at or below a vendor's entry, and not at or below a guarded
name (the guard list and every vendor's ``[[shared]]``; the policy drops those from feeds anyway). A name is
put under the vendor its feed is tagged with (``vendor =``), else under the vendor whose entries share its
registrable domain, else under no vendor. Each candidate carries the evidence to cite: the feed as an
``owner/repo path`` reference when it is a file on raw.githubusercontent.com, else the feed's URL.

Accepting appends one ``[[domains]]`` table to the vendor file and loads the file again, so a name that would
make the file invalid is refused and the file is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from publicsuffixlist import PublicSuffixList

from blockdns.catalog import Catalog, load_vendor
from blockdns.errors import CatalogError
from blockdns.names import suffixes
from blockdns.policy import FeedSource


@dataclass(frozen=True, slots=True, order=True)
class Candidate:
    vendor: str  # "" when no vendor could be told
    name: str
    exact: bool
    feed: str
    evidence: str

    def accept_command(self) -> str:
        """The one line that accepts this name into its vendor's file."""
        vendor = self.vendor or "VENDOR"
        exact = " --exact" if self.exact else ""
        return f"blockdns lists accept {vendor} {self.name} --evidence {_shell_quote(self.evidence)}{exact}"


def feed_evidence(url: str) -> str:
    """``owner/repo path`` for a file on raw.githubusercontent.com (the form lint and the tests check), else
    the URL itself."""
    parts = urlsplit(url)
    if parts.hostname == "raw.githubusercontent.com":
        segments = [unquote(segment) for segment in parts.path.strip("/").split("/")]
        if len(segments) >= 4:  # owner, repo, branch, path...
            return f"{segments[0]}/{segments[1]} {'/'.join(segments[3:])}"
    return url


@cache
def _registrable() -> PublicSuffixList:
    return PublicSuffixList()  # the copy shipped inside the package: no network access


def discover(catalog: Catalog, sources: Iterable[FeedSource], feed_urls: dict[str, str]) -> list[Candidate]:
    """Names the block feeds list that the catalogue neither covers nor guards, sorted by vendor and name."""
    suffix_names: set[str] = set()
    exact_names: set[str] = set()
    owner_by_domain: dict[str, str] = {}
    psl = _registrable()
    for vendor in catalog.vendors.values():
        for entry in vendor.domains:
            (exact_names if entry.match == "exact" else suffix_names).add(entry.name)
            domain = psl.privatesuffix(entry.name)
            if domain is not None:
                owner_by_domain.setdefault(domain, vendor.id)
    guarded = set(catalog.guarded_names())

    def known(name: str) -> bool:
        if name in exact_names:
            return True
        return any(parent in suffix_names or parent in guarded for parent in suffixes(name))

    found: dict[str, Candidate] = {}
    for source in sources:
        if source.role != "block":
            continue
        evidence = feed_evidence(feed_urls.get(source.name, f"feed:{source.name}"))
        entries = source.entries
        for names, exact in ((entries.block_suffix, False), (entries.block_exact, True)):
            for name in names:
                if name in found or known(name):
                    continue
                domain = psl.privatesuffix(name)
                owner = source.vendor or (owner_by_domain.get(domain, "") if domain else "")
                found[name] = Candidate(owner, name, exact, source.name, evidence)
    return sorted(found.values())


def accept(vendor_file: Path, name: str, evidence: str, *, exact: bool = False) -> None:
    """Append ``name`` with ``evidence`` to ``vendor_file``; raises CatalogError (file unchanged) when the
    result would not load."""
    before = vendor_file.read_text(encoding="utf-8")
    table = f'\n[[domains]]\nname = "{_toml_text(name)}"\nevidence = "{_toml_text(evidence)}"\n'
    if exact:
        table += 'match = "exact"\n'
    vendor_file.write_text(before.rstrip("\n") + "\n" + table, encoding="utf-8")
    try:
        load_vendor(vendor_file)
    except CatalogError:
        vendor_file.write_text(before, encoding="utf-8")
        raise


def render(candidates: Sequence[Candidate]) -> list[str]:
    """Per vendor, each name and the command that accepts it."""
    lines: list[str] = []
    current: str | None = None
    for candidate in candidates:
        if candidate.vendor != current:
            current = candidate.vendor
            lines.append(f"{current or '(no vendor: choose one, or create a vendor file)'}:")
        kind = " (exact)" if candidate.exact else ""
        lines.append(f"  {candidate.name}{kind}  from feed {candidate.feed}")
        lines.append(f"    {candidate.accept_command()}")
    return lines


def _toml_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
