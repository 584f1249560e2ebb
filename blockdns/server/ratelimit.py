"""Rate limiting (``[ratelimit]``): a token bucket per client prefix, checked before a UDP query costs
anything.

A client prefix (an IPv4 /``ipv4_prefix``, an IPv6 /``ipv6_prefix``; an IPv4-mapped IPv6 address counts as
its IPv4 address) may have ``client_qps`` queries a second answered, with bursts up to
``capacity = client_qps + (burst or client_qps)``. A query over that is *limited*: every ``slip``-th limited
query gets a bare truncated reply (TC, the question and nothing else, never larger than the query), so a real
client behind a prefix someone spoofs retries over TCP and is answered; the others get silence. The slip count
runs across all limited queries, not per prefix: one counter, and each limited prefix still gets about one
reply in ``slip``.

Only UDP is limited. The limit is against floods from forged sources — reflection of our answers at a
victim, and one prefix crowding out the rest — as in BIND's and Knot's response rate limiting, which also
apply to UDP only: a TCP (or TLS, HTTPS) client has completed a handshake, so its address is real, and it is
already bounded by ``server.tcp_max_per_client`` connections and its share of ``server.max_inflight``. Above
all, TCP is where a slipped client goes for its answer; limiting it from the same bucket would make the slip
useless.

Each bucket is one float, its *due time*, in a one-element list its prefix's addresses share (the generic
cell rate algorithm, which is a token bucket in one number): a query at ``now`` is admitted when
``max(due, now) - now`` is at most ``(capacity - 1) / client_qps``, and then moves ``due`` on by
``1 / client_qps``. A prefix seen for the first time has a full bucket. A bucket whose due time has passed
is full, so forgetting it changes nothing.

The table is bounded (:data:`MAX_BUCKETS`), in two generations of half that each: a prefix is forgotten (and
starts full when it comes back) once it has not been heard from while a whole generation of other prefixes
was (50,000 to 100,000 of them). A flood from many forged prefixes therefore pushes out prefixes that have
gone quiet, not one that keeps sending. The address → bucket memo is bounded too, cleared when full and with
each new generation (it only saves recomputing).
"""

from __future__ import annotations

import socket
from math import inf

from blockdns.config import RateLimitSettings
from blockdns.resolve.base import Question
from blockdns.wire import TC, Reply, render

MAX_BUCKETS = 100_000  # client prefixes remembered, in two generations
ADDRESS_MEMO_LIMIT = 65_536  # addresses whose bucket is remembered; a full memo is cleared
# A due time within this much of the limit is inside it: the sums of 1/client_qps a burst adds up are not
# exact in floating point, and a microsecond is far below any interval a configuration can ask for.
SLACK = 1e-6

_V4_MAPPED = bytes(10) + b"\xff\xff"
_V6 = 1 << 128  # set in every IPv6 key, so that no IPv6 prefix has an IPv4 prefix's key
_from_bytes = int.from_bytes
_inet_pton = socket.inet_pton
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6

TRUNCATED = Reply(0, (0, 0, 0), flags=TC)  # NOERROR, no records: "ask again over TCP"


class PrefixKeys:
    """``keys.of(address)``: the key of an address's bucket (its prefix as an int), or None when it is
    exempt."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self._v4_shift = 32 - settings.ipv4_prefix
        self._v6_shift = 128 - settings.ipv6_prefix
        # (is IPv6, network as an int, mask as an int) per exempt network
        self._exempt = [
            (net.version == 6, int(net.network_address), int(net.netmask))
            for net in settings.exempt_networks()
        ]

    def of(self, address: str) -> int | None:
        try:
            if ":" in address:
                packed = _inet_pton(_AF_INET6, address.split("%", 1)[0])
                is_v6 = packed[:12] != _V4_MAPPED
                value = _from_bytes(packed if is_v6 else packed[12:])
            else:
                is_v6, value = False, _from_bytes(_inet_pton(_AF_INET, address))
        except OSError:  # not an address (a socket never gives one): nothing to key a bucket on
            return None
        for exempt_v6, network, mask in self._exempt:
            if exempt_v6 == is_v6 and value & mask == network:
                return None
        return _V6 | (value >> self._v6_shift) if is_v6 else value >> self._v4_shift


Bucket = list[float]  # [due]: when the bucket is full again; one list per prefix, shared by its addresses


class Buckets(dict[str, Bucket | None]):
    """``buckets[address]``: the bucket of the address's prefix, or None when the address is exempt.

    The prefixes' buckets are kept in two generations: a prefix not in the current one is taken over from
    the older one, or gets a full bucket; a full generation becomes the older one and the older one is
    forgotten. So the table is bounded and keeps every prefix heard from at least once a generation, with
    no reordering per query (an LRU's move costs a cache hit about 70 ns more). The dict itself remembers
    which bucket each address uses (bounded, cleared when full, and at every new generation, so that an
    address only ever points at a bucket of the current one). A dict subclass, so that a known address, the
    common case, is one C-level subscript."""

    def __init__(self, settings: RateLimitSettings, max_buckets: int) -> None:
        super().__init__()
        self.prefix_keys = PrefixKeys(settings)
        self.generation_size = max(1, max_buckets // 2)
        self.current: dict[int, Bucket] = {}
        self.older: dict[int, Bucket] = {}

    def prefixes(self) -> int:
        return len(self.current) + len(self.older)

    def __missing__(self, address: str) -> Bucket | None:
        key = self.prefix_keys.of(address)
        bucket = None
        if key is not None:
            bucket = self.current.get(key)
            if bucket is None:
                bucket = self.older.pop(key, None)
                if len(self.current) >= self.generation_size:
                    self.older, self.current = self.current, {}
                    self.clear()
                if bucket is None:
                    bucket = [-inf]  # due long ago: full
                self.current[key] = bucket
        if len(self) >= ADDRESS_MEMO_LIMIT:
            self.clear()
        self[address] = bucket
        return bucket


class RateLimiter:
    __slots__ = ("_since_slip", "buckets", "interval", "limit", "settings", "slip")

    def __init__(self, settings: RateLimitSettings, max_buckets: int = MAX_BUCKETS) -> None:
        if settings.client_qps <= 0:
            raise ValueError("a rate limiter needs client_qps > 0")
        self.settings = settings
        self.buckets = Buckets(settings, max_buckets)
        self.interval = 1.0 / settings.client_qps
        self.limit = (settings.capacity - 1) * self.interval + SLACK  # how far ahead a due time may run
        self.slip = settings.slip
        self._since_slip = 0  # limited queries since the last one that slipped

    def __len__(self) -> int:
        return self.buckets.prefixes()

    def admit(self, address: str, now: float) -> bool:
        """Whether a query from ``address`` at ``now`` may be answered; an admitted one takes a token."""
        bucket = self.buckets[address]
        if bucket is None:
            return True
        due = bucket[0]
        if due < now:  # full
            bucket[0] = now + self.interval
            return True
        if due - now > self.limit:
            return False
        bucket[0] = due + self.interval
        return True

    def slips(self) -> bool:
        """Whether this limited query gets a truncated reply (every ``slip``-th does) rather than silence."""
        slip = self.slip
        if not slip:
            return False
        self._since_slip += 1
        if self._since_slip < slip:
            return False
        self._since_slip = 0
        return True


def truncated_reply(data: bytes, question: Question) -> bytes:
    """The slip: the query's ID, flags it echoes, its question and (when it had EDNS) a bare OPT record, with
    TC set and no records. Never larger than the query, so it amplifies nothing."""
    qid = (data[0] << 8) | data[1]
    return render(qid, question.flags, question.raw, TRUNCATED, 0, question.payload, question.do, 65535)
