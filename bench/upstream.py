"""A fast fake upstream for the benchmark: answers every A query with 192.0.2.1 (TTL 1 hour) and every
other type with an empty NOERROR, on 127.0.0.1:PORT. Both servers under test forward to it, so it only
sees cache misses.

``upstream.py PORT [LOSS]``: with LOSS (a fraction, e.g. 0.1) that share of the queries, drawn at random, is
dropped unanswered, as a lossy path would."""

from __future__ import annotations

import asyncio
import random
import struct
import sys

ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01"


class Upstream(asyncio.DatagramProtocol):
    def __init__(self, loss: float = 0.0) -> None:
        self.loss = loss

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 17 or (self.loss and random.random() < self.loss):
            return
        pos = 12
        while data[pos]:
            pos += data[pos] + 1
        end = pos + 5
        qtype = struct.unpack_from(">H", data, pos + 1)[0]
        answers = 1 if qtype == 1 else 0
        header = data[:2] + struct.pack(">HHHHH", 0x8180, 1, answers, 0, 0)
        self.transport.sendto(header + data[12:end] + (ANSWER if answers else b""), addr)


async def main(port: int, loss: float) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Upstream(loss), local_addr=("127.0.0.1", port))
    await asyncio.sleep(3600)  # the benchmark terminates it; an hour is the outer bound


if __name__ == "__main__":
    arguments = (int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
    try:
        import uvloop

        uvloop.run(main(*arguments))
    except ImportError:
        asyncio.run(main(*arguments))
