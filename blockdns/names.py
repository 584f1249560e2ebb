"""Domain names: normalisation, validation and conversion to and from DNS wire format.

Every name that enters blockdns (config, catalogue, feeds, queries) passes through :func:`normalise`, so the
rest of the code can compare names as plain lowercase ASCII strings without a trailing dot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import dns.exception
import dns.name
import idna

from blockdns.errors import InvalidName

MAX_NAME_LENGTH = 253  # presentation form without the trailing dot (255 octets on the wire)
MAX_LABEL_LENGTH = 63

# Letters, digits, hyphen and underscore (service labels such as _dns or _acme-challenge are real names).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_ASCII_NAME = re.compile(r"[a-z0-9_.-]+")


def normalise(name: str) -> str:
    """Return the canonical form of ``name``: lowercase A-labels, no trailing dot, no leading ``*.``.

    Raises :class:`InvalidName` for anything that is not a valid host or domain name. Idempotent:
    ``normalise(normalise(x)) == normalise(x)``.
    """
    text = name.strip()
    if text.startswith("*."):
        text = text[2:]
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidName(f"empty name: {name!r}")
    lowered = text.lower()
    if not _ASCII_NAME.fullmatch(lowered):
        lowered = _to_a_labels(text, original=name)
    _validate(lowered, original=name)
    return lowered


def _to_a_labels(text: str, *, original: str) -> str:
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as err:
        raise InvalidName(f"not a valid internationalised name: {original!r} ({err})") from None


def _validate(name: str, *, original: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"name longer than {MAX_NAME_LENGTH} characters: {original!r}")
    for label in name.split("."):
        if not label:
            raise InvalidName(f"empty label in {original!r}")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidName(f"label longer than {MAX_LABEL_LENGTH} characters in {original!r}")
        if not _LABEL.fullmatch(label):
            raise InvalidName(f"invalid characters in label {label!r} of {original!r}")


def suffixes(name: str) -> Iterator[str]:
    """Yield ``name`` and every parent of it, most specific first: a.b.c -> a.b.c, b.c, c."""
    yield name
    start = name.find(".")
    while start != -1:
        yield name[start + 1 :]
        start = name.find(".", start + 1)


def is_subdomain(name: str, parent: str) -> bool:
    """True when ``name`` equals ``parent`` or lies below it (both normalised)."""
    return name == parent or name.endswith("." + parent)


def query_name(text: str) -> bytes:
    """The lowercase wire name a client would send for ``text`` as a person types it: presentation format,
    with ``\\DDD`` and ``\\.`` escapes and labels such as ``*`` or ``a+b`` kept as they are, and
    internationalised names as A-labels. ``blockdns check`` and the API ask the policy with it, so they decide
    exactly as the server does for that query. Raises :class:`InvalidName` for text no name can have.
    """
    stripped = text.strip()
    if not stripped:
        raise InvalidName("empty name")
    try:
        ascii_text = stripped if stripped.isascii() else normalise(stripped)
        name = dns.name.from_text(ascii_text)
    except dns.exception.DNSException as err:
        raise InvalidName(f"not a valid domain name: {text!r} ({err})") from None
    return name.canonicalize().to_wire() or b"\x00"
