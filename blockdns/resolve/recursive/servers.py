"""What the resolver knows about each authoritative server address, after Unbound's infra cache
(``services/cache/infra.c``, ``util/rtt.c``).

* A smoothed round-trip time and its variance (Jacobson/Karels, as TCP does: :mod:`blockdns.resolve.rtt`)
  give the retransmission timeout: ``srtt + 4 * rttvar``, never below ``MIN_RTO``.
* A timeout doubles the server's RTO (exponential backoff, capped at ``MAX_RTO``), so a slow or dying server
  sinks in the ranking; a reply resets the backoff.
* After ``HOLD_AFTER_FAILURES`` failures in a row the server is held (skipped while others are left) for a
  period that doubles with each further failure, up to ``MAX_HOLD``.
* A server that answered "not my zone" (REFUSED, upward referral) is lame for that zone for ``LAME_TTL``.
* A server that rejected EDNS (FORMERR/NOTIMP) is asked without it from then on.

Servers are picked at random among those whose expected RTT is within ``RTT_BAND`` of the best, so load
spreads over equally good servers while slow ones are avoided. Time is passed in; no clock is read here.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

from blockdns.resolve.rtt import retransmission_timeout, smoothed

ServerAddress = tuple[str, int]  # (IP, port)

MAX_RTO = 120.0  # as Unbound's USEFUL_SERVER_TOP_TIMEOUT
UNKNOWN_RTT = 0.376  # the rank of a never-asked server (Unbound's UNKNOWN_SERVER_NICENESS)
UNKNOWN_TIMEOUT = 1.0  # how long to wait for a never-asked server (capped by settings.timeout)
RTT_BAND = 0.1
HOLD_AFTER_FAILURES = 3
FIRST_HOLD = 30.0
MAX_HOLD = 900.0
LAME_TTL = 900.0
MAX_SERVERS = 10_000  # addresses remembered; the least recently used are forgotten


@dataclass(slots=True)
class ServerState:
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = UNKNOWN_TIMEOUT
    failures: int = 0  # in a row
    held_until: float = 0.0
    no_edns: bool = False
    lame_zones: dict[bytes, float] | None = None  # zone -> until when


class ServerTable:
    def __init__(self, *, max_timeout: float, max_servers: int = MAX_SERVERS) -> None:
        self.max_timeout = max_timeout
        self.max_servers = max_servers
        self._servers: OrderedDict[ServerAddress, ServerState] = OrderedDict()

    def state(self, server: ServerAddress) -> ServerState:
        state = self._servers.get(server)
        if state is None:
            state = self._servers[server] = ServerState(rto=min(UNKNOWN_TIMEOUT, self.max_timeout))
            while len(self._servers) > self.max_servers:
                self._servers.popitem(last=False)
        else:
            self._servers.move_to_end(server)
        return state

    def known(self, server: ServerAddress) -> ServerState | None:
        return self._servers.get(server)

    # ---------------------------------------------------------------------------------- observations

    def record_reply(self, server: ServerAddress, rtt: float) -> None:
        state = self.state(server)
        state.srtt, state.rttvar = smoothed(state.srtt, state.rttvar, rtt)
        state.rto = retransmission_timeout(state.srtt, state.rttvar, MAX_RTO)
        state.failures = 0
        state.held_until = 0.0

    def record_failure(self, server: ServerAddress, now: float) -> None:
        """A timeout or a network error: back off, and hold the server after repeated failures."""
        state = self.state(server)
        state.rto = min(state.rto * 2, MAX_RTO)
        state.failures += 1
        if state.failures >= HOLD_AFTER_FAILURES:
            hold = min(FIRST_HOLD * 2 ** (state.failures - HOLD_AFTER_FAILURES), MAX_HOLD)
            state.held_until = now + hold

    def record_lame(self, server: ServerAddress, zone: bytes, now: float) -> None:
        state = self.state(server)
        if state.lame_zones is None:
            state.lame_zones = {}
        if len(state.lame_zones) >= 64:  # bounded: forget the oldest
            state.lame_zones.pop(next(iter(state.lame_zones)))
        state.lame_zones[zone] = now + LAME_TTL

    def record_no_edns(self, server: ServerAddress) -> None:
        self.state(server).no_edns = True

    # --------------------------------------------------------------------------------------- choices

    def wants_edns(self, server: ServerAddress) -> bool:
        state = self._servers.get(server)
        return state is None or not state.no_edns

    def timeout(self, server: ServerAddress) -> float:
        state = self._servers.get(server)
        rto = state.rto if state is not None else UNKNOWN_TIMEOUT
        return min(rto, self.max_timeout)

    def usable(self, server: ServerAddress, zone: bytes, now: float) -> bool:
        """False while the server is held after failures or known lame for ``zone``."""
        state = self._servers.get(server)
        if state is None:
            return True
        if state.held_until > now:
            return False
        return not (state.lame_zones and state.lame_zones.get(zone, 0.0) > now)

    def expected_rtt(self, server: ServerAddress) -> float:
        state = self._servers.get(server)
        if state is None or state.srtt is None:
            return UNKNOWN_RTT if state is None or not state.failures else state.rto
        return state.srtt if not state.failures else state.rto

    def choose(self, candidates: list[ServerAddress], rng: random.Random) -> ServerAddress | None:
        """Pick among ``candidates`` at random within ``RTT_BAND`` of the fastest."""
        if not candidates:
            return None
        ranked = sorted(candidates, key=self.expected_rtt)
        best = self.expected_rtt(ranked[0])
        band = [server for server in ranked if self.expected_rtt(server) <= best + RTT_BAND]
        return rng.choice(band)
