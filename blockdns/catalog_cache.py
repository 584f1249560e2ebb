"""The compiled catalogue stored in the lists data dir, so a start with unchanged vendor files parses no TOML.

Parsing and validating the TOML is most of what loading a large catalogue costs (a 1M-entry one: about
30 s). :func:`load_compiled_catalog` stores what :func:`~blockdns.catalog_compiled.compile_catalog` made
in ``data_dir/catalog.cache`` and, on the next start, loads it instead when the files are unchanged.

The cache is never trusted over the TOML. It is keyed by the catalogue directory and, for every vendor file
and the guard file, its name, size, inode, mtime and ctime, taken *before* the files are read: a file edited
while they are read gives a key that no longer matches on the next start. Any write to a file moves its
ctime, which ``touch`` cannot set back, so an edit that keeps the size and the mtime still misses. Timestamps
are coarse, though (a clock tick; a second or two on some file systems), so a second write of the same size
in the same tick as the first leaves the key as it was. As git does with its index, a file whose ctime is
within ``RACY_NS`` of the moment the key was taken is also recorded by the SHA-256 of its content (hashed
before it is parsed), and a start checks that content again. A cache written by another blockdns version or
cache format, one whose checksum does not match, or one that does not decode to the expected shape is ignored
(with a log line) and rebuilt from the files.

File layout: ``MAGIC``, the SHA-256 of the payload, then the payload: :mod:`marshal` of plain tuples,
dicts and strings ``(FORMAT, version, key, digests, guard, directory, vendors)``. marshal is fast (a
1M-entry catalogue loads in a fraction of a second) and, unlike pickle, cannot run code while it decodes; it
is not hardened against crafted input, so only bytes whose checksum matches are decoded. The file lives in
the data dir beside the feed data, which decides what is blocked: whoever can write there is already
trusted as much as this file needs. It is written like the feed data (temporary file, fsync, rename), so a
kill leaves the last good copy.

A large catalogue missing from the cache is compiled by a child process (``python -m
blockdns.catalog_cache``), and the server then loads the cache it wrote. Parsing 1M entries allocates about
800 MB of small objects that CPython keeps mapped after they are freed, because the names the server keeps
are scattered among them; in a child that exits, the server's memory is only what it keeps. A child that
fails for any reason leaves the work to the server itself, which then reports a bad file as it always does.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import blockdns
from blockdns.catalog import default_guard_file, load_catalog
from blockdns.catalog_compiled import CompiledCatalog, CompiledVendor, VendorInfo, compile_catalog
from blockdns.errors import CatalogError
from blockdns.feeds.model import write_atomic

log = logging.getLogger("blockdns.catalog")

CACHE_NAME = "catalog.cache"
MAGIC = b"BDNSCAT\n"
FORMAT = 1  # bump when the payload's shape or the compiled form's meaning changes
_DIGEST = hashlib.sha256().digest_size
# TOML bytes from which a child process compiles a missing cache (the shipped catalogue is about 100 KB;
# 4 MB is some 40,000 entries, whose parse leaves some 30 MB mapped in the process that did it).
CHILD_BUILD_BYTES = 4 << 20
CHILD_TIMEOUT = 600.0
# A file changed this close to when the key was taken may have changed again within its timestamp's tick.
RACY_NS = 3_000_000_000

FileKey = tuple[str, int, int, int, int] | None
CacheKey = tuple[str, tuple[FileKey, ...], FileKey]


def load_compiled_catalog(
    directory: Path, guard_file: Path | None, cache_dir: Path | None, *, in_child: bool = True
) -> CompiledCatalog:
    """The catalogue in ``directory`` (and its guard file) in run-time form: from ``cache_dir``'s cache when
    it matches the files, else loaded and validated from the TOML and written to the cache for next time.

    ``cache_dir`` None: no cache; a directory that does not exist is not created (the feed store or the
    administrator makes it), and the catalogue is then parsed at every start. Raises :class:`CatalogError`
    for a bad catalogue, as :func:`~blockdns.catalog.load_catalog` does; a cache that cannot be read or
    written is only logged.
    """
    if cache_dir is None or (guard_file is not None and not guard_file.exists()):
        return compile_catalog(load_catalog(directory, guard_file))  # load_catalog names what is missing
    taken_ns = time.time_ns()
    key = catalog_key(directory, guard_file)
    path = cache_dir / CACHE_NAME
    cached = read_cache(path, key)
    if cached is not None:
        return cached
    if (
        in_child
        and _toml_bytes(key) >= CHILD_BUILD_BYTES
        and _build_in_child(directory, guard_file, cache_dir)
    ):
        cached = read_cache(path, key)
        if cached is not None:
            return cached
    digests = racy_digests(key, taken_ns)  # before the files are parsed: the content can only get newer
    compiled = compile_catalog(load_catalog(directory, guard_file))
    # Info, not warning: `blockdns check` run by someone who cannot write the server's data dir is normal.
    if not cache_dir.is_dir():
        log.info("no data dir %s: the compiled catalogue is not kept; each start parses the TOML", cache_dir)
        return compiled
    try:
        write_cache(path, key, digests, compiled)
    except OSError as err:
        log.info("cannot write the compiled catalogue %s: %s", path, err.strerror or err)
    return compiled


def catalog_key(directory: Path, guard_file: Path | None) -> CacheKey:
    """What the cache must have been built from: every vendor file's and the guard file's identity."""
    if not directory.is_dir():
        raise CatalogError("catalogue directory not found", file=str(directory))
    vendors = tuple(_file_key(path) for path in sorted(directory.glob("*.toml")))
    guard = guard_file if guard_file is not None else default_guard_file(directory)
    return str(directory.resolve()), vendors, _file_key(guard)


def racy_digests(key: CacheKey, taken_ns: int) -> dict[str, bytes]:
    """The SHA-256 of every file whose ctime is too close to ``taken_ns`` for its stat to prove it unchanged.
    A file that cannot be read gets an empty digest, which no content matches."""
    _directory, vendors, guard = key
    digests = {}
    for file in (*vendors, guard):
        if file is not None and file[4] >= taken_ns - RACY_NS:
            digests[file[0]] = _content_digest(file[0])
    return digests


def _content_digest(path: str) -> bytes:
    try:
        return hashlib.sha256(Path(path).read_bytes()).digest()
    except OSError:
        return b""


def _toml_bytes(key: CacheKey) -> int:
    _directory, vendors, guard = key
    return sum(file[1] for file in (*vendors, guard) if file is not None)


def _build_in_child(directory: Path, guard_file: Path | None, cache_dir: Path) -> bool:
    """Compile the catalogue into ``cache_dir``'s cache in a child process; True when it says it did."""
    if not cache_dir.is_dir() or not os.access(cache_dir, os.W_OK):
        return False  # the child could not write it either: its parse would be wasted
    # The child must run this very package, not whichever ``blockdns`` its working directory would give it:
    # -P leaves the directory out, and PYTHONPATH puts this package's parent first.
    package_root = str(Path(blockdns.__file__).resolve().parent.parent)
    search_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-P",
        "-m",
        "blockdns.catalog_cache",
        str(directory),
        str(guard_file or ""),
        str(cache_dir),
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=CHILD_TIMEOUT,
            check=False,
            env=os.environ | {"PYTHONPATH": search_path},
        )
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("cannot compile the catalogue in a child process (%s); compiling it here", err)
        return False
    return done.returncode == 0


def _file_key(path: Path) -> FileKey:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return str(path.resolve()), stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns


def write_cache(path: Path, key: CacheKey, digests: dict[str, bytes], catalog: CompiledCatalog) -> None:
    vendors = tuple(
        (
            v.info.id,
            v.info.name,
            v.info.jurisdiction,
            v.info.categories,
            str(v.info.path),
            v.suffix,
            v.exact,
            v.shared,
        )
        for v in catalog.vendors.values()
    )
    payload = marshal.dumps(
        (FORMAT, blockdns.__version__, key, digests, catalog.guard, str(catalog.directory), vendors)
    )
    write_atomic(path, MAGIC + hashlib.sha256(payload).digest() + payload)


def read_cache(path: Path, key: CacheKey) -> CompiledCatalog | None:
    """The cached catalogue when ``path`` is a sound cache built from exactly ``key``'s files, else None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("cannot read the compiled catalogue %s: %s; loading the TOML files", path, err.strerror)
        return None
    header = len(MAGIC) + _DIGEST
    payload = memoryview(data)[header:]
    if data[: len(MAGIC)] != MAGIC or data[len(MAGIC) : header] != hashlib.sha256(payload).digest():
        log.warning("compiled catalogue %s is damaged (checksum); rebuilding it from the TOML files", path)
        return None
    try:
        fields = marshal.loads(payload)
        form, version, cached_key = fields[:3]
    except (EOFError, ValueError, TypeError):
        log.warning("compiled catalogue %s does not decode; rebuilding it from the TOML files", path)
        return None
    if (form, version) != (FORMAT, blockdns.__version__):
        log.info("compiled catalogue %s is from blockdns %s (format %s); rebuilding it", path, version, form)
        return None
    if cached_key != key:
        log.info("catalogue files changed since %s was written; rebuilding it", path)
        return None
    digests = fields[3] if len(fields) == 7 else None
    if not isinstance(digests, dict):
        log.warning("compiled catalogue %s has an unexpected shape; rebuilding it from the TOML files", path)
        return None
    if any(_content_digest(f) != d for f, d in digests.items()):
        log.info("catalogue files changed since %s was written (same size and times); rebuilding it", path)
        return None
    try:
        return _decode(fields)
    except (ValueError, TypeError):
        log.warning("compiled catalogue %s has an unexpected shape; rebuilding it from the TOML files", path)
        return None


def _decode(fields: Sequence[Any]) -> CompiledCatalog:
    _form, _version, _key, _digests, guard, directory, rows = fields
    if not (isinstance(guard, dict) and isinstance(directory, str) and isinstance(rows, tuple)):
        raise TypeError("cache fields")
    vendors: dict[str, CompiledVendor] = {}
    for vendor_id, name, jurisdiction, categories, vendor_path, suffix, exact, shared in rows:
        texts = (vendor_id, name, jurisdiction, vendor_path)
        if not all(type(text) is str for text in texts) or not categories:
            raise TypeError("vendor fields")
        if not all(type(part) is tuple for part in (categories, suffix, exact, shared)):
            raise TypeError("vendor entries")
        info = VendorInfo(vendor_id, name, jurisdiction, categories, Path(vendor_path))
        vendors[vendor_id] = CompiledVendor(info, suffix, exact, shared)
    return CompiledCatalog(vendors=vendors, guard=guard, directory=Path(directory))


def _main(argv: list[str]) -> int:
    """``python -m blockdns.catalog_cache DIRECTORY GUARD_FILE|'' CACHE_DIR``: write the cache, exit 0."""
    directory, guard, cache_dir = argv
    try:
        load_compiled_catalog(
            Path(directory), Path(guard) if guard else None, Path(cache_dir), in_child=False
        )
    except CatalogError as err:
        print(err, file=sys.stderr)
        return 1
    return 0 if (Path(cache_dir) / CACHE_NAME).exists() else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
