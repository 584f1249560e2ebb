"""The curated catalogue: ``lists/vendors/<id>.toml`` files and the global guard list, as pydantic models.

A :class:`Catalog` is immutable once loaded. It knows nothing about policy; :mod:`blockdns.policy` turns
selectors over it into decisions.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from blockdns import tomlfile
from blockdns.errors import CatalogError, InvalidName
from blockdns.names import normalise
from blockdns.tomlfile import schema_problems

CATEGORIES = (
    "chat",
    "api",
    "coding",
    "media",
    "search",
    "agent",
    "model-hub",
    "writing",
    "translation",
    "voice-assistant",
    "bypass",
)
# Categories that ``all`` leaves out: a vendor in one of them is blocked only when a policy names it
# (``category:bypass``, ``category:voice-assistant``, ``vendor:ID``). Encrypted DNS is not an AI vendor, and
# silencing every smart speaker in a building is a choice an administrator makes on purpose.
OPT_IN_CATEGORIES = frozenset({"bypass", "voice-assistant"})
ModelT = TypeVar("ModelT", bound=BaseModel)
VENDOR_ID = re.compile(r"[a-z0-9][a-z0-9-]*")

# ISO 3166-1 alpha-2, officially assigned codes (249, as of ISO/TC 46 N1108, 2023-04-05).
_ISO_3166_ALPHA_2 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT
    BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH
    ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT
    HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS
    LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI
    NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG
    SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG
    UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES = frozenset(_ISO_3166_ALPHA_2.split())
# ZZ is user-assigned in ISO 3166-1; the catalogue uses it for entries run by operators in many countries
# (the public encrypted-DNS resolvers).
VARIOUS_JURISDICTIONS = "ZZ"
JURISDICTIONS = COUNTRY_CODES | {VARIOUS_JURISDICTIONS}


def _domain(value: str) -> str:
    try:
        return normalise(value)
    except InvalidName as err:
        raise ValueError(str(err)) from None


def _known_category(value: str) -> str:
    if value not in CATEGORIES:
        raise ValueError(f"unknown category {value!r}; one of {', '.join(CATEGORIES)}")
    return value


def _known_jurisdiction(value: str) -> str:
    if value not in JURISDICTIONS:
        raise ValueError(
            f"unknown country code {value!r}: use an ISO 3166-1 alpha-2 code such as US or CN "
            f"(or {VARIOUS_JURISDICTIONS} for operators in many countries)"
        )
    return value


Category = Annotated[str, AfterValidator(_known_category)]
Jurisdiction = Annotated[str, AfterValidator(_known_jurisdiction)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DomainEntry(_Model):
    name: str
    evidence: str = Field(min_length=1)
    match: Literal["suffix", "exact"] = "suffix"  # a catalogue entry covers its subdomains unless "exact"
    note: str | None = None
    # True acknowledges a name in the private section of the Public Suffix List (oaiusercontent.com, hf.space)
    # whose every subdomain is this vendor's user content, so blocking all of it is intended.
    public_suffix: bool = False

    _name = field_validator("name")(classmethod(lambda cls, v: _domain(v)))


class SharedEntry(_Model):
    name: str
    note: str = Field(min_length=1)

    _name = field_validator("name")(classmethod(lambda cls, v: _domain(v)))


class VendorFile(_Model):
    name: str = Field(min_length=1)
    jurisdiction: Jurisdiction
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
    description: str | None = None

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

    def in_all(self) -> list[Vendor]:
        """The vendors ``all`` selects: every vendor outside the opt-in categories."""
        return [vendor for vendor in self.vendors.values() if OPT_IN_CATEGORIES.isdisjoint(vendor.categories)]

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
    if guard_file is None:
        beside = default_guard_file(directory)
        guard = _load_guard(beside) if beside.exists() else {}
    else:
        guard = _load_guard(guard_file)  # a guard file the config names must exist
    return Catalog(vendors=vendors, guard=guard, directory=directory)


def default_guard_file(catalog_dir: Path) -> Path:
    """Where the guard list lives when the config does not name one: ``guard.toml`` beside the catalogue."""
    return catalog_dir.parent / "guard.toml"


def load_vendor(path: Path) -> Vendor:
    if not VENDOR_ID.fullmatch(path.stem):
        raise CatalogError(
            "a vendor id (the file's stem) is lowercase letters, digits and '-'", file=str(path)
        )
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
        description=model.description,
    )


def _load_guard(path: Path) -> dict[str, str]:
    return {entry.name: entry.note for entry in _parse(path, GuardFile).guard}


def _parse(path: Path, model: type[ModelT]) -> ModelT:
    raw = read_toml(path)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        key, message = schema_problems(err)[0]
        raise CatalogError(message, file=str(path), key=key) from None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; every failure is a :class:`CatalogError` naming the file (syntax: the line)."""
    return tomlfile.read_toml(path, CatalogError)
