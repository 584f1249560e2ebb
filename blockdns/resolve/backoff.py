"""A hold on connecting to an upstream that just failed to connect (refused, unreachable, a handshake or
certificate that failed): for a while every query to it fails at once with that error, 1 s after the first
failure, doubling with each one that follows up to 30 s, until a connection succeeds. So an upstream with a
wrong certificate costs one handshake per hold, not one per query, and the forwarder moves on to the next."""

from __future__ import annotations

import logging

from blockdns.errors import UpstreamError

log = logging.getLogger(__name__)

FIRST, MAX = 1.0, 30.0  # seconds


class ConnectBackoff:
    __slots__ = ("error", "failures", "until")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0
        self.error: UpstreamError | None = None

    def check(self, now: float) -> None:
        """Raise the last connection error while the hold lasts."""
        if self.error is not None and now < self.until:
            raise self.error

    def failed(self, error: UpstreamError, now: float) -> None:
        self.failures += 1
        hold = min(FIRST * 2 ** (self.failures - 1), MAX)
        self.until, self.error = now + hold, error
        log.warning("%s; refusing queries to it for %.0f s", error, hold)

    def succeeded(self) -> None:
        self.failures, self.error = 0, None
