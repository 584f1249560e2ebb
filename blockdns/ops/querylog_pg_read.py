"""Reading the query log from PostgreSQL: the SQLite reader's queries in PostgreSQL's dialect.

The answers are the SQLite reader's, row for row: NULLs sort first and text sorts bytewise (``COLLATE "C"``),
as in SQLite. Each call opens a read-only connection of its own and closes it.
"""

from __future__ import annotations

from typing import Any

import psycopg

from blockdns.logstore import redact, scrub
from blockdns.ops.clientid import ClientMasker, ClientMode, QueryLogError
from blockdns.ops.querylog_pgdb import TABLE, connect, read_key
from blockdns.ops.querylog_read import COLUMNS, COLUMNS_V3, QueryLogReader

_BLOCKED_ROWS = f"FROM {TABLE} WHERE outcome = 'blocked' AND ts >= %s"


class PostgresQueryLogReader(QueryLogReader):
    MARK = "%s"
    SQL_RECENT = f"SELECT {{columns}} FROM {TABLE}{{where}} ORDER BY ts DESC, id DESC LIMIT %s"
    SQL_FIRST_TS = f"SELECT min(ts) FROM {TABLE}"
    SQL_BUCKETS = (
        f"SELECT floor(ts / %s)::bigint AS b, outcome, count(*) FROM {TABLE}"
        " WHERE ts >= %s GROUP BY b, outcome"
    )
    SQL_TOP_VENDORS = (
        f"SELECT vendor, category, count(*) AS n {_BLOCKED_ROWS} GROUP BY vendor, category"
        ' ORDER BY n DESC, vendor COLLATE "C" NULLS FIRST LIMIT %s'
    )
    SQL_TOP_DOMAINS = (
        f"SELECT qname, max(vendor), count(*) AS n {_BLOCKED_ROWS} GROUP BY qname"
        ' ORDER BY n DESC, qname COLLATE "C" LIMIT %s'
    )
    SQL_TOP_CLIENTS = (
        f"SELECT client, count(*) AS n {_BLOCKED_ROWS} AND client IS NOT NULL GROUP BY client"
        ' ORDER BY n DESC, client COLLATE "C" LIMIT %s'
    )
    SQL_CLIENTS_QUERIES = (
        f"SELECT client, count(*) FROM {TABLE} WHERE ts >= %s AND client IN ({{marks}}) GROUP BY client"
    )
    SQL_CLIENTS_NAMES = (
        f"SELECT DISTINCT ON (client) client, client_name FROM {TABLE}"
        " WHERE ts >= %s AND client IN ({marks}) AND client_name IS NOT NULL ORDER BY client, ts DESC"
    )

    def __init__(self, url: str, clients: ClientMode = "full") -> None:
        self.url = url
        self.location = redact(url)
        self.clients = clients

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = connect(self.url)
        except psycopg.Error as err:
            raise self._error(err) from None
        conn.read_only = True
        try:
            found = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
        except psycopg.Error as err:
            conn.close()
            raise self._error(err) from None
        if found is None or found[0] is None:
            conn.close()
            raise QueryLogError(
                f"{self.location}: no query log yet (the server creates it when it starts with the log on)",
                exit_code=1,
            )
        return conn

    def _columns(self, conn: Any) -> str:
        """A table no writer of this version has opened yet has no client_id column."""
        try:
            found = conn.execute(
                "SELECT 1 FROM information_schema.columns"
                " WHERE table_name = %s AND column_name = 'client_id'",
                (TABLE,),
            ).fetchone()
        except psycopg.Error as err:
            raise self._error(err) from None
        return COLUMNS if found else COLUMNS_V3

    def _buckets_sql(self, conn: Any) -> str:
        return self.SQL_BUCKETS

    def _fetch(self, conn: Any, sql: str, params: tuple[object, ...]) -> list[tuple]:
        try:
            return conn.execute(sql, params).fetchall()  # type: ignore[no-any-return]
        except psycopg.Error as err:
            raise self._error(err) from None

    def _hash_masker(self) -> ClientMasker:
        conn = self._connect()
        try:
            return ClientMasker("hash", read_key(conn))
        except psycopg.Error as err:
            raise self._error(err) from None
        finally:
            conn.close()

    def _error(self, err: psycopg.Error) -> QueryLogError:
        reason = scrub(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__, self.url)
        return QueryLogError(f"{self.location}: cannot read the query log: {reason}", exit_code=1)
