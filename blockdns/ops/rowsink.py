"""Where the accounting hands each answered query's row: the query log's writer
(:class:`~blockdns.ops.querylog.QueryLogWriter`) in a single-process server, or a worker process's
:class:`~blockdns.server.workerlink.ChannelSink`, which sends its rows to the supervisor's one writer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from blockdns.ops.querylog import RowValues


class RowSink(Protocol):
    def offer(self, row: RowValues) -> None:
        """Take ``row`` without waiting; when full, drop it and count the drop in ``log_dropped``."""
