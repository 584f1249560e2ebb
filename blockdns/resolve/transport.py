"""Talking to other DNS servers: one query, one validated reply, over UDP or TCP.

Shared by the forwarder and the recursive resolver. Every query gets a fresh random ID. The recursive
resolver's UDP queries (:func:`exchange`, :class:`UdpQuery`) each get a fresh socket too (so a fresh random
source port from the kernel); the forwarder's share a pool of sockets per upstream that keeps ports
rotating (:mod:`blockdns.resolve.udppool`). A reply is accepted only when it comes from the address
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
    late: int = 0  # genuine replies after their query was answered or given up: dropped (pooled sockets)
    tls_queries: int = 0  # of the queries, those to tls:// upstreams
    https_queries: int = 0  # and to https:// upstreams
    connections: int = 0  # TLS connections opened to tls:// upstreams
    verify_failures: int = 0  # TLS handshakes with tls:// and https:// upstreams whose certificate failed


def new_query_id() -> int:
    return secrets.randbelow(65536)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One query message, and what a reply to it must carry: our ID and our question."""

    message: bytes
    qid: int
    qname: bytes
    qtype: int
    qclass: int

    @classmethod
    def build(
        cls,
        qname: bytes,
        qtype: int,
        qclass: int,
        *,
        rd: bool = True,
        cd: bool = False,
        do: bool = False,
        edns: bool = True,
        qid: int | None = None,
    ) -> Outgoing:
        """The message for one question, under ``qid`` or a fresh random ID (every message sent gets its
        own)."""
        if qid is None:
            qid = new_query_id()
        message = build_query(qid, qname, qtype, qclass, rd=rd, cd=cd, do=do, edns=edns)
        return cls(message, qid, qname, qtype, qclass)

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

    def outgoing() -> Outgoing:
        return Outgoing.build(qname, qtype, qclass, rd=rd, cd=cd, do=do, edns=edns)

    if not tcp:
        data = await _udp(host, port, outgoing(), timeout, stats)
        if not (tcp_on_truncation and is_truncated(data)):
            return Exchange(data, server, loop.time() - started, False)
        stats.tcp_fallbacks += 1
        timeout = max(timeout - (loop.time() - started), timeout / 2)
    data = await tcp_query(host, port, outgoing(), timeout, stats)
    return Exchange(data, server, loop.time() - started, True)


class UdpQuery:
    """One query on its own connected UDP socket, waiting for its reply without a task of its own.

    ``reply`` is a future: the first datagram that carries our ID and question, or the network error that
    ended the wait. Anything else is counted and dropped. There is no timer here: whoever waits decides
    when it is too late, calls :meth:`timed_out`, and :meth:`close` in any case. Several can be in flight
    for one question at little cost (the forwarder's retransmissions).
    """

    __slots__ = ("_fd", "_loop", "_sock", "query", "reply", "server", "stats")

    def __init__(self, host: str, port: int, query: Outgoing, stats: TransportStats) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self.query, self.stats = query, stats
        self.server = f"{host}:{port}"
        self.reply: asyncio.Future[bytes] = loop.create_future()
        self._sock = sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
        )
        self._fd = -1  # watched by the loop while >= 0
        stats.queries += 1
        try:
            sock.setblocking(False)
            sock.connect((host, port))
            sock.send(query.message)  # one datagram on a fresh socket: sent whole at once
        except OSError as err:
            sock.close()
            stats.errors += 1
            raise network_error(self.server, err) from None
        self._fd = sock.fileno()
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = self._sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:  # e.g. ICMP port unreachable surfaces as ECONNREFUSED
            self.stats.errors += 1
            self._settle(error=network_error(self.server, err))
            return
        if self.query.answered_by(data):
            self.stats.replies += 1
            self._settle(data)
        else:
            self.stats.mismatched += 1

    def _settle(self, data: bytes = b"", error: UpstreamError | None = None) -> None:
        self._unwatch()
        if self.reply.done():
            return
        if error is not None:
            self.reply.set_exception(error)
        else:
            self.reply.set_result(data)

    def _unwatch(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._fd = -1

    def timed_out(self) -> UpstreamError:
        """Count a wait that ended without a reply; the error to raise or report."""
        self.stats.timeouts += 1
        return timed_out(self.server)

    def close(self) -> None:
        self._unwatch()
        self._sock.close()
        if not self.reply.done():
            self.reply.cancel()


async def _udp(host: str, port: int, query: Outgoing, timeout: float, stats: TransportStats) -> bytes:
    udp = UdpQuery(host, port, query, stats)
    try:
        async with asyncio.timeout(timeout):
            return await udp.reply
    except TimeoutError:
        raise udp.timed_out() from None
    finally:
        udp.close()


async def tcp_query(host: str, port: int, query: Outgoing, timeout: float, stats: TransportStats) -> bytes:
    """One query over its own TCP connection; the reply that carries our ID and question."""
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
        raise timed_out(f"tcp {host}:{port}", "over TCP") from None
    except (OSError, asyncio.IncompleteReadError) as err:
        stats.errors += 1
        raise network_error(f"tcp {host}:{port}", err, "over TCP") from None
    finally:
        if writer is not None:
            writer.close()


# The message names the server, for the log; the client's EDE text does not (see UpstreamError).


def timed_out(server: str, how: str = "") -> UpstreamError:
    client_text = f"upstream timed out {how}".rstrip()
    return UpstreamError(f"{server}: timed out", EDE_NO_REACHABLE_AUTHORITY, client_text=client_text)


def network_error(server: str, err: OSError | asyncio.IncompleteReadError, how: str = "") -> UpstreamError:
    reason = getattr(err, "strerror", None) or type(err).__name__
    client_text = f"upstream network error {how}: {reason}" if how else f"upstream network error: {reason}"
    return UpstreamError(f"{server}: {reason}", EDE_NETWORK_ERROR, client_text=client_text)
