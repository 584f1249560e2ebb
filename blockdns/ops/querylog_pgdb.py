"""The query log's PostgreSQL schema, shared by every replica that names the same database.

One table like the SQLite one plus the ``replica`` that wrote each row; a schema version table; and the
client hash key, stored in the database so every replica hashes a client to the same value. Two replicas
starting at once create the schema one after the other (a transaction-scoped advisory lock).
"""

from __future__ import annotations

import secrets
from typing import Any

import psycopg

from blockdns.ops.clientid import KEY_BYTES, ClientMasker, ClientMode, QueryLogError

SCHEMA_VERSION = 1
TABLE = "blockdns_queries"
# Advisory lock keys (any bigint; these spell "blockdns" and a role): schema creation, and trimming/purging,
# so two replicas never delete the same rows at once.
SCHEMA_LOCK = 0x626C6B64_6E730001
TRIM_LOCK = 0x626C6B64_6E730002
CONNECT_TIMEOUT = 5  # seconds; a database that does not answer must not hold the writer or a CLI long

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS blockdns_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS {TABLE} (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts          double precision NOT NULL,
    client      text,
    grp         text NOT NULL,
    qname       text NOT NULL,
    qtype       integer NOT NULL,
    outcome     text NOT NULL,
    rcode       integer NOT NULL,
    reason      text,
    rule        text,
    selector    text,
    vendor      text,
    category    text,
    upstream    text,
    duration_ms double precision NOT NULL,
    transport   text NOT NULL,
    client_name text,
    replica     text NOT NULL
);
-- Added later, nullable: a replica that does not know it still writes (its COPY names its columns).
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS client_id text;
CREATE INDEX IF NOT EXISTS {TABLE}_ts_outcome ON {TABLE} (ts, outcome);
CREATE INDEX IF NOT EXISTS {TABLE}_blocked_ts ON {TABLE} (ts) WHERE outcome = 'blocked';
CREATE INDEX IF NOT EXISTS {TABLE}_client_ts ON {TABLE} (client, ts);
CREATE TABLE IF NOT EXISTS blockdns_client_key (
    id  integer PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL
);
"""

COPY = (
    f"COPY {TABLE} (ts, client, grp, qname, qtype, outcome, rcode, reason, rule, selector, vendor, category,"
    " upstream, duration_ms, transport, client_name, client_id, replica) FROM STDIN"
)


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, application_name="blockdns", **kwargs)


def open_writer(url: str) -> psycopg.Connection[Any]:
    """Connect (autocommit: each batch is its own transaction) with the schema in place."""
    conn = connect(url, autocommit=True)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(SCHEMA)
            row = conn.execute("SELECT max(version) FROM blockdns_schema").fetchone()
            version = row[0] if row else None
            if version is None:
                conn.execute("INSERT INTO blockdns_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise psycopg.DataError(f"the query log's schema {version} is newer than this blockdns reads")
    except BaseException:
        conn.close()
        raise
    return conn


def writer_masker(conn: psycopg.Connection[Any], mode: ClientMode) -> ClientMasker:
    """The masker for ``mode``; in hash mode the key is the database's, created by the first replica."""
    if mode != "hash":
        return ClientMasker(mode)
    conn.execute(
        "INSERT INTO blockdns_client_key (id, key) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
        (secrets.token_bytes(KEY_BYTES),),
    )
    return ClientMasker(mode, read_key(conn))


def read_key(conn: psycopg.Connection[Any]) -> bytes:
    row = conn.execute("SELECT key FROM blockdns_client_key WHERE id = 1").fetchone()
    if row is None:
        raise QueryLogError("the query log has no client hash key yet", exit_code=1)
    return bytes(row[0])
