"""Background refreshes of cached answers: prefetches of answers near their expiry, and the refreshes that
follow a stale answer (RFC 8767).

At most one refresh per cache key runs at once (a second asker joins the first), at most
:data:`MAX_REFRESHES` in all, and none for a key whose last refresh failed less than
:data:`FAILURE_RECHECK` seconds ago: RFC 8767's failure recheck, so that a dead upstream is not asked again
for every query while stale data answers. The refreshes belong to the answer cache and live as long as it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from blockdns.resolve.base import Answer, CacheKey

MAX_REFRESHES = 64  # background refreshes at once; past it, stale data answers at once and prefetch waits
FAILURE_RECHECK = 30.0  # RFC 8767 section 5: after a failed refresh, stale data answers this long untried
HOLD_LIMIT = 10_000  # keys remembered as failed; when full, the lapsed holds go (all of them, if none has)


class Refreshes:
    def __init__(self, limit: int = MAX_REFRESHES) -> None:
        self.limit = limit
        self.running: dict[CacheKey, asyncio.Task[Answer | None]] = {}
        self._holds: dict[CacheKey, float] = {}  # key -> instant before which no refresh is tried

    def __len__(self) -> int:
        return len(self.running)

    def held(self, key: CacheKey, now: float) -> bool:
        """True while a failed refresh of ``key`` holds off the next one."""
        until = self._holds.get(key)
        return until is not None and now < until

    def start(
        self, key: CacheKey, coro: Coroutine[Any, Any, Answer | None]
    ) -> asyncio.Task[Answer | None] | None:
        """Run ``coro`` as the refresh of ``key``; None (``coro`` closed) when ``limit`` are running."""
        if len(self.running) >= self.limit:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro)
        self.running[key] = task
        task.add_done_callback(lambda done: self._done(key, done))
        return task

    def _done(self, key: CacheKey, task: asyncio.Task[Answer | None]) -> None:
        if self.running.get(key) is task:
            del self.running[key]

    def failed(self, key: CacheKey, now: float) -> None:
        holds = self._holds
        if len(holds) >= HOLD_LIMIT:
            lapsed = [held for held, until in holds.items() if until <= now]
            for held in lapsed:
                del holds[held]
            if len(holds) >= HOLD_LIMIT:
                holds.clear()
        holds[key] = now + FAILURE_RECHECK

    def succeeded(self, key: CacheKey) -> None:
        self._holds.pop(key, None)

    def forget_failures(self) -> None:
        """Hold nothing off any more (the upstreams that failed have been replaced)."""
        self._holds.clear()

    async def cancel_all(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
