"""Local names: the administrator's own records (``[local] records`` and hosts files), parsed, checked and
merged into RRsets in wire form, with a PTR for every address.

Record lines are zone-file syntax, read by dnspython's zone-file reader (``dns.zonefile.read_rrsets``):
``NAME [TTL] [IN] TYPE DATA``, names absolute whether or not they end with a dot, TTLs with units (``1h``).
Hosts files are ``/etc/hosts`` syntax: an address, then one or more names (the first is the canonical one),
``#`` comments. Every problem is one :class:`~blockdns.errors.ConfigError` naming the file and the key or
line.

The merged :class:`LocalData` is immutable. Rules it enforces (RFC 1034 §3.6.2, RFC 2181 §10.1): a CNAME is
alone at its name, there is one per name, and chains of them end (no loop, at most ``MAX_CNAME_CHAIN``).
Every A and AAAA gets a PTR at its reverse name (RFC 1035 §3.5 in-addr.arpa, RFC 3596 §2.5 ip6.arpa)
pointing at the first name given that address, unless a PTR record for that reverse name was written out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from blockdns import dnsname
from blockdns.errors import ConfigError, InvalidName
from blockdns.names import normalise
from blockdns.wire import TYPE_A, TYPE_AAAA, TYPE_CNAME

TYPE_PTR, TYPE_MX, TYPE_TXT, TYPE_SRV = 12, 15, 16, 33
LOCAL_TYPES = {
    TYPE_A: "A",
    TYPE_AAAA: "AAAA",
    TYPE_CNAME: "CNAME",
    TYPE_TXT: "TXT",
    TYPE_MX: "MX",
    TYPE_SRV: "SRV",
    TYPE_PTR: "PTR",
}
DEFAULT_TTL = 300  # a record line without a TTL, and every hosts-file name
MAX_TTL = 2_147_483_647  # RFC 2181 §8
MAX_CNAME_CHAIN = 8

# RFC 6761 §6.3: localhost names are the loopback addresses. Always there; records may add to them.
LOCALHOST = dnsname.from_text("localhost")
_BUILT_IN = "RFC 6761"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record was written: the file and the key (``local.records.2``) or line (``line 7``)."""

    file: str
    key: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}"


@dataclass(frozen=True, slots=True)
class Record:
    owner: bytes  # lowercase wire name
    rtype: int
    ttl: int
    rdata: bytes  # wire form, names uncompressed and as written
    source: Source


@dataclass(frozen=True, slots=True)
class RRset:
    owner: bytes
    rtype: int
    ttl: int  # the smallest TTL given to any of its records (RFC 2181 §5.2 wants one TTL per RRset)
    rdatas: tuple[bytes, ...]
    sources: tuple[Source, ...]  # where each record came from; a PTR made for an address, the address's
    made: bool = False  # a PTR made for an address, not written


# ------------------------------------------------------------------------------------------ record lines


def parse_record_text(text: str) -> list[tuple[bytes, int, int, bytes]]:
    """The records of one ``[local] records`` entry as ``(owner, type, ttl, rdata)``; raises ValueError with
    a message for people (the caller names the key)."""
    import dns.exception
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
    import dns.zonefile

    shown = repr(text.strip())
    try:
        rrsets = dns.zonefile.read_rrsets(
            text, origin=dns.name.root, relativize=False, default_ttl=DEFAULT_TTL, rdclass=None
        )
    except dns.exception.DNSException as err:
        raise ValueError(f"{shown}: {_dnspython_message(err, text)}") from None
    if not rrsets:
        raise ValueError(f"{shown}: no record")
    out = []
    for rrset in rrsets:
        name = rrset.name.canonicalize()
        if rrset.rdclass != dns.rdataclass.IN:
            raise ValueError(f"{shown}: only class IN records are served")
        if rrset.rdtype not in LOCAL_TYPES:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            served = ", ".join(LOCAL_TYPES.values())
            raise ValueError(f"{shown}: {kind} records are not served locally (only {served})")
        if name == dns.name.root:
            raise ValueError(f"{shown}: the root cannot be a local name")
        if name.is_wild():
            raise ValueError(f"{shown}: wildcard names are not supported; write each name out")
        if rrset.ttl > MAX_TTL:
            raise ValueError(f"{shown}: TTL {rrset.ttl} is above {MAX_TTL} (RFC 2181 §8)")
        owner = name.to_wire()
        assert owner is not None  # to_wire() without a file returns the bytes
        out += [(owner, int(rrset.rdtype), int(rrset.ttl), rdata.to_wire()) for rdata in rrset]
    return out


def _dnspython_message(err: Exception, text: str) -> str:
    message = str(err)
    if message.startswith("<input>:"):
        line, _, message = message[len("<input>:") :].partition(": ")
        if "\n" in text.strip():
            message = f"line {line}: {message}"
    if message.rstrip(".") == "Text input is malformed":
        message = "malformed record (expected NAME [TTL] [IN] TYPE DATA, with data that fits the type)"
    return message


def check_record_text(text: str) -> str:
    """Pydantic validator for one ``[local] records`` entry."""
    parse_record_text(text)
    return text


def records_from_settings(lines: Iterable[str], file: str) -> Iterator[Record]:
    for index, text in enumerate(lines):
        source = Source(file, f"local.records.{index}")
        try:
            parsed = parse_record_text(text)
        except ValueError as err:
            raise ConfigError(str(err), file=file, key=source.key) from None
        for owner, rtype, ttl, rdata in parsed:
            yield Record(owner, rtype, ttl, rdata, source)


# ------------------------------------------------------------------------------------------- hosts files


def parse_hosts(text: str, file: str) -> Iterator[Record]:
    """The A and AAAA records of a hosts file: ``ADDRESS NAME [NAME...]``, ``#`` to the end of a line."""
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        source = Source(file, f"line {number}")
        address_text = fields[0].split("%", 1)[0]  # fe80::1%eth0: the zone index means nothing here
        try:
            address = ipaddress.ip_address(address_text)
        except ValueError:
            raise ConfigError(f"{fields[0]!r} is not an IP address", file=file, key=source.key) from None
        if len(fields) < 2:
            raise ConfigError(f"no host name after {fields[0]}", file=file, key=source.key)
        rtype = TYPE_A if address.version == 4 else TYPE_AAAA
        for name in fields[1:]:
            try:
                owner = dnsname.from_text(normalise(name))
            except InvalidName as err:
                raise ConfigError(str(err), file=file, key=source.key) from None
            yield Record(owner, rtype, DEFAULT_TTL, address.packed, source)


def read_hosts_file(path: Path) -> list[Record]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such hosts file", file=str(path)) from None
    except OSError as err:
        raise ConfigError(f"cannot read the hosts file: {err.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("the hosts file is not UTF-8 text", file=str(path)) from None
    return list(parse_hosts(text, str(path)))


# -------------------------------------------------------------------------------------------- merging


def reverse_name(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """The in-addr.arpa or ip6.arpa name of an address, in wire form."""
    return dnsname.from_text(address.reverse_pointer)


def _built_in() -> list[Record]:
    source = Source(_BUILT_IN, "localhost")
    return [
        Record(LOCALHOST, TYPE_A, DEFAULT_TTL, ipaddress.IPv4Address("127.0.0.1").packed, source),
        Record(LOCALHOST, TYPE_AAAA, DEFAULT_TTL, ipaddress.IPv6Address("::1").packed, source),
    ]


class LocalData:
    """Every local RRset, by owner name and type. Build with :meth:`build`; never changed afterwards."""

    def __init__(self, rrsets: Mapping[bytes, Mapping[int, RRset]]) -> None:
        self.rrsets = rrsets

    @classmethod
    def build(cls, records: Iterable[Record]) -> LocalData:
        """Merge records (the built-in localhost ones first), check the CNAME rules, add the PTRs."""
        merged: dict[bytes, dict[int, tuple[int, dict[bytes, Source]]]] = {}
        for record in [*_built_in(), *records]:
            types = merged.setdefault(record.owner, {})
            ttl, rdatas = types.get(record.rtype, (record.ttl, {}))
            rdatas.setdefault(record.rdata, record.source)
            types[record.rtype] = (min(ttl, record.ttl), rdatas)
        rrsets = {
            owner: {
                rtype: RRset(owner, rtype, ttl, tuple(rdatas), tuple(rdatas.values()))
                for rtype, (ttl, rdatas) in types.items()
            }
            for owner, types in merged.items()
        }
        _check_cnames(rrsets)
        _add_ptrs(rrsets)
        return cls(rrsets)

    def __len__(self) -> int:
        return len(self.rrsets)

    def get(self, owner: bytes) -> Mapping[int, RRset] | None:
        return self.rrsets.get(owner)

    def cname_target(self, owner: bytes) -> bytes | None:
        """The lowercase target of the CNAME at ``owner``, if there is one."""
        types = self.rrsets.get(owner)
        cname = types.get(TYPE_CNAME) if types else None
        return _lower_name(cname.rdatas[0]) if cname else None

    def describe(self, owner: bytes) -> list[tuple[str, str]]:
        """The records of ``owner`` in presentation form, each with where it was written."""
        import dns.rdata
        import dns.rdataclass
        import dns.rdatatype

        lines = []
        name = dnsname.to_text(owner)
        for rrset in (self.rrsets.get(owner) or {}).values():
            rtype = dns.rdatatype.RdataType(rrset.rtype)
            kind = dns.rdatatype.to_text(rtype)
            for rdata, source in zip(rrset.rdatas, rrset.sources, strict=True):
                text = dns.rdata.from_wire(dns.rdataclass.IN, rtype, rdata, 0, len(rdata)).to_text()
                where = f"{source}, the PTR of its address" if rrset.made else str(source)
                lines.append((f"{name} {rrset.ttl} IN {kind} {text}", where))
        return lines

    def ptr_name(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """The name in the PTR record of ``address`` (text, no trailing dot), or None."""
        types = self.rrsets.get(reverse_name(address))
        ptr = types.get(TYPE_PTR) if types else None
        return dnsname.text_key(_lower_name(ptr.rdatas[0])) if ptr else None


def _lower_name(wire: bytes) -> bytes:
    return dnsname.join([label.lower() for label in dnsname.split(wire)])


def _describe(sources: Iterable[Source]) -> str:
    return ", ".join(dict.fromkeys(str(source) for source in sources))


def _check_cnames(rrsets: dict[bytes, dict[int, RRset]]) -> None:
    for owner, types in rrsets.items():
        cname = types.get(TYPE_CNAME)
        if cname is None:
            continue
        name = dnsname.to_text(owner)
        if len(types) > 1:
            others = [rrset for rtype, rrset in types.items() if rtype != TYPE_CNAME]
            where = _describe([*cname.sources, *(s for rrset in others for s in rrset.sources)])
            raise ConfigError(f"{name} has a CNAME and other records; a CNAME stands alone ({where})")
        if len(cname.rdatas) > 1:
            raise ConfigError(f"{name} has more than one CNAME ({_describe(cname.sources)})")
        seen = [owner]
        target = _lower_name(cname.rdatas[0])
        while target in rrsets and TYPE_CNAME in rrsets[target]:
            if target in seen:
                raise ConfigError(f"the CNAMEs from {name} loop ({_describe(cname.sources)})")
            seen.append(target)
            if len(seen) > MAX_CNAME_CHAIN:
                where = _describe(cname.sources)
                raise ConfigError(f"the CNAMEs from {name} chain more than {MAX_CNAME_CHAIN} names ({where})")
            target = _lower_name(rrsets[target][TYPE_CNAME].rdatas[0])


def _add_ptrs(rrsets: dict[bytes, dict[int, RRset]]) -> None:
    """A PTR for every address, to the first name given it, where no PTR or CNAME was written for it."""
    synthesised: dict[bytes, RRset] = {}
    for owner, types in list(rrsets.items()):
        for rtype in (TYPE_A, TYPE_AAAA):
            rrset = types.get(rtype)
            if rrset is None:
                continue
            for rdata, source in zip(rrset.rdatas, rrset.sources, strict=True):
                address = ipaddress.ip_address(rdata)
                reverse = reverse_name(address)
                if reverse in synthesised or reverse in rrsets:
                    continue
                synthesised[reverse] = RRset(reverse, TYPE_PTR, rrset.ttl, (owner,), (source,), made=True)
    for reverse, ptr in synthesised.items():
        rrsets[reverse] = {TYPE_PTR: ptr}
