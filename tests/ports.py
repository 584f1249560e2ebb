"""Loopback ports for servers the tests start as their own processes."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A 127.0.0.1 port that is free for both UDP and TCP right now.

    DNS servers bind both protocols on one port, so a port checked for one alone can be taken for the other
    (by another test's server, or a benchmark running beside the suite) and the server then fails to start.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port is free for both UDP and TCP")
