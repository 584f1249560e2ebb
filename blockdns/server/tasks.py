"""A bounded set of tasks that keeps a reference to every task it starts (so none is garbage-collected
mid-flight) and refuses new work past its limit (so a flood cannot exhaust memory), or past one owner's
share of it (so one client cannot take every slot and starve the others)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Hashable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

OWNER_SHARE = 4  # an owner may hold a quarter of the limit


class TaskSet:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: dict[asyncio.Task[Any], Hashable] = {}  # task -> its owner
        self.per_owner: dict[Hashable, int] = {}  # owners with tasks running (at most ``limit`` of them)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def owner_limit(self) -> int:
        return max(1, self.limit // OWNER_SHARE)

    def owner_at_share(self, owner: Hashable) -> bool:
        """True when ``owner`` already runs its share of the limit: refuse its next task."""
        return self.per_owner.get(owner, 0) >= self.owner_limit

    def spawn(self, coro: Coroutine[Any, Any, T], owner: Hashable = None) -> asyncio.Task[T] | None:
        """Start ``coro`` as a task, or close it and return None when ``limit`` tasks are running."""
        if len(self.tasks) >= self.limit:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks[task] = owner
        self.per_owner[owner] = self.per_owner.get(owner, 0) + 1
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        owner = self.tasks.pop(task)
        running = self.per_owner[owner] - 1
        if running:
            self.per_owner[owner] = running
        else:
            del self.per_owner[owner]
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())

    async def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
