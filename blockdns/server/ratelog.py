"""A logger wrapper that writes at most one line per interval and says how many it held back, so a flood
of bad packets produces a trickle of log lines, not one per packet."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self._last = -interval
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        self._log(logging.WARNING, message, args, exc_info=False)

    def error(self, message: str, *args: object, exc_info: bool = False) -> None:
        self._log(logging.ERROR, message, args, exc_info=exc_info)

    def _log(self, level: int, message: str, args: tuple[object, ...], *, exc_info: bool) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" (and {self._suppressed} more like it in the last {self.interval:.0f}s)"
        self._last = now
        self._suppressed = 0
        self.logger.log(level, message, *args, exc_info=exc_info)
