"""The curated catalogue: ``lists/vendors/<id>.toml`` files and the global guard list, as pydantic models.

A :class:`Catalog` is immutable once loaded. It knows nothing about policy; :mod:`blockdns.policy` turns
selectors over it into decisions.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from blockdns.errors import CatalogError, InvalidName
from blockdns.names import normalise

CATEGORIES = ("chat", "api", "coding", "media", "search", "agent", "model-hub", "bypass")
Category = Literal["chat", "api", "coding", "media", "search", "agent", "model-hub", "bypass"]
ModelT = TypeVar("ModelT", bound=BaseModel)
VENDOR_ID = re.compile(r"[a-z0-9][a-z0-9-]*")


def _domain(value: str) -> str:
    try:
        return normalise(value)
    except InvalidName as err:
        raise ValueError(str(err)) from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DomainEntry(_Model):
    name: str
    evidence: str = Field(min_length=1)
    match: Literal["suffix", "exact"] = "suffix"  # a catalogue entry covers its subdomains unless "exact"
    note: str | None = None

    _name = field_validator("name")(classmethod(lambda cls, v: _domain(v)))


class SharedEntry(_Model):
    name: str
    note: str = Field(min_length=1)

    _name = field_validator("name")(classmethod(lambda cls, v: _domain(v)))


class VendorFile(_Model):
    name: str = Field(min_length=1)
    jurisdiction: str = Field(pattern=r"^[A-Z]{2}$")
    categories: list[Category] = Field(min_length=1)
    homepage: str = Field(pattern=r"^https?://")
    reviewed: dt.date
    description: str | None = None
    domains: list[DomainEntry] = Field(min_length=1)
    shared: list[SharedEntry] = []


@dataclass(frozen=True, slots=True)
class Vendor:
    id: str
    name: str
    jurisdiction: str
    categories: tuple[str, ...]
    homepage: str
    reviewed: dt.date
    domains: tuple[DomainEntry, ...]
    shared: tuple[SharedEntry, ...]
    path: Path

    @property
    def category(self) -> str:
        """The vendor's first (main) category, used in short explanations."""
        return self.categories[0]

    def label(self) -> str:
        """``DeepSeek, CN, chat`` — how an explanation names the vendor."""
        return f"{self.name}, {self.jurisdiction}, {'/'.join(self.categories)}"


class GuardEntry(_Model):
    name: str
    note: str = Field(min_length=1)

    _name = field_validator("name")(classmethod(lambda cls, v: _domain(v)))


class GuardFile(_Model):
    guard: list[GuardEntry] = []


@dataclass(frozen=True, slots=True)
class Catalog:
    vendors: dict[str, Vendor]
    guard: dict[str, str]  # name -> why it must never be blocked wholesale
    directory: Path

    def in_category(self, category: str) -> list[Vendor]:
        return [vendor for vendor in self.vendors.values() if category in vendor.categories]

    def in_jurisdiction(self, country: str) -> list[Vendor]:
        return [vendor for vendor in self.vendors.values() if vendor.jurisdiction == country]

    def guarded_names(self) -> dict[str, str]:
        """The global guard list plus every vendor's ``[[shared]]`` infrastructure."""
        names = dict(self.guard)
        for vendor in self.vendors.values():
            for entry in vendor.shared:
                names.setdefault(entry.name, f"{vendor.id}: {entry.note}")
        return names


def shipped_lists_dir() -> Path:
    """The ``lists/`` directory: packaged into the wheel as ``blockdns/_lists``, or the source checkout's."""
    packaged = Path(str(resources.files("blockdns"))) / "_lists"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "lists"


def load_catalog(directory: Path | None = None, guard_file: Path | None = None) -> Catalog:
    """Load every ``*.toml`` vendor file in ``directory`` and the guard list beside it."""
    directory = directory or shipped_lists_dir() / "vendors"
    if not directory.is_dir():
        raise CatalogError("catalogue directory not found", file=str(directory))
    vendors: dict[str, Vendor] = {}
    for path in sorted(directory.glob("*.toml")):
        vendors[path.stem] = load_vendor(path)
    guard_file = guard_file or directory.parent / "guard.toml"
    guard = _load_guard(guard_file) if guard_file.exists() else {}
    return Catalog(vendors=vendors, guard=guard, directory=directory)


def load_vendor(path: Path) -> Vendor:
    if not VENDOR_ID.fullmatch(path.stem):
        raise CatalogError("a vendor id (the file's stem) is lowercase letters, digits and '-'", file=str(path))
    model = _parse(path, VendorFile)
    return Vendor(
        id=path.stem,
        name=model.name,
        jurisdiction=model.jurisdiction,
        categories=tuple(model.categories),
        homepage=model.homepage,
        reviewed=model.reviewed,
        domains=tuple(model.domains),
        shared=tuple(model.shared),
        path=path,
    )


def _load_guard(path: Path) -> dict[str, str]:
    return {entry.name: entry.note for entry in _parse(path, GuardFile).guard}


def _parse(path: Path, model: type[ModelT]) -> ModelT:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CatalogError(f"cannot read: {err.strerror}", file=str(path)) from None
    except tomllib.TOMLDecodeError as err:
        raise CatalogError(f"not valid TOML: {err}", file=str(path)) from None
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise CatalogError(message.removeprefix("Value error, "), file=str(path), key=key) from None
