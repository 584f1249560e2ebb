"""Domain names in lowercase wire form (``b"\\x03www\\x07example\\x03com\\x00"``): the keys of every table in
the recursive resolver.

Comparisons go label by label, never by byte suffix: a label may hold any byte, including one that looks
like a length, so ``name.endswith(zone)`` could claim a name is inside a zone it is not.
"""

from __future__ import annotations

import re
from functools import lru_cache

ROOT = b"\x00"
MAX_NAME_LENGTH = 255


@lru_cache(maxsize=8192)
def split(name: bytes) -> tuple[bytes, ...]:
    """The labels of a wire name, leftmost first (the root has none)."""
    labels: list[bytes] = []
    pos = 0
    while name[pos]:
        length = name[pos]
        labels.append(name[pos + 1 : pos + 1 + length])
        pos += length + 1
    return tuple(labels)


def join(labels: tuple[bytes, ...] | list[bytes]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def label_count(name: bytes) -> int:
    return len(split(name))


def parent(name: bytes) -> bytes:
    """The name one label up; the root is its own parent."""
    return name if name == ROOT else name[name[0] + 1 :]


def is_subdomain(name: bytes, zone: bytes) -> bool:
    """True when ``name`` is ``zone`` or below it."""
    zone_labels = split(zone)
    if not zone_labels:
        return True
    labels = split(name)
    return len(labels) >= len(zone_labels) and labels[len(labels) - len(zone_labels) :] == zone_labels


def is_strict_subdomain(name: bytes, zone: bytes) -> bool:
    """True when ``name`` is below ``zone`` (and not ``zone`` itself)."""
    return name != zone and is_subdomain(name, zone)


def ancestor(name: bytes, count: int) -> bytes:
    """The ancestor of ``name`` (or ``name`` itself) that has ``count`` labels."""
    labels = split(name)
    return join(labels[len(labels) - count :]) if count else ROOT


def ancestors(name: bytes) -> list[bytes]:
    """``name`` and every name above it, ending with the root."""
    labels = split(name)
    return [join(labels[index:]) for index in range(len(labels) + 1)]


def replace_suffix(name: bytes, old_suffix: bytes, new_suffix: bytes) -> bytes | None:
    """``name`` with ``old_suffix`` swapped for ``new_suffix`` (DNAME substitution, RFC 6672 §2.2), or None
    when the result would be longer than a name may be (the server must then answer YXDOMAIN)."""
    kept = split(name)[: label_count(name) - label_count(old_suffix)]
    result = join(kept + split(new_suffix))
    return result if len(result) <= MAX_NAME_LENGTH else None


def to_text(name: bytes) -> str:
    """Presentation form for logs and errors: ``www.example.com.``, odd bytes escaped as ``\\DDD``."""
    return text_key(name) + "." if name != ROOT else "."


def text_key(name: bytes) -> str:
    """The name as every table outside the resolver keys it: lowercase presentation text without the trailing
    dot (``www.example.com``; ``""`` for the root), with every byte outside printable ASCII, a space, and the
    characters master files give a meaning (``"().;\\@$``, RFC 1035 §5.1; dnspython escapes the same ones)
    escaped as ``\\DDD``, so that the text reads back as the same name (``@`` alone would be the origin).

    One text per wire name and one wire name per text, so the policy can decide on any name a client sends:
    dots separate labels and nothing else, a label with odd bytes (``*``, ``a+b``, ``x\\032y``) never equals
    a catalogue entry's (which hold only letters, digits, hyphens and underscores), and the names above it
    are looked up as usual. Control bytes are escaped, so the text is safe to print. ``name`` must be
    lowercase, as every wire name blockdns keeps is.
    """
    labels = []
    pos = 0
    length = name[0]
    while length:
        labels.append(name[pos + 1 : pos + 1 + length])
        pos += length + 1
        length = name[pos]
    text = b".".join(labels)
    if _PRINTABLE.fullmatch(text) and text.count(b".") == len(labels) - 1:
        return text.decode("ascii")  # the common case: nothing to escape
    return ".".join("".join(_ESCAPED[byte] for byte in label) for label in labels)


_SPECIAL = b'"().;\\@$'  # what a master file reads as more than a character (dnspython escapes the same)
_PRINTABLE = re.compile(rb'[^\x00-\x20\x7f-\xff"();\\@$]*')  # the dots are counted apart
_ESCAPED = [
    chr(byte) if 0x21 <= byte <= 0x7E and byte not in _SPECIAL else f"\\{byte:03d}" for byte in range(256)
]


def from_text(text: str) -> bytes:
    """A lowercase wire name from plain ASCII text (``"www.example.com"`` or ``"www.example.com."``)."""
    stripped = text.strip().rstrip(".")
    if not stripped:
        return ROOT
    return join([label.lower().encode("ascii") for label in stripped.split(".")])
