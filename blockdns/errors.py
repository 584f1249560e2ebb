"""One exception tree for blockdns.

    BlockdnsError                 anything blockdns raises on purpose
    ├── UserError                 bad input from a person: one line, exit 2, no traceback
    │   ├── ConfigError           a config file or key is wrong            (file, key)
    │   ├── CatalogError          a vendor file is wrong                   (file, key)
    │   └── SelectorError         a policy selector does not parse or names nothing
    ├── InvalidName               a domain name breaks the DNS/IDNA rules  (names.py)
    ├── WireError                 a DNS message cannot be parsed           (wire.py)
    ├── UpstreamError             no upstream gave a usable answer; carries the EDE code for the client
    └── FeedError                 a feed could not be used
        ├── FetchError            the download failed or was refused
        └── FeedFormatError       the body is not the declared format      (feed, line)

Foreign exceptions (httpx, pydantic, OSError from sockets) are translated into this tree at the one place
that calls the foreign code, so callers only ever catch these.
"""

from __future__ import annotations


class BlockdnsError(Exception):
    """Base of every error blockdns raises on purpose."""


class UserError(BlockdnsError):
    """Bad input from a person. The CLI prints ``str(err)`` as one line and exits 2."""

    exit_code = 2


class ConfigError(UserError):
    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class CatalogError(ConfigError):
    """A vendor file of the catalogue is invalid."""


class SelectorError(UserError):
    """A policy selector is malformed or names nothing that exists."""


class InvalidName(BlockdnsError, ValueError):
    """A domain name that is not a valid DNS name."""


class WireError(BlockdnsError):
    """A DNS message that cannot be parsed."""


class UpstreamError(BlockdnsError):
    """No upstream produced a usable answer.

    ``ede_code`` is the RFC 8914 Extended DNS Error the client receives with its SERVFAIL
    (22 No Reachable Authority, 23 Network Error, ...), and ``client_text`` the EDE text: the message
    without what a client has no business learning (the upstreams' addresses). The message itself goes to
    the server's log and query log.
    """

    def __init__(self, message: str, ede_code: int = 23, *, client_text: str | None = None) -> None:
        self.ede_code = ede_code
        self.client_text = message if client_text is None else client_text
        super().__init__(message)


class FeedError(BlockdnsError):
    """A feed could not be used."""


class FetchError(FeedError):
    """The download failed, or its body was refused (HTML, empty, too large, shrank too much)."""


class FeedFormatError(FeedError):
    def __init__(self, message: str, *, feed: str | None = None, line: int | None = None) -> None:
        self.feed = feed
        self.line = line
        where = f"{feed}:{line}" if feed and line else (feed or "")
        super().__init__(f"{where}: {message}" if where else message)
