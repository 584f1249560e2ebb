"""Serve-stale and prefetch figures (issue 16): what clients get while the upstream is down, and what
prefetch does on a repeated-name mix.

1. Outage: 200 names (TTL 10 s) are asked once while the upstream answers; then the upstream goes silent
   for ``--seconds`` (default 60) while a client asks those names (Zipf-popular) at 100 q/s, waiting 5 s for
   each answer, as a stub resolver would. Counted per answer: data (fresh, cached or stale), SERVFAIL, no
   answer in time; with ``serve_stale`` on and off, resolver timeouts at their defaults (2 s, 10 s total).
2. Prefetch: 1,000 names with TTLs of 10, 20, 30 and 60 s, asked Zipf-popular at 200 q/s for ``--seconds``;
   with ``prefetch`` on and off: queries the upstream got, and client queries that had to wait for it
   (cache misses).

Everything runs in this process on loopback: the blockdns server, the fake upstream (127.0.0.1, a port of
its own) and the client, on one event loop; the figures are counts, not speeds.

    python bench/stale.py [--seconds 60] [--only outage|prefetch]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import struct
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from blockdns import config
from blockdns.server.app import Server

OUTAGE_NAMES, OUTAGE_TTL, OUTAGE_RATE, CLIENT_WAIT = 200, 10, 100, 5.0
PREFETCH_NAMES, PREFETCH_TTLS, PREFETCH_RATE = 1000, (10, 20, 30, 60), 200
ZIPF = 1.0  # name popularity: the i-th name is asked in proportion to 1 / i**ZIPF


def wire(name: str) -> bytes:
    return b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\x00"


class Upstream(asyncio.DatagramProtocol):
    """Answers ``nI.bench A`` with 192.0.2.1 and the name's TTL; silent while ``down``."""

    def __init__(self, ttls: dict[bytes, int]) -> None:
        self.ttls = ttls
        self.down = False
        self.queries = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        if self.down or len(data) < 17 or self.transport is None:
            return
        end = data.index(b"\x00", 12) + 5
        ttl = self.ttls.get(data[12 : end - 4].lower(), 60)
        header = data[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
        answer = b"\xc0\x0c\x00\x01\x00\x01" + struct.pack(">IH", ttl, 4) + bytes([192, 0, 2, 1])
        self.transport.sendto(header + data[12:end] + answer, addr)


@dataclass
class Client(asyncio.DatagramProtocol):
    """Sends queries and matches replies by ID; each reply is sorted into ``results``."""

    pending: dict[int, tuple[asyncio.Future[bytes], float]] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)  # the distinct names asked
    results: Counter[str] = field(default_factory=Counter)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        entry = self.pending.pop(struct.unpack_from(">H", data)[0], None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(data)

    async def ask(self, name: str, qid: int) -> None:
        assert self.transport is not None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[qid] = (future, time.monotonic())
        self.asked.add(name)
        # With an OPT record (EDNS), so a stale answer carries its EDE.
        packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1) + wire(name) + b"\x00\x01\x00\x01"
        self.transport.sendto(packet + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")
        try:
            reply = await asyncio.wait_for(future, CLIENT_WAIT)
        except TimeoutError:
            self.pending.pop(qid, None)
            self.results["no answer in 5 s"] += 1
            return
        rcode = reply[3] & 0x0F
        if rcode == 2:
            self.results["SERVFAIL"] += 1
        elif struct.unpack_from(">H", reply, 6)[0]:
            self.results["stale data" if b"\x00\x0f\x00\x02\x00\x03" in reply[-12:] else "data"] += 1
        else:
            self.results[f"rcode {rcode}"] += 1


def zipf_names(count: int) -> tuple[list[str], list[float]]:
    names = [f"n{i}.bench" for i in range(count)]
    return names, [1 / (i + 1) ** ZIPF for i in range(count)]


async def run_server(upstream_port: int, cache: dict[str, object], data_dir: str) -> Server:
    raw = {
        "server": {"listen": ["127.0.0.1:0"]},
        "resolver": {"mode": "forward", "upstreams": [f"udp://127.0.0.1:{upstream_port}"]},
        "cache": cache,
        "policy": {"block": []},
        "lists": {"refresh": "0", "data_dir": data_dir},
        "querylog": {"path": ""},
        "api": {"listen": ""},
    }
    server = Server(config.from_dict(raw, source=Path(data_dir) / "blockdns.toml"))
    await server.start()
    return server


async def load(
    client: Client, port: int, names: list[str], weights: list[float], rate: int, seconds: float
) -> None:
    """Ask ``rate`` names a second for ``seconds``, in ticks of 10 ms; wait for the last answers."""
    assert client.transport is not None
    rng = random.Random(16)
    tasks: set[asyncio.Task[None]] = set()
    qid = 0
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        for name in rng.choices(names, weights, k=due):
            qid = (qid + 1) & 0xFFFF
            task = asyncio.create_task(client.ask(name, qid))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent += max(due, 0)
        await asyncio.sleep(0.01)
    if tasks:
        await asyncio.gather(*tasks)


async def one_run(
    cache: dict[str, object],
    names: list[str],
    weights: list[float],
    ttls: dict[bytes, int],
    rate: int,
    seconds: float,
    outage: bool,
) -> tuple[Counter[str], int, int, int, int]:
    loop = asyncio.get_running_loop()
    upstream = Upstream(ttls)
    upstream_transport, _ = await loop.create_datagram_endpoint(lambda: upstream, local_addr=("127.0.0.1", 0))
    upstream_port = upstream_transport.get_extra_info("sockname")[1]
    with tempfile.TemporaryDirectory() as data_dir:
        server = await run_server(upstream_port, cache, data_dir)
        port = server.listeners[0].port
        client = Client()
        client_transport, _ = await loop.create_datagram_endpoint(
            lambda: client, remote_addr=("127.0.0.1", port)
        )
        try:
            if outage:
                for name in names:  # every answer cached
                    await client.ask(name, 1)
                await asyncio.sleep(OUTAGE_TTL)  # every answer has expired
                upstream.down = True
                client.results.clear()
                client.asked.clear()
            upstream_before = upstream.queries
            await load(client, port, names, weights, rate, seconds)
            stats = server.stats
            return (
                client.results,
                upstream.queries - upstream_before,
                stats.cache.misses,
                len(client.asked),
                stats.cache.prefetches,
            )
        finally:
            client_transport.close()
            await server.stop()
            upstream_transport.close()


async def outage(seconds: float) -> None:
    names, weights = zipf_names(OUTAGE_NAMES)
    ttls = {wire(name): OUTAGE_TTL for name in names}
    print(
        f"outage: {OUTAGE_NAMES} names (TTL {OUTAGE_TTL} s, expired), upstream silent, "
        f"{OUTAGE_RATE} q/s for {seconds:g} s, the client waits {CLIENT_WAIT:g} s"
    )
    for serve_stale in (True, False):
        results, *_ = await one_run(
            {"serve_stale": serve_stale, "prefetch": False}, names, weights, ttls, OUTAGE_RATE, seconds, True
        )
        total = sum(results.values())
        answered = results["data"] + results["stale data"]
        parts = ", ".join(f"{kind} {count}" for kind, count in sorted(results.items()))
        print(
            f"  serve_stale={str(serve_stale).lower():5}  {total} queries: {parts}; "
            f"answered with data {answered / total:.1%}"
        )


async def prefetch(seconds: float) -> None:
    names, weights = zipf_names(PREFETCH_NAMES)
    rng = random.Random(8767)
    ttls = {wire(name): rng.choice(PREFETCH_TTLS) for name in names}
    print(
        f"prefetch: {PREFETCH_NAMES} names (TTLs {', '.join(map(str, PREFETCH_TTLS))} s), Zipf {ZIPF}, "
        f"{PREFETCH_RATE} q/s for {seconds:g} s"
    )
    for enabled in (False, True):
        results, upstream_queries, misses, distinct, prefetches = await one_run(
            {"prefetch": enabled}, names, weights, ttls, PREFETCH_RATE, seconds, False
        )
        total = sum(results.values())
        print(
            f"  prefetch={str(enabled).lower():5}  {total} queries: upstream got {upstream_queries}, "
            f"clients waited for it {misses} times ({misses / total:.1%}; {distinct} distinct names, "
            f"so about {misses - distinct} waits for an expired name), prefetches {prefetches}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run (default 60)")
    parser.add_argument("--only", choices=["outage", "prefetch"])
    arguments = parser.parse_args()
    if arguments.seconds <= 0 or arguments.seconds > 3600:
        parser.error("--seconds must be in (0, 3600]")
    if arguments.only in (None, "outage"):
        asyncio.run(outage(arguments.seconds))
    if arguments.only in (None, "prefetch"):
        asyncio.run(prefetch(arguments.seconds))


if __name__ == "__main__":
    main()
