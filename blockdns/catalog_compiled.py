"""The catalogue as the server keeps it: per vendor, what deciding and explaining need, and its entry names.

A :class:`~blockdns.catalog.Catalog` holds one pydantic object per entry with its evidence and notes; the
``lists`` commands (lint, discover, accept, export) need them. Deciding needs only each entry's name and
whether it is exact, and explaining needs the vendor's name, jurisdiction and categories, so the policy
compiler works on a :class:`CompiledCatalog`: plain strings in tuples, one :class:`VendorInfo` per vendor
that every rule of the vendor shares. An entry's evidence stays in the vendor file (:func:`evidence_for`
reads it when someone asks). :mod:`blockdns.catalog_cache` stores this form so a start with unchanged TOML
files parses none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from blockdns.catalog import OPT_IN_CATEGORIES, Catalog, load_vendor
from blockdns.errors import CatalogError


@dataclass(frozen=True, slots=True)
class VendorInfo:
    """A vendor as a decision names it; shared by every rule compiled from the vendor's entries."""

    id: str
    name: str
    jurisdiction: str
    categories: tuple[str, ...]
    path: Path  # the vendor file, where an entry's evidence is read from when asked

    @property
    def category(self) -> str:
        """The vendor's first (main) category, used in short explanations."""
        return self.categories[0]

    def label(self) -> str:
        """``DeepSeek, CN, chat`` — how an explanation names the vendor."""
        return f"{self.name}, {self.jurisdiction}, {'/'.join(self.categories)}"


@dataclass(frozen=True, slots=True)
class CompiledVendor:
    info: VendorInfo
    suffix: tuple[str, ...]  # entry names covering their subdomains, in file order
    exact: tuple[str, ...]  # entry names with match = "exact", in file order
    shared: tuple[tuple[str, str], ...]  # [[shared]] infrastructure: (name, note)


@dataclass(frozen=True, slots=True)
class CompiledCatalog:
    vendors: dict[str, CompiledVendor]
    guard: dict[str, str]  # name -> why it must never be blocked wholesale
    directory: Path

    def in_all(self) -> list[CompiledVendor]:
        """The vendors ``all`` selects: every vendor outside the opt-in categories."""
        return [v for v in self.vendors.values() if OPT_IN_CATEGORIES.isdisjoint(v.info.categories)]

    def in_category(self, category: str) -> list[CompiledVendor]:
        return [v for v in self.vendors.values() if category in v.info.categories]

    def in_jurisdiction(self, country: str) -> list[CompiledVendor]:
        return [v for v in self.vendors.values() if v.info.jurisdiction == country]

    def guarded_names(self) -> dict[str, str]:
        """The global guard list plus every vendor's ``[[shared]]`` infrastructure."""
        names = dict(self.guard)
        for vendor in self.vendors.values():
            for name, note in vendor.shared:
                names.setdefault(name, f"{vendor.info.id}: {note}")
        return names

    def entry_count(self) -> int:
        return sum(len(v.suffix) + len(v.exact) for v in self.vendors.values())


def compile_catalog(catalog: Catalog) -> CompiledCatalog:
    """The run-time form of a loaded catalogue: names only, no evidence or notes of entries."""
    vendors = {}
    for vendor in catalog.vendors.values():
        info = VendorInfo(vendor.id, vendor.name, vendor.jurisdiction, vendor.categories, vendor.path)
        vendors[vendor.id] = CompiledVendor(
            info=info,
            suffix=tuple(entry.name for entry in vendor.domains if entry.match == "suffix"),
            exact=tuple(entry.name for entry in vendor.domains if entry.match == "exact"),
            shared=tuple((entry.name, entry.note) for entry in vendor.shared),
        )
    return CompiledCatalog(vendors=vendors, guard=dict(catalog.guard), directory=catalog.directory)


def evidence_for(vendor: VendorInfo, name: str, exact: bool) -> str | None:
    """The evidence of ``vendor``'s entry for ``name`` (normalised), read from its vendor file now; None
    when the file no longer has that entry or cannot be read (it changed since the policy was compiled)."""
    try:
        full = load_vendor(vendor.path)
    except CatalogError:
        return None
    match = "exact" if exact else "suffix"
    for entry in full.domains:
        if entry.name == name and entry.match == match:
            return entry.evidence
    return None
