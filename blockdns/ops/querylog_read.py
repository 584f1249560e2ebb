"""Reading the query log: recent rows and a summary, over a read-only connection of their own.

Used by the admin API (inside the server, from a worker thread) and by ``blockdns log`` / ``blockdns stats``
(another process, while the server writes). WAL mode means neither ever waits for the writer.
"""

from __future__ import annotations

import ipaddress
import math
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from blockdns.ops.clientid import HASH_CHARS, ClientMasker, ClientMode, QueryLogError
from blockdns.ops.labels import qtype_name, rcode_name
from blockdns.ops.querylog_db import open_reader

MAX_LIMIT = 10_000
TOP = 10
SERIES_POINTS = 60
# Bucket widths the time series picks from, seconds: the smallest giving at most SERIES_POINTS buckets.
BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 7 * 86400)

_HASH = re.compile(f"[0-9a-f]{{{HASH_CHARS}}}")

COLUMNS = (
    "ts, client, grp, qname, qtype, outcome, rcode, reason, rule, selector, vendor, category, upstream,"
    " duration_ms, transport, client_name, client_id"
)
# A log that an older server wrote and has not upgraded yet: no client IDs (schemas 2 and 3), and no client
# names either (schema 1).
COLUMNS_V3 = COLUMNS.replace("client_id", "NULL")
COLUMNS_V1 = COLUMNS_V3.replace("client_name", "NULL")


def bucket_width(span: float, points: int = SERIES_POINTS) -> int:
    for width in BUCKETS:
        if span / width <= points:
            return width
    return BUCKETS[-1]


def canonical_address(text: str) -> str:
    """``::FFFF:0:1`` and ``::ffff:0:1`` are one client; anything that is not an IP stays as written."""
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        return text.strip()


class QueryLogReader:
    """Reads the SQLite log. A store's subclass (PostgreSQL's) changes the connection and the SQL text
    below, which is what differs between the two; the shaping of the answers is shared."""

    MARK = "?"  # the driver's parameter placeholder
    SQL_RECENT = "SELECT {columns} FROM queries{where} ORDER BY ts DESC, id DESC LIMIT ?"
    SQL_FIRST_TS = "SELECT MIN(ts) FROM queries"
    SQL_BUCKETS = (
        "SELECT CAST(ts / ? AS INTEGER) AS b, outcome, COUNT(*) FROM queries"
        " INDEXED BY {ts_index} WHERE ts >= ? GROUP BY b, outcome"
    )
    _BLOCKED_ROWS = "FROM queries INDEXED BY queries_blocked_ts WHERE outcome = 'blocked' AND ts >= ?"
    SQL_TOP_VENDORS = (
        f"SELECT vendor, category, COUNT(*) AS n {_BLOCKED_ROWS} GROUP BY vendor, category"
        " ORDER BY n DESC, vendor LIMIT ?"
    )
    SQL_TOP_DOMAINS = (
        f"SELECT qname, vendor, COUNT(*) AS n {_BLOCKED_ROWS} GROUP BY qname ORDER BY n DESC, qname LIMIT ?"
    )
    SQL_TOP_CLIENTS = (
        f"SELECT client, COUNT(*) AS n {_BLOCKED_ROWS} AND client IS NOT NULL GROUP BY client"
        " ORDER BY n DESC, client LIMIT ?"
    )
    # The top clients' queries and names, {marks} one MARK per client. Each is one pass over the period in
    # the index by time, which holds client and client_name.
    SQL_CLIENTS_QUERIES = (
        "SELECT client, COUNT(*) FROM queries WHERE ts >= ? AND client IN ({marks}) GROUP BY client"
    )
    # The most recent name of each: with max(), SQLite takes the other columns from the row holding the max.
    SQL_CLIENTS_NAMES = (
        "SELECT client, client_name, MAX(ts) FROM queries"
        " WHERE ts >= ? AND client IN ({marks}) AND client_name IS NOT NULL GROUP BY client"
    )

    def __init__(self, path: Path, clients: ClientMode = "full") -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.clients = clients

    def _connect(self) -> Any:
        return open_reader(self.path)

    def _columns(self, conn: Any) -> str:
        version = self._version(conn)
        return COLUMNS if version >= 4 else COLUMNS_V3 if version >= 2 else COLUMNS_V1

    def _version(self, conn: Any) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _buckets_sql(self, conn: Any) -> str:
        """SQL_BUCKETS on the index by time that covers outcome: a log an older server wrote and has not
        upgraded yet has the one schema 2 had."""
        index = "queries_by_ts" if self._version(conn) >= 3 else "queries_ts_outcome"
        return self.SQL_BUCKETS.format(ts_index=index)

    def _hash_masker(self) -> ClientMasker:
        """The masker with the log's client hash key; QueryLogError when the key cannot be read."""
        return ClientMasker.for_database("hash", self.path, create=False)

    def _client_values(self, client: str) -> tuple[str, ...]:
        """What a ``client`` filter matches: the address, and its keyed hash when the log stores hashes."""
        address = canonical_address(client)
        if self.clients == "none":
            raise QueryLogError('the query log stores no client addresses ([querylog] clients = "none")')
        if self.clients == "hash":
            given = client.strip()
            try:
                masker = self._hash_masker()
            except QueryLogError:
                if _HASH.fullmatch(given):
                    return (given,)  # a hash copied from the log needs no key
                raise
            # The address, its hash, or a hash pasted from earlier output.
            candidates = (address, masker.mask(address), given)
            return tuple(dict.fromkeys(c for c in candidates if c is not None))
        return (address,)

    # ---------------------------------------------------------------------------------------- recent rows

    def recent(
        self,
        limit: int = 100,
        blocked_only: bool = False,
        client: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, object]]:
        """The newest rows first, at most ``limit`` (1..10000)."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        where, params = self._filters(blocked_only, client, since)
        with closing(self._connect()) as conn:
            sql = self.SQL_RECENT.format(columns=self._columns(conn), where=where)
            rows = self._fetch(conn, sql, (*params, limit))
        return [row_to_json(row) for row in rows]

    def _filters(
        self, blocked_only: bool, client: str | None, since: float | None
    ) -> tuple[str, tuple[object, ...]]:
        clauses: list[str] = []
        params: list[object] = []
        if blocked_only:
            clauses.append("outcome = 'blocked'")
        if client:
            values = self._client_values(client)
            clauses.append(f"client IN ({', '.join(self.MARK for _ in values)})")
            params.extend(values)
        if since is not None:
            clauses.append(f"ts >= {self.MARK}")
            params.append(since)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    def _fetch(self, conn: Any, sql: str, params: tuple[object, ...]) -> list[tuple]:
        try:
            return conn.execute(sql, params).fetchall()  # type: ignore[no-any-return]
        except sqlite3.Error as err:
            raise QueryLogError(f"{self.path}: cannot read the query log: {err}", exit_code=1) from None

    # -------------------------------------------------------------------------------------------- summary

    def summary(
        self, since: float | None = None, top: int = TOP, points: int = SERIES_POINTS
    ) -> dict[str, object]:
        """Totals, block rate, top blocked vendors/names/clients and a queries/blocked time series.

        Shaped for a big log (a million rows a day): one pass over the covering (ts, outcome) index for the
        totals and the series, and the partial index of blocked rows for the top lists.
        """
        now = time.time()
        with closing(self._connect()) as conn:
            if since is None:
                first = self._fetch(conn, self.SQL_FIRST_TS, ())[0][0]
                start = float(first) if first is not None else now
            else:
                start = since
            width = bucket_width(max(now - start, 1.0), points)
            buckets = self._fetch(conn, self._buckets_sql(conn), (width, start))
            vendors = self._fetch(conn, self.SQL_TOP_VENDORS, (start, top))
            domains = self._fetch(conn, self.SQL_TOP_DOMAINS, (start, top))
            clients = self._fetch(conn, self.SQL_TOP_CLIENTS, (start, top))
            queries, names = self._clients(conn, [client for client, _ in clients], start)
            top_clients = [
                {
                    "client": client,
                    "name": names.get(client),
                    "queries": queries.get(client, 0),
                    "blocked": blocked,
                }
                for client, blocked in clients
            ]
        by_outcome: dict[str, int] = {}
        for _, outcome, count in buckets:
            by_outcome[outcome] = by_outcome.get(outcome, 0) + count
        total = sum(by_outcome.values())
        blocked = by_outcome.get("blocked", 0)
        return {
            "since": start,
            "until": now,
            "total": total,
            "blocked": blocked,
            "block_rate": blocked / total if total else 0.0,
            "by_outcome": by_outcome,
            "top_vendors": [
                {"vendor": vendor, "category": category, "count": count}
                for vendor, category, count in vendors
            ],
            "top_domains": [
                {"name": name, "vendor": vendor, "count": count} for name, vendor, count in domains
            ],
            "top_clients": top_clients,
            "series": _series(buckets, width, start, now),
        }

    def _clients(
        self, conn: Any, clients: list[str], since: float
    ) -> tuple[dict[str, int], dict[str, str | None]]:
        """Each client's queries in the period, and its most recent name there when a row has one."""
        if not clients:
            return {}, {}
        marks = ", ".join(self.MARK for _ in clients)
        params = (since, *clients)
        queries = dict(self._fetch(conn, self.SQL_CLIENTS_QUERIES.format(marks=marks), params))
        names: dict[str, str | None] = {}
        if self._columns(conn) is not COLUMNS_V1:
            rows = self._fetch(conn, self.SQL_CLIENTS_NAMES.format(marks=marks), params)
            names = {row[0]: row[1] for row in rows}
        return queries, names


def _series(rows: list[tuple], width: int, start: float, now: float) -> dict[str, object]:
    """Rows of (bucket, outcome, count) as one point per bucket from ``start`` to ``now``, gaps as zeros."""
    counts: dict[int, list[int]] = {}
    for bucket, outcome, count in rows:
        point = counts.setdefault(int(bucket), [0, 0])
        point[0] += count
        if outcome == "blocked":
            point[1] += count
    # Every row is at or after start; rows stamped in the future (a clock stepped back) stay out.
    first, last = math.floor(start / width), math.floor(now / width)
    points = []
    for bucket in range(first, last + 1):
        queries, blocked = counts.get(bucket, (0, 0))
        points.append({"ts": bucket * width, "queries": queries, "blocked": blocked})
    return {"bucket_seconds": width, "points": points}


def row_to_json(row: tuple) -> dict[str, object]:
    (ts, client, group, qname, qtype, outcome, rcode, reason, rule, selector, vendor, category, upstream,
     duration_ms, transport, client_name, client_id) = row  # fmt: skip
    return {
        "ts": ts,
        "client": client,
        "client_name": client_name,
        "group": group,
        "name": qname,
        "qtype": qtype_name(qtype),
        "outcome": outcome,
        "rcode": rcode_name(rcode),
        "reason": reason,
        "rule": rule,
        "selector": selector,
        "vendor": vendor,
        "category": category,
        "upstream": upstream,
        "duration_ms": round(duration_ms, 3),
        "transport": transport,
        "client_id": client_id,
    }
