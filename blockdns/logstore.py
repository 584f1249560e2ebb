"""Which store a ``[querylog] path`` names: a SQLite file, or a PostgreSQL database that replicas share.

A ``postgresql://`` or ``postgres://`` URL is PostgreSQL; any other ``scheme://`` is refused (it used to be
taken as a relative file name); anything else is a file path. URLs are shown with their password masked:
:func:`redact` is what every log line, error and API answer prints.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

StoreKind = Literal["sqlite", "postgresql"]
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def store_kind(path: str) -> StoreKind:
    """``"postgresql"`` for a PostgreSQL URL, ``"sqlite"`` for a file path; ValueError for another scheme."""
    found = _SCHEME.match(path.strip())
    if found is None:
        return "sqlite"
    scheme = found.group(1).lower()
    if scheme not in POSTGRES_SCHEMES:
        raise ValueError(f"unsupported query-log store {scheme!r}; use a file path or postgresql://…")
    return "postgresql"


def check_postgres_url(url: str) -> None:
    """ValueError (without the URL, which may hold a password) when libpq would not accept ``url``."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except ProgrammingError:
        raise ValueError("not a valid postgresql:// URL (see libpq's connection URIs)") from None


def scrub(message: str, url: str) -> str:
    """``message`` (a driver's error) with the URL's password, should it appear, replaced by ``***``."""
    password = _password(url)
    return message.replace(password, "***") if password else message


def _password(url: str) -> str | None:
    try:
        from_authority = urlsplit(url).password
    except ValueError:
        return None
    if from_authority:
        return unquote(from_authority)
    found = re.search(r"(?i)(?:^|[?&])password=([^&]*)", url)
    return unquote(found.group(1)) if found and found.group(1) else None


def redact(url: str) -> str:
    """``url`` with its password (in the authority or as a ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return f"{url.split('://', 1)[0]}://…"
