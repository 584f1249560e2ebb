"""Datagrams the kernel dropped on the server's UDP sockets because their receive queue was full: the one
sign of a loop that falls behind a flood, which no other counter shows (the packets never reach us).

Linux keeps the count per socket (``sk_drops``, the ``drops`` column of /proc/net/udp); ``SO_MEMINFO``
reads it with one getsockopt. The server samples it every ``INTERVAL`` seconds into
``ServerStats.udp_receive_drops``, so the fast path pays nothing for it. Other systems: the counter stays 0.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

from blockdns.ops.stats import ServerStats

INTERVAL = 1.0
SUPPORTED = sys.platform.startswith("linux")
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # <linux/socket.h>; Python's socket module lacks it
SK_MEMINFO_VARS = 9  # the u32 array SO_MEMINFO fills; SK_MEMINFO_DROPS is its last entry
SK_MEMINFO_DROPS = 8


def receive_drops(sock: Any) -> int:
    """The drop count of one socket (a socket, or asyncio's and uvloop's stand-ins for one)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, SK_MEMINFO_VARS * 4)
    except OSError:
        return 0
    if len(raw) < SK_MEMINFO_VARS * 4:
        return 0
    return int(struct.unpack_from(f"={SK_MEMINFO_VARS}I", raw)[SK_MEMINFO_DROPS])


async def sample_receive_drops(stats: ServerStats, sockets: Sequence[Any]) -> None:
    """Keep ``stats.udp_receive_drops`` at the sum over ``sockets``, for the server's life."""
    while True:
        stats.udp_receive_drops = sum(receive_drops(sock) for sock in sockets)
        await asyncio.sleep(INTERVAL)
