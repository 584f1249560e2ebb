"""``rpz``: a DNS Response Policy Zone in zone-file syntax.

The trigger is each record's owner name relative to the zone apex (the SOA's owner, else the first
``$ORIGIN``); ``$ORIGIN``, ``@``, relative names and blank owners (the previous owner again) work as in any
zone file, as do ``;`` comments and ``( ... )`` spanning lines. The zone's own SOA and NS records are ignored.

=============================  =================================================================
``name CNAME .``               block exactly ``name`` (NXDOMAIN); ``*.`` (NODATA), ``rpz-drop.`` and
                               local data (``A``, ``AAAA``, a CNAME elsewhere...) block too
``*.name CNAME .``             block ``name`` and everything below it
``name CNAME rpz-passthru.``   allow (exact, or with ``*.`` the name and below)
``24.0.2.0.192.rpz-ip ...``    block answers inside 192.0.2.0/24 (``zz`` abbreviates IPv6 zeros)
=============================  =================================================================

``rpz-nsdname``, ``rpz-nsip`` and ``rpz-client-ip`` triggers and ``rpz-tcp-only.`` actions are skipped;
``$INCLUDE`` is not followed (rejected).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from blockdns.feeds.formats.base import Collector, ParseOptions, ParseResult, split_lines

MAX_PAREN_LINES = 50
CLASSES = frozenset({"IN", "CH", "HS", "CS"})
_TTL = re.compile(r"\d+[smhdwSMHDW]?(?:\d+[smhdwSMHDW])*")
SKIPPED_TRIGGERS = ("rpz-nsdname", "rpz-nsip", "rpz-client-ip")


@dataclass(frozen=True, slots=True)
class _Owner:
    name: str  # lowercase, no trailing dot; "" for the root or the (unknown) apex
    absolute: bool  # False: relative to an apex that the file did not name


@dataclass(frozen=True, slots=True)
class _Record:
    line: int
    text: str
    owner: _Owner
    rtype: str
    rdata: tuple[str, ...]


class _Tokeniser:
    """Zone-file lines to token lists; keeps ``( ... )`` groups together, drops ``;`` comments."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def entries(self, text: str) -> Iterator[tuple[int, str, bool, list[str]]]:
        """(first line number, source text, starts with blank, tokens) per logical entry."""
        tokens: list[str] = []
        depth = 0
        start, indented, source = 0, False, ""
        for number, line in enumerate(split_lines(text), 1):
            if depth == 0:
                start, indented, source, tokens = number, line[:1] in (" ", "\t"), line, []
            elif number - start > MAX_PAREN_LINES:
                self.collector.line()
                self.collector.reject(start, "unclosed '('", source)
                depth, tokens = 0, []
                start, indented, source = number, line[:1] in (" ", "\t"), line
            depth = self._split(line, tokens, depth, number)
            if depth < 0:
                self.collector.line()
                self.collector.reject(number, "unbalanced ')'", line)
                depth, tokens = 0, []
                continue
            if depth == 0 and tokens:
                yield start, source, indented, tokens
                tokens = []
        if depth > 0:
            self.collector.line()
            self.collector.reject(start, "unclosed '('", source)

    @staticmethod
    def _split(line: str, tokens: list[str], depth: int, number: int) -> int:
        index, length = 0, len(line)
        while index < length:
            char = line[index]
            if char in " \t":
                index += 1
            elif char == ";":
                break
            elif char == "(":
                depth += 1
                index += 1
            elif char == ")":
                depth -= 1
                index += 1
                if depth < 0:
                    return depth
            elif char == '"':
                end = index + 1
                while end < length and line[end] != '"':
                    end += 2 if line[end] == "\\" else 1
                tokens.append(line[index : end + 1])
                index = end + 1
            else:
                end = index
                while end < length and line[end] not in ' \t;()"':
                    end += 2 if line[end] == "\\" else 1
                tokens.append(line[index:end])
                index = end
        return depth


def _resolve(name: str, origin: _Owner | None) -> _Owner:
    if name == "@":
        return origin or _Owner("", absolute=False)
    lowered = name.lower()
    if lowered.endswith("."):
        return _Owner(lowered[:-1], absolute=True)
    if origin is None:
        return _Owner(lowered, absolute=False)
    joined = f"{lowered}.{origin.name}" if origin.name else lowered
    return _Owner(joined, absolute=origin.absolute)


def _records(text: str, collector: Collector) -> tuple[list[_Record], _Owner | None]:
    """The records of the zone and its first ``$ORIGIN``."""
    origin: _Owner | None = None
    first_origin: _Owner | None = None
    owner: _Owner | None = None
    records: list[_Record] = []
    for number, source, indented, tokens in _Tokeniser(collector).entries(text):
        first = tokens[0]
        if first.startswith("$"):
            directive = first.upper()
            if directive == "$ORIGIN" and len(tokens) == 2:
                origin = _resolve(tokens[1], origin)
                first_origin = first_origin or origin
            elif directive == "$INCLUDE":
                collector.line()
                collector.reject(number, "$INCLUDE is not followed", source)
            elif directive not in ("$TTL", "$GENERATE"):
                collector.line()
                collector.reject(number, f"unknown or malformed directive {first}", source)
            continue
        if indented:
            if owner is None:
                collector.line()
                collector.reject(number, "record without an owner", source)
                continue
        else:
            owner = _resolve(tokens.pop(0), origin)
        for _ in range(2):
            if tokens and (tokens[0].upper() in CLASSES or _TTL.fullmatch(tokens[0])):
                tokens.pop(0)
        if not tokens:
            collector.line()
            collector.reject(number, "record without a type", source)
            continue
        records.append(_Record(number, source, owner, tokens[0].upper(), tuple(tokens[1:])))
    return records, first_origin


def _trigger(owner: _Owner, apex: _Owner) -> str | None:
    """``owner`` relative to the apex: "" for the apex itself, None when outside the zone."""
    if owner.absolute == apex.absolute:
        if owner.name == apex.name:
            return ""
        if not apex.name:
            return owner.name
        return owner.name[: -len(apex.name) - 1] if owner.name.endswith("." + apex.name) else None
    return owner.name  # the file never related the two; take the name as written


def _action(record: _Record) -> str:
    """block, allow, or a reason to skip."""
    if record.rtype != "CNAME":
        return "block"
    if len(record.rdata) != 1:
        return "malformed CNAME"
    target = record.rdata[0].lower().rstrip(".")
    if target == "rpz-passthru":
        return "allow"
    if target == "rpz-tcp-only":
        return "rpz-tcp-only action"
    return "block"


def _address_trigger(labels: list[str]) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``prefix.reversed.address`` (the labels before ``rpz-ip``) as a network, or None."""
    if len(labels) < 2 or not labels[0].isdigit():
        return None
    prefix, parts = labels[0], labels[:0:-1]
    try:
        if len(parts) == 4 and all(part.isdigit() for part in parts):
            return ipaddress.IPv4Network(f"{'.'.join(parts)}/{prefix}", strict=False)
        if "zz" in parts:
            cut = parts.index("zz")
            address = ":".join(parts[:cut]) + "::" + ":".join(parts[cut + 1 :])
        else:
            address = ":".join(parts)
        return ipaddress.IPv6Network(f"{address}/{prefix}", strict=False)
    except ValueError:
        return None


def parse(text: str, options: ParseOptions) -> ParseResult:
    collector = Collector(options)
    records, first_origin = _records(text, collector)
    soa = next((record.owner for record in records if record.rtype == "SOA"), None)
    apex = soa or first_origin or _Owner("", absolute=False)
    for record in records:
        trigger = _trigger(record.owner, apex)
        if trigger == "" and record.rtype in ("SOA", "NS"):
            continue
        collector.line()
        if trigger is None:
            collector.reject(record.line, "owner outside the zone", record.text)
            continue
        if not trigger:
            collector.skip(f"{record.rtype} at the zone apex")
            continue
        if record.rtype in ("SOA", "NS", "DNAME"):
            collector.skip(f"{record.rtype} record below the apex")
            continue
        action = _action(record)
        if action not in ("block", "allow"):
            if action.startswith("malformed"):
                collector.reject(record.line, action, record.text)
            else:
                collector.skip(action)
            continue
        labels = trigger.split(".")
        if labels[-1] == "rpz-ip":
            network = _address_trigger(labels[:-1])
            if network is None:
                collector.reject(record.line, "malformed rpz-ip trigger", record.text)
            elif action == "allow":
                collector.skip("passthru on an address trigger")
            else:
                collector.network(network)
        elif labels[-1] in SKIPPED_TRIGGERS:
            collector.skip(f"{labels[-1]} trigger")
        elif trigger == "*":
            collector.skip("wildcard on the whole zone")
        else:
            suffix = trigger.startswith("*.")
            collector.domain(
                trigger, suffix=suffix, allow=action == "allow", where=record.line, text=record.text
            )
    return collector.result()
