"""Client names in the query log, ``blockdns log``, ``blockdns stats`` and the API, end to end: one client
named by a hosts file, one by a PTR from the forward zone that covers its address (the "router"), one with
no name; only the router is asked, once per address."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from blockdns.cli.main import app
from blockdns.ops.querylog import QueryLog
from blockdns.ops.querylog_read import QueryLogReader

from conftest import RunningServer, base_config
from fakedns import FakeDNS
from opshelpers import BLOCKED_NAME, NO_FEEDS, TOKEN, http

ANNA, BEN, NOBODY = "127.0.12.23", "127.0.12.24", "127.0.12.25"


@pytest.fixture
def public() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.12.1").answer("www.example.org", "A", "192.0.2.80").start()
    yield fake
    fake.stop()


@pytest.fixture
def router() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.12.3").answer("24.12.0.127.in-addr.arpa", "PTR", "laptop-ben.home.arpa.", ttl=600)
    yield fake.start()
    fake.stop()


def named_config(public: FakeDNS, router: FakeDNS, tmp_path: Path, clients: str = "full") -> dict[str, Any]:
    (tmp_path / "hosts").write_text(f"{ANNA} laptop-anna.home.arpa laptop-anna\n")
    return base_config(
        public,
        policy={"block": ["vendor:deepseek"]},
        lists={"feeds": str(NO_FEEDS)},
        querylog={"path": "var/querylog.sqlite", "clients": clients},
        api={"listen": "127.0.0.1:0", "token": TOKEN},
        local={"hosts_files": ["hosts"]},
        # The router serves the reverse zone of the clients' addresses (inside 127.in-addr.arpa, which is
        # otherwise answered here).
        forward_zones=[{"name": "12.0.127.in-addr.arpa", "upstreams": [router.url]}],
    )


def querylog_of(server: RunningServer) -> QueryLog:
    assert server.server is not None and isinstance(server.server.querylog, QueryLog)
    return server.server.querylog


def ask_from_everyone(server: RunningServer) -> None:
    for client in (ANNA, BEN, NOBODY):
        server.query("www.example.org", source=client)
        server.query(BLOCKED_NAME, source=client)


def names_in_log(server: RunningServer) -> dict[str, set[str | None]]:
    querylog = querylog_of(server)
    assert querylog.flush()
    names: dict[str, set[str | None]] = {}
    for row in querylog.recent(limit=1000):
        names.setdefault(str(row["client"]), set()).add(row["client_name"])  # type: ignore[arg-type]
    return names


def wait_until_named(server: RunningServer, timeout: float = 15.0) -> dict[str, set[str | None]]:
    """Ask until the latest rows carry the names: the first rows of a new client may be written before its
    name is known (names are looked up off the hot path)."""
    deadline = time.monotonic() + timeout
    while True:
        ask_from_everyone(server)
        names = names_in_log(server)
        if "laptop-anna.home.arpa" in names.get(ANNA, set()) and "laptop-ben.home.arpa" in names.get(
            BEN, set()
        ):
            return names
        if time.monotonic() > deadline:
            raise AssertionError(f"the names never reached the log: {names}")
        time.sleep(0.05)


def test_clients_are_named_in_the_log_the_cli_and_the_api(
    start_server: Callable[..., RunningServer], public: FakeDNS, router: FakeDNS, tmp_path: Path
) -> None:
    server = start_server(named_config(public, router, tmp_path))
    names = wait_until_named(server)
    assert names[NOBODY] == {None}
    for _ in range(3):
        ask_from_everyone(server)
    assert querylog_of(server).flush()
    # Only the router was asked, once per address it covers (the answers are cached); never for Anna's,
    # which the hosts file names, and never the public upstream.
    ptrs = [call for call in router.calls if call[1] == "PTR"]
    assert sorted(ptrs) == [
        ("24.12.0.127.in-addr.arpa", "PTR", "udp"),
        ("25.12.0.127.in-addr.arpa", "PTR", "udp"),
    ]
    assert all(call[1] != "PTR" for call in public.calls)

    cli_config = tmp_path / "cli.toml"
    cli_config.write_text('[querylog]\npath = "var/querylog.sqlite"\n')
    result = CliRunner().invoke(app, ["log", "--config", str(cli_config), "--limit", "500"])
    assert result.exit_code == 0, result.output
    assert f"laptop-anna.home.arpa ({ANNA})" in result.stdout
    assert f"laptop-ben.home.arpa ({BEN})" in result.stdout
    assert any(line.split()[2] == NOBODY for line in result.stdout.splitlines()[1:])
    result = CliRunner().invoke(app, ["log", "--json", "--client", BEN, "--config", str(cli_config)])
    rows = json.loads(result.stdout)
    assert rows and rows[0]["client_name"] == "laptop-ben.home.arpa"
    result = CliRunner().invoke(app, ["stats", "--config", str(cli_config)])
    assert result.exit_code == 0 and f"laptop-anna.home.arpa ({ANNA})" in result.stdout

    assert server.server is not None and server.server.api is not None
    url = str(server.server.api.url)  # type: ignore[attr-defined]
    stats = http("GET", url + "/api/stats").json()
    top = {row["client"]: row["name"] for row in stats["querylog"]["summary"]["top_clients"]}
    assert top == {ANNA: "laptop-anna.home.arpa", BEN: "laptop-ben.home.arpa", NOBODY: None}
    rows = http("GET", url + f"/api/querylog?client={ANNA}&limit=1").json()["rows"]
    assert rows[0]["client_name"] == "laptop-anna.home.arpa"


def test_a_log_that_hashes_addresses_stores_no_names(
    start_server: Callable[..., RunningServer], public: FakeDNS, router: FakeDNS, tmp_path: Path
) -> None:
    server = start_server(named_config(public, router, tmp_path, clients="hash"))
    assert server.server is not None
    names = server.server.client_names
    deadline = time.monotonic() + 15
    while names.name(BEN) != "laptop-ben.home.arpa":  # the server knows the names...
        assert time.monotonic() < deadline
        ask_from_everyone(server)
        time.sleep(0.05)
    ask_from_everyone(server)
    assert querylog_of(server).flush()
    reader = QueryLogReader(querylog_of(server).path, "hash")
    assert {row["client_name"] for row in reader.recent(limit=1000)} == {None}  # ...the log keeps none


# The query log as blockdns wrote it before client names (schema 1).
SCHEMA_1 = """
CREATE TABLE queries (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, client TEXT, grp TEXT NOT NULL, qname TEXT NOT NULL,
    qtype INTEGER NOT NULL, outcome TEXT NOT NULL, rcode INTEGER NOT NULL, reason TEXT, rule TEXT,
    selector TEXT, vendor TEXT, category TEXT, upstream TEXT, duration_ms REAL NOT NULL,
    transport TEXT NOT NULL
);
CREATE INDEX queries_ts_outcome ON queries (ts, outcome);
"""


def test_a_log_from_before_client_names_is_upgraded_and_read(tmp_path: Path) -> None:
    import sqlite3

    from blockdns.config import QueryLogSettings

    from opshelpers import FakeControl, row

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1)
    conn.execute(
        "INSERT INTO queries (ts, client, grp, qname, qtype, outcome, rcode, duration_ms, transport)"
        " VALUES (?, '10.0.0.1', 'default', 'old.example', 1, 'resolved', 0, 1.0, 'udp')",
        (time.time() - 60,),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    assert QueryLogReader(path).recent()[0]["client_name"] is None  # read before the upgrade
    querylog = QueryLog(QueryLogSettings(), path, FakeControl().stats)
    querylog.client_names = {"10.0.0.2": "nas.home.arpa"}.get
    querylog.start()
    querylog.offer(row("new.example", client="10.0.0.2"))
    assert querylog.flush()
    querylog.close()
    rows = {r["name"]: r["client_name"] for r in QueryLogReader(path).recent()}
    assert rows == {"old.example": None, "new.example": "nas.home.arpa"}
