"""Names of client addresses for people to read: the query log, ``blockdns log``, ``blockdns stats`` and the
dashboard show "laptop-anna.home.arpa" rather than 192.168.1.23.

Where a name comes from, the first that has one:

1. the local data: the PTR of the address (local records and hosts files; every A/AAAA makes one);
2. a PTR lookup of the address through the ``[[forward_zones]]`` zone that covers its reverse name (the
   router's ``168.192.in-addr.arpa``, a domain controller's reverse zone), when one is configured.

Nothing else is asked: the root servers and public upstreams know nothing of LAN addresses, and asking them
would tell them who is on the LAN.

Never on the hot path: the query log's writer thread calls :meth:`ClientNames.name`, a dict read. An
address it does not know yet is looked up on the event loop in the background (at most ``MAX_LOOKUPS`` at
once), and rows written from then on carry the name. Names are kept for their PTR's TTL (held within
``[MIN_TTL, MAX_TTL]``), failed and empty lookups for ``NEGATIVE_TTL``; at most ``MAX_NAMES`` addresses (a
full table is cleared, never grown). A reload that changes the local data or the forward zones starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time

from blockdns import dnsname
from blockdns.errors import UpstreamError, WireError
from blockdns.localdata import TYPE_PTR, LocalData, reverse_name
from blockdns.resolve.routing import ZoneRouter
from blockdns.wire import CLASS_IN, record_names

log = logging.getLogger("blockdns.clientnames")

MAX_NAMES = 65_536
MAX_LOOKUPS = 16
MIN_TTL, MAX_TTL = 60.0, 3600.0
NEGATIVE_TTL = 300.0


class ClientNames:
    def __init__(self) -> None:
        self._local: LocalData | None = None
        self._router: ZoneRouter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # address -> (name or None, time.monotonic() it expires); written on the event loop only
        self._known: dict[str, tuple[str | None, float]] = {}
        self._pending: set[str] = set()  # addresses being looked up
        self._tasks: set[asyncio.Task[None]] = set()

    def configure(self, local: LocalData, router: ZoneRouter) -> None:
        """Use this local data and these forward zones (call on the event loop)."""
        if local is not self._local or router is not self._router:
            self._local, self._router = local, router
            self._known = {}
        self._loop = asyncio.get_running_loop()

    def name(self, address: str) -> str | None:
        """The name of ``address`` as known now; an unknown or expired one is looked up in the background.
        Safe to call from any thread."""
        known = self._known.get(address)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        loop = self._loop
        if loop is not None and address not in self._pending:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server is stopping
                loop.call_soon_threadsafe(self._look_up, address)
        return known[0] if known is not None else None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._loop = None

    # ------------------------------------------------------------------------------------ on the loop

    def _remember(self, address: str, name: str | None, seconds: float) -> None:
        if len(self._known) >= MAX_NAMES:
            self._known = {}
        self._known[address] = (name, time.monotonic() + seconds)

    def _look_up(self, address: str) -> None:
        if address in self._pending or self._local is None or self._router is None:
            return
        known = self._known.get(address)
        if known is not None and known[1] > time.monotonic():
            return
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            self._remember(address, None, math.inf)
            return
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        name = self._local.ptr_name(ip)
        reverse = reverse_name(ip)
        if name is not None or self._router.zone_of(reverse) is None:
            self._remember(address, name, math.inf)  # until a reload brings other local data or zones
            return
        if len(self._pending) >= MAX_LOOKUPS:
            return  # asked again with the next row
        self._pending.add(address)
        task = asyncio.get_running_loop().create_task(self._reverse(address, reverse, self._router))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reverse(self, address: str, reverse: bytes, router: ZoneRouter) -> None:
        name, seconds = None, NEGATIVE_TTL
        try:
            result = await router.resolve(reverse, TYPE_PTR, CLASS_IN, do=False, cd=False)
            question = reverse + TYPE_PTR.to_bytes(2, "big") + CLASS_IN.to_bytes(2, "big")
            names = record_names(question, result.response.reply, TYPE_PTR)
            if names:
                name = dnsname.text_key(names[0].lower())  # odd bytes escaped: the name is printed
                seconds = min(max(float(result.response.ttl or 0), MIN_TTL), MAX_TTL)
        except (UpstreamError, WireError) as err:
            log.debug("reverse lookup of client %s failed: %s", address, err)
        except Exception:  # a bug must not end name lookups for good
            log.exception("reverse lookup of client %s failed", address)
        finally:
            self._pending.discard(address)
        if router is self._router:
            self._remember(address, name, seconds)
