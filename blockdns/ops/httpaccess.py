"""Who may use the admin API: the ``Host`` check against DNS rebinding, and when reads need the token.

**Host.** A web page the admin visits can point a name it controls at the API's address (DNS rebinding) and
then read the API through the admin's browser as if it were that name's own site; the browser sends the
attacker's name in ``Host``. So the API answers only these ``Host`` values, port ignored:

* an IP address literal (``10.0.0.5``, ``[::1]``): a rebinding attack always goes through a name, and a page
  can only run in the origin of an address if this server served it. So ``http://10.0.0.5:8053/`` works
  for whoever may reach that address, whatever the API binds;
* ``localhost`` and names below it (RFC 6761 §6.3: they mean this host);
* the names in ``[api] allowed_hosts`` (a reverse proxy's public name); an entry starting with a dot, such as
  ``.example.org``, also covers every name below it.

A request without ``Host``, or with one that is not a host, is refused too (RFC 9112 §3.2).

**Reads.** Changes always need the token. Reads (the query log with client addresses, the counters) need it
too when ``[api] read_token = true`` or when the API is bound to anything but a loopback address: then more
than this host can reach it. The dashboard page and its files, ``/api/health`` (liveness probes) and the
OpenAPI document hold no data and stay open, so the page can load and ask for the token.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

# RFC 9110 §7.2 Host = uri-host [ ":" port ], narrowed to what a browser sends: a DNS name (letters,
# digits, '-', '_', '.') or a bracketed IPv6 literal. Anything else (userinfo, spaces, paths) is malformed.
_HOST = re.compile(r"(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9_.-]+))(?::[0-9]{0,5})?")


def host_name(header: str) -> str | None:
    """The host in a ``Host`` header value: lowercase, without port, brackets or trailing dot; None when the
    value is not a host."""
    match = _HOST.fullmatch(header.strip())
    if match is None:
        return None
    name = (match.group(1) or match.group(2)).lower()
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    return name or None


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(name: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether the API answers a request for host ``name`` (from :func:`host_name`)."""
    if is_ip_literal(name) or name == "localhost" or name.endswith(".localhost"):
        return True
    for entry in allowed_hosts:
        if name == entry or (entry.startswith(".") and (name.endswith(entry) or name == entry[1:])):
            return True
    return False


def is_loopback(address: str) -> bool:
    """Whether an API listen address reaches this host only (``0.0.0.0`` and ``::`` do not)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def reads_need_token(read_token: bool, listen_host: str) -> bool:
    """Whether ``GET`` endpoints with data need the token, for an API bound to ``listen_host``."""
    return read_token or not is_loopback(listen_host)
