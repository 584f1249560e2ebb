"""What the admin API and metrics may ask of a running server (implemented by ``server.app.Server``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from blockdns.config import Settings
    from blockdns.ops.cluster import Cluster
    from blockdns.ops.stats import ServerStats
    from blockdns.policy import Decision, Policy


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    message: str


class ServerControl(Protocol):
    stats: ServerStats
    cluster: Cluster | None  # the link to the other replicas; None: no [cluster] redis

    @property
    def settings(self) -> Settings: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def paused_until(self) -> float | None:
        """Wall-clock time (time.time()) when blocking resumes by itself, or None when not paused."""

    def pause(self, seconds: float) -> float:
        """Turn blocking off for ``seconds``; returns the wall-clock time it comes back on."""

    def resume(self) -> None: ...

    async def reload(self) -> ReloadResult:
        """Reload config and lists; a bad config is refused and the old one keeps serving."""

    def check(self, name: str, client: str | None) -> Decision: ...

    def cache_size(self) -> int: ...

    async def refresh_stats(self) -> None:
        """Bring :attr:`stats` up to date before a read (a supervisor asks its worker processes)."""

    def worker_states(self) -> list[dict[str, object]]:
        """One entry per worker process (index, pid, queries answered, restarts); empty: one process."""
