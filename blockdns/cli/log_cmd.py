"""``blockdns log`` and ``blockdns stats``: read the query log, also while the server is writing it.

Both read the store the config names: the SQLite file read-only (WAL mode lets them read beside the
writer), or the PostgreSQL database that replicas share. Register them on the app
with :func:`register`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Annotated

import typer

from blockdns.cli.common import ConfigOption, JsonOption, load_settings, printable, user_errors
from blockdns.config import parse_duration
from blockdns.errors import UserError
from blockdns.ops.querylog_open import reader_for
from blockdns.ops.querylog_read import MAX_LIMIT


def _since(text: str | None, option: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError as err:
        raise UserError(f"{option}: {err}") from None


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@user_errors
def log(
    blocked: Annotated[bool, typer.Option("--blocked", help="Only blocked queries.")] = False,
    client: Annotated[
        str | None, typer.Option("--client", help="Only this client (an IP address, or its hash).")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="How far back, e.g. 15m, 1h, 7d.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows (newest).")] = 50,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show recent queries from the query log (oldest of the selection first; --json: newest first)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise UserError(f"--limit: must be from 1 to {MAX_LIMIT}")
    settings = load_settings(config)
    reader = reader_for(settings)
    rows = reader.recent(limit=limit, blocked_only=blocked, client=client, since=_since(since, "--since"))
    if json_output:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no matching queries")
        return
    lines = [_cells(row) for row in reversed(rows)]
    headers = ("time", "client", "group", "name", "type", "outcome", "rcode", "ms", "why")
    for line in columns(headers, lines, right={"ms"}):
        print(line)


def _cells(row: dict[str, object]) -> tuple[str, ...]:
    outcome = row["outcome"]
    if outcome == "blocked":
        why = f"{row['vendor'] or row['rule']} ({row['selector']})" if row["selector"] else row["reason"]
    elif outcome in ("resolved", "cached", "stale"):
        why = row["upstream"]
    else:  # local, refused, error: the reason says it
        why = row["reason"]
    return (
        _when(float(row["ts"])),  # type: ignore[arg-type]
        _client(row) + (f" id={row['client_id']}" if row.get("client_id") else ""),
        str(row["group"]),
        str(row["name"]),
        str(row["qtype"]),
        str(outcome),
        str(row["rcode"]),
        f"{row['duration_ms']:.1f}",
        str(why or ""),
    )


def _client(row: dict[str, object], name_key: str = "client_name") -> str:
    """The client as people know it: ``laptop-anna.home.arpa (192.168.1.23)``, or the address alone."""
    address = str(row["client"] or "-")
    name = row.get(name_key)
    return f"{name} ({address})" if name else address


def columns(
    headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """Aligned plain-text columns, one line per row, nothing cut: easy to read and to grep. Every cell is
    made :func:`printable` first."""
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    out = []
    for cells in (headers, *rows):
        parts = [
            cell.rjust(width) if header in right else cell.ljust(width)
            for header, cell, width in zip(headers, cells, widths, strict=True)
        ]
        out.append("  ".join(parts).rstrip())
    return out


@user_errors
def stats(
    since: Annotated[str, typer.Option("--since", help="The period to summarise, e.g. 1h, 24h, 7d.")] = "24h",
    top: Annotated[int, typer.Option("--top", help="How many vendors, names and clients to list.")] = 10,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Summarise the query log: totals, block rate, top blocked vendors, names and clients."""
    if not 1 <= top <= 1000:
        raise UserError("--top: must be from 1 to 1000")
    settings = load_settings(config)
    reader = reader_for(settings)
    start = _since(since, "--since")
    summary = reader.summary(since=start, top=top)
    if json_output:
        print(json.dumps(summary, indent=2))
        return
    first, rate = summary["since"], summary["block_rate"]
    assert isinstance(first, float) and isinstance(rate, float)
    print(f"since {_when(first)}: {summary['total']} queries, {summary['blocked']} blocked ({rate:.1%})")
    outcomes = summary["by_outcome"]
    if isinstance(outcomes, dict) and outcomes:
        print("  " + printable(", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))))
    vendors = [
        (str(row["vendor"] or "(no vendor)"), str(row["category"] or "-"), str(row["count"]))
        for row in _rows(summary["top_vendors"])
    ]
    names = [
        (str(row["name"]), str(row["vendor"] or "-"), str(row["count"]))
        for row in _rows(summary["top_domains"])
    ]
    clients = [
        (_client(row, "name"), str(row["queries"]), str(row["blocked"]))
        for row in _rows(summary["top_clients"])
    ]
    _top("top blocked vendors", ("vendor", "category", "blocked"), vendors)
    _top("top blocked names", ("name", "vendor", "blocked"), names)
    _top("top clients by blocked queries", ("client", "queries", "blocked"), clients)


def _rows(value: object) -> list[dict[str, object]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _top(title: str, headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    if not rows:
        return
    print()
    print(title)
    for line in columns(headers, rows, right={"blocked", "queries"}):
        print("  " + line)


def register(app: typer.Typer) -> None:
    """Add ``log`` and ``stats`` to the ``blockdns`` app."""
    app.command("log")(log)
    app.command("stats")(stats)
