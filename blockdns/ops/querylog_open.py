"""The query-log reader for the store a configuration names (``blockdns log``, ``blockdns stats``)."""

from __future__ import annotations

from blockdns.config import Settings
from blockdns.ops.clientid import QueryLogError
from blockdns.ops.querylog_read import QueryLogReader


def reader_for(settings: Settings) -> QueryLogReader:
    """SQLite for a file path, PostgreSQL for a ``postgresql://`` URL; QueryLogError when the log is off."""
    if settings.querylog.is_postgres():
        from blockdns.ops.querylog_pg_read import PostgresQueryLogReader  # psycopg only when it is used

        return PostgresQueryLogReader(settings.querylog.path, settings.querylog.clients)
    path = settings.querylog_path()
    if path is None:
        where = settings.source or "the built-in defaults"
        raise QueryLogError(f"{where}: the query log is off ([querylog] path is empty)")
    return QueryLogReader(path, settings.querylog.clients)
