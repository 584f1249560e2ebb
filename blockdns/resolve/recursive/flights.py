"""Coalescing identical resolutions in flight, without the deadlock that coalescing can cause.

Two client questions that need the same NS address share one lookup. But lookups wait on lookups: if the
lookup of ``ns.a.example`` waits on ``ns.b.example`` while another chain has ``ns.b.example`` waiting on
``ns.a.example``, joining would make each wait for the other until the deadline. So every flight records
which flight it is waiting on, and a join that would close a cycle is refused with
:class:`~.machine.DelegationLoop` instead.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from blockdns.resolve.recursive.machine import DelegationLoop

T = TypeVar("T")


@dataclass(slots=True)
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    waiting_on: set[Hashable] = field(default_factory=set)


class Flights(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[Hashable, _Flight[T]] = {}
        self.started = 0
        self.joined = 0

    def __len__(self) -> int:
        return len(self._running)

    async def join(
        self,
        key: Hashable,
        start: Callable[[], Coroutine[Any, Any, T]],
        *,
        waiter: Hashable | None,
        timeout: float,
    ) -> T:
        """Wait for the flight ``key`` (starting it with ``start()`` if none runs) for at most ``timeout``
        seconds. ``waiter`` is the key of the flight that is waiting, if any. The flight itself is never
        cancelled by a waiter giving up: its result still lands in the cache for the next one."""
        flight = self._running.get(key)
        if flight is None:
            flight = _Flight(asyncio.create_task(start()))
            self._running[key] = flight
            flight.task.add_done_callback(functools.partial(self._finished, key))
            self.started += 1
        else:
            if waiter is not None and self._reaches(key, waiter):
                raise DelegationLoop("delegation loop: lookups in flight wait on each other")
            self.joined += 1
        waiting = self._running.get(waiter) if waiter is not None else None
        if waiting is not None:
            waiting.waiting_on.add(key)
        try:
            return await asyncio.wait_for(asyncio.shield(flight.task), timeout)
        finally:
            if waiting is not None:
                waiting.waiting_on.discard(key)

    def cancel_all(self) -> list[asyncio.Task[T]]:
        tasks = [flight.task for flight in self._running.values()]
        for task in tasks:
            task.cancel()
        return tasks

    def _reaches(self, start: Hashable, goal: Hashable) -> bool:
        """True when flight ``start`` is ``goal`` or waits, directly or not, on ``goal``."""
        seen: set[Hashable] = set()
        stack = [start]
        while stack:
            key = stack.pop()
            if key == goal:
                return True
            if key in seen:
                continue
            seen.add(key)
            flight = self._running.get(key)
            if flight is not None:
                stack.extend(flight.waiting_on)
        return False

    def _finished(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is not None and self._running[key].task is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody waited for is not reported as lost
