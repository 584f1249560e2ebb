"""Talking to other DNS servers: one query, one validated reply, over UDP or TCP.

Shared by the forwarder and the recursive resolver. Every query gets a fresh random ID and a fresh socket
(so a fresh random source port from the kernel); a reply is accepted only when it comes from the address
and port we sent to (the socket is connected, so the kernel drops anything else) and carries our ID and our
question. Anything else is dropped, counted, and the wait goes on until the timeout.

The counters are a :class:`TransportStats` instance the caller owns and passes in (the server keeps one for
its whole life, so they survive a reload that replaces the upstream).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from dataclasses import dataclass

from blockdns.errors import UpstreamError
from blockdns.wire import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    build_query,
    is_truncated,
    reply_matches,
)

MAX_TCP_MESSAGE = 65535


@dataclass(slots=True)
class TransportStats:
    """Counters read by metrics. Plain ints: incrementing one costs nothing on any path."""

    queries: int = 0
    replies: int = 0
    mismatched: int = 0  # wrong ID or question: dropped (spoofing attempts land here)
    timeouts: int = 0
    errors: int = 0
    tcp_fallbacks: int = 0
    retransmits: int = 0  # questions sent again because a reply was late (forward mode)


def new_query_id() -> int:
    return secrets.randbelow(65536)


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One query message, and what a reply to it must carry: our ID and our question."""

    message: bytes
    qid: int
    qname: bytes
    qtype: int
    qclass: int

    def answered_by(self, data: bytes) -> bool:
        return reply_matches(data, self.qid, self.qname, self.qtype, self.qclass)


@dataclass(frozen=True, slots=True)
class Exchange:
    """The outcome of one query to one server."""

    data: bytes
    server: str
    rtt: float
    over_tcp: bool


async def exchange(
    host: str,
    port: int,
    qname: bytes,
    qtype: int,
    qclass: int,
    *,
    timeout: float,
    stats: TransportStats,
    tcp: bool = False,
    rd: bool = True,
    cd: bool = False,
    do: bool = False,
    edns: bool = True,
    tcp_on_truncation: bool = True,
) -> Exchange:
    """Ask ``host:port`` one question; retry over TCP when the UDP reply is truncated.

    Raises :class:`UpstreamError` (with the EDE code a client should see) on timeout or network error.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def outgoing() -> _Outgoing:  # a fresh random ID for every message sent
        qid = new_query_id()
        message = build_query(qid, qname, qtype, qclass, rd=rd, cd=cd, do=do, edns=edns)
        return _Outgoing(message, qid, qname, qtype, qclass)

    if not tcp:
        data = await _udp(host, port, outgoing(), timeout, stats)
        if not (tcp_on_truncation and is_truncated(data)):
            return Exchange(data, server, loop.time() - started, False)
        stats.tcp_fallbacks += 1
        timeout = max(timeout - (loop.time() - started), timeout / 2)
    data = await _tcp(host, port, outgoing(), timeout, stats)
    return Exchange(data, server, loop.time() - started, True)


async def _udp(host: str, port: int, query: _Outgoing, timeout: float, stats: TransportStats) -> bytes:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    stats.queries += 1
    try:
        try:
            sock.connect((host, port))
            await loop.sock_sendall(sock, query.message)
        except OSError as err:
            stats.errors += 1
            raise _network_error(f"{host}:{port}", err) from None
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                stats.timeouts += 1
                raise _timed_out(f"{host}:{port}")
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), remaining)
            except TimeoutError:
                stats.timeouts += 1
                raise _timed_out(f"{host}:{port}") from None
            except OSError as err:  # e.g. ICMP port unreachable surfaces as ECONNREFUSED
                stats.errors += 1
                raise _network_error(f"{host}:{port}", err) from None
            if query.answered_by(data):
                stats.replies += 1
                return data
            stats.mismatched += 1
    finally:
        sock.close()


async def _tcp(host: str, port: int, query: _Outgoing, timeout: float, stats: TransportStats) -> bytes:
    stats.queries += 1
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(struct.pack(">H", len(query.message)) + query.message)
            await writer.drain()
            while True:
                length = struct.unpack(">H", await reader.readexactly(2))[0]
                data = await reader.readexactly(length)
                if query.answered_by(data):
                    stats.replies += 1
                    return data
                stats.mismatched += 1
    except TimeoutError:
        stats.timeouts += 1
        raise _timed_out(f"tcp {host}:{port}", "over TCP") from None
    except (OSError, asyncio.IncompleteReadError) as err:
        stats.errors += 1
        raise _network_error(f"tcp {host}:{port}", err, "over TCP") from None
    finally:
        if writer is not None:
            writer.close()


# The message names the server, for the log; the client's EDE text does not (see UpstreamError).


def _timed_out(server: str, how: str = "") -> UpstreamError:
    client_text = f"upstream timed out {how}".rstrip()
    return UpstreamError(f"{server}: timed out", EDE_NO_REACHABLE_AUTHORITY, client_text=client_text)


def _network_error(server: str, err: OSError | asyncio.IncompleteReadError, how: str = "") -> UpstreamError:
    reason = getattr(err, "strerror", None) or type(err).__name__
    client_text = f"upstream network error {how}: {reason}" if how else f"upstream network error: {reason}"
    return UpstreamError(f"{server}: {reason}", EDE_NETWORK_ERROR, client_text=client_text)
