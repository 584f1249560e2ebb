"""The SQLite query log alone, without DNS: the writer process's CPU per row, and the readers' latency.

``writer``: CPU µs per row of the writer process's store (:class:`SQLiteStore.write`: records built, one
``executemany`` per 1000-row batch) into a log already holding ``--prefill`` rows, for 1 and 200 clients.

``readers --rows N``: builds (once) an N-row log spread over the last day, 200 clients plus one rare one,
5 % blocked, then times what ``blockdns log`` and ``blockdns stats`` / the API run on it, best of
``--repeat``; ``--dump FILE`` writes every answer (the clock pinned) so two checkouts' answers can be
compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from blockdns.config import QueryLogSettings
from blockdns.dnsname import from_text
from blockdns.ops import querylog_read
from blockdns.ops.querylog_read import QueryLogReader
from blockdns.ops.querylog_store import SQLiteStore

BATCH = 1000
NOW = 1_790_000_000.0  # the readers' clock, pinned: the answers depend on it
RARE = "10.9.9.9"


def client_address(index: int) -> str:
    return f"192.168.{index // 250}.{index % 250 + 1}"


def rows(count: int, start: float, span: float, clients: int, seed: int = 1) -> list[tuple[object, ...]]:
    """Rows as the server sends them to the writer process (decisions already spelled out)."""
    rnd = random.Random(seed)
    addresses = [client_address(i) for i in range(clients)]
    names = [from_text(f"host{i}.example{i % 97}.com") for i in range(5000)]
    spelled = ("vendor", "example.com", "vendor:x", "x", "ai")
    out: list[tuple[object, ...]] = []
    for i in range(count):
        draw = rnd.random()
        client = RARE if i % 100_000 == 7 else rnd.choice(addresses)
        if draw < 0.05:
            fields = ("blocked", 3, spelled, None)
        elif draw < 0.2:
            fields = ("resolved", 0, None, "1.1.1.1:53")
        else:
            fields = ("cached", 0, None, None)
        outcome, rcode, decision, upstream = fields
        ts = start + span * i / count
        out.append(
            (
                ts,
                client,
                "default",
                rnd.choice(names),
                1,
                outcome,
                rcode,
                None,
                decision,
                upstream,
                0.123,
                "udp",
            )
        )
    return out


def fill(store: SQLiteStore, data: list[tuple[object, ...]], names: dict[str, str | None]) -> None:
    for i in range(0, len(data), BATCH):
        store.write(data[i : i + BATCH], names)  # type: ignore[arg-type]


def writer(prefill: int, measure: int) -> None:
    for clients in (1, 200):
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(QueryLogSettings(max_rows=0), Path(tmp) / "q.sqlite")
            data = rows(prefill + measure, time.time() - 3600, 3600, clients)
            fill(store, data[:prefill], {})
            start = time.process_time()
            fill(store, data[prefill:], {})
            used = time.process_time() - start
            store.close()
        print(f"writer, {clients:3} clients: {used / measure * 1e6:5.2f} µs CPU per row ({measure} rows)")


def readers(path: Path, count: int, repeat: int, dump: Path | None) -> None:
    if not path.exists():
        store = SQLiteStore(QueryLogSettings(max_rows=0), path)
        names = {client_address(i): f"host-{i}" for i in range(0, 200, 3)}
        fill(store, rows(count, NOW - 86400, 86400 - 60, 200), names)
        store.close()
    reader = QueryLogReader(path)
    frequent = client_address(5)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("log (newest 100)", lambda: reader.recent(100)),
        ("log --blocked", lambda: reader.recent(100, blocked_only=True)),
        ("log --client frequent", lambda: reader.recent(100, client=frequent)),
        ("log --client rare (10 rows)", lambda: reader.recent(100, client=RARE)),
        ("log --client absent", lambda: reader.recent(100, client="10.1.2.3")),
        ("log --since 1h", lambda: reader.recent(100, since=NOW - 3600)),
        ("log --since 1h --client frequent", lambda: reader.recent(100, client=frequent, since=NOW - 3600)),
        ("log --limit 10000", lambda: reader.recent(10_000)),
        ("stats (whole log)", lambda: reader.summary()),
        ("stats --since 1h", lambda: reader.summary(since=NOW - 3600)),
    ]
    answers = {}
    with mock.patch.object(querylog_read.time, "time", return_value=NOW):
        for label, run in cases:
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                answers[label] = run()
                best = min(best, time.perf_counter() - start)
            print(f"{label:34} {best * 1000:8.1f} ms")
    if dump is not None:
        dump.write_text(json.dumps(answers, indent=1, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("writer", "readers"))
    parser.add_argument("--prefill", type=int, default=200_000)
    parser.add_argument("--measure", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="the readers' log (built when missing)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dump", type=Path)
    args = parser.parse_args()
    if args.what == "writer":
        writer(args.prefill, args.measure)
    else:
        db = args.db or Path(tempfile.mkdtemp()) / "q.sqlite"
        readers(db, args.rows, args.repeat, args.dump)


if __name__ == "__main__":
    main()
