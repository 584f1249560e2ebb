"""Checks on a downloaded body before any parser sees it: never keep an HTML page or an empty body.

These refusals are :class:`BodyRefused` (a :class:`FetchError`), reported as status ``refused``; ``--force``
does not override them. Nothing here imports httpx.
"""

from __future__ import annotations

import re
import zlib

from blockdns.errors import FetchError

GZIP_MAGIC = b"\x1f\x8b"
_HTML_START = re.compile(
    rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE | re.DOTALL
)


class BodyRefused(FetchError):
    """The download arrived but its body cannot be used (HTML, empty, too large, not text)."""


def gunzip_bounded(body: bytes, max_bytes: int, url: str) -> bytes:
    """Decompress a gzip body that was served without Content-Encoding, refusing more than ``max_bytes``."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(body, max_bytes + 1)
    except zlib.error as err:
        raise BodyRefused(f"{url}: gzip body does not decompress: {err}") from None
    if len(out) > max_bytes:
        raise BodyRefused(f"{url}: body larger than {max_bytes} bytes once decompressed")
    return out


def body_text(body: bytes, url: str, *, content_type: str | None = None, max_bytes: int | None = None) -> str:
    """The body as text, after refusing what is never a feed. Raises BodyRefused."""
    if body.startswith(GZIP_MAGIC):
        body = gunzip_bounded(body, max_bytes or len(body) * 1000, url)
    if not body.strip():
        raise BodyRefused(f"{url}: empty body")
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in ("text/html", "application/xhtml+xml") or _HTML_START.match(body[:4096]):
        raise BodyRefused(f"{url}: an HTML page, not a feed")
    if b"\x00" in body[:65536]:
        raise BodyRefused(f"{url}: binary data, not a text feed")
    return body.decode("utf-8", errors="replace").removeprefix("\ufeff")
