"""What the query log stores for a client address: the address, a keyed hash of it, or nothing.

The hash is HMAC-SHA256 over the address text, keyed with 32 random bytes kept beside the database in
``<database>.key`` (mode 0600, created once). Without the key, a hashed value cannot be turned back into an
address by trying all 2^32 IPv4 addresses; with it, the same client always gets the same value, so "top
clients" and ``--client`` filters still work.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Literal

from blockdns.errors import UserError

ClientMode = Literal["full", "hash", "none"]
KEY_BYTES = 32
HASH_CHARS = 16  # 64 bits of the HMAC: collisions need ~4 billion distinct clients
_CACHE_LIMIT = 65_536


class QueryLogError(UserError):
    """The query log cannot be used as asked (off, missing, unreadable, or a filter it cannot apply).

    Exit code 2 for a usage or config problem; 1 when the log itself is missing or unreadable.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def key_path(database: Path) -> Path:
    return database.with_name(database.name + ".key")


def load_or_create_key(database: Path) -> bytes:
    """Read the key beside ``database``; create it (0600) when it does not exist yet."""
    path = key_path(database)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key(database)
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.hex().encode("ascii") + b"\n")
    return key


def read_key(database: Path) -> bytes:
    """The existing key; tightens its permissions to 0600 if someone loosened them."""
    path = key_path(database)
    try:
        text = path.read_text(encoding="ascii").strip()
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise QueryLogError(f"{path}: the client hash key does not exist", exit_code=1) from None
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not ASCII"
        raise QueryLogError(
            f"{path}: cannot read the client hash key: {reason} (run as the server's user, or filter by the"
            " hash shown in the log)",
            exit_code=1,
        ) from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise QueryLogError(f"{path}: not a client hash key (expected {KEY_BYTES} bytes in hex)", exit_code=1)
    if mode & 0o077:
        # A reader that does not own the file cannot fix it; the owner's next start does.
        with contextlib.suppress(OSError):
            path.chmod(0o600)
    return key


class ClientMasker:
    """Turns a client address into what the log stores for it."""

    def __init__(self, mode: ClientMode, key: bytes | None = None) -> None:
        if mode == "hash" and not key:
            raise ValueError("hash mode needs a key")
        self.mode = mode
        self._key = key or b""
        self._cache: dict[str, str] = {}

    @classmethod
    def for_database(cls, mode: ClientMode, database: Path, *, create: bool) -> ClientMasker:
        if mode != "hash":
            return cls(mode)
        key = load_or_create_key(database) if create else read_key(database)
        return cls(mode, key)

    def mask(self, client: str) -> str | None:
        if self.mode == "full":
            return client
        if self.mode == "none":
            return None
        cached = self._cache.get(client)
        if cached is None:
            digest = hmac.new(self._key, client.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
            cached = digest[:HASH_CHARS]
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[client] = cached
        return cached
