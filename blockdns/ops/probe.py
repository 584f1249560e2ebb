"""A health probe for containers and orchestrators: one DNS query, standard library only.

    python -m blockdns.ops.probe [ADDRESS] [--name NAME] [--type A] [--tcp] [--timeout 2]

Exit 0 when the server at ADDRESS (default ``127.0.0.1:53``) sends back a well-formed reply to our question
(any response code: the resolver is up and answering); exit 1 otherwise, with one line on stderr. The default
name, ``use-application-dns.net``, is answered by blockdns itself (bypass protection), so the probe needs no
upstream and no internet.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket
import struct
import sys

DEFAULT_NAME = "use-application-dns.net"
QTYPES = {"A": 1, "NS": 2, "SOA": 6, "TXT": 16, "AAAA": 28}


def build_query(qid: int, name: str, qtype: int) -> bytes:
    labels = [label for label in name.strip(".").split(".") if label]
    qname = b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def is_reply_to(data: bytes, query: bytes) -> bool:
    """Same ID, the QR bit set, and the same question as ``query``."""
    if len(data) < len(query) or data[:2] != query[:2] or not data[2] & 0x80:
        return False
    return data[12 : len(query)].lower() == query[12:].lower()


def split_address(text: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]`` or ``[IPv6]:PORT``; raises ValueError for anything else."""
    text, port = text.strip(), 53
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(text)
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    else:
        host = text
    ipaddress.ip_address(host)
    return host, port


def probe(host: str, port: int, name: str, qtype: int, *, tcp: bool, timeout: float) -> str | None:
    """None when the server answered; otherwise what went wrong."""
    query = build_query(secrets.randbelow(65536), name, qtype)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    try:
        with socket.socket(family, kind) as sock:
            sock.settimeout(timeout)
            sock.connect((host, port))
            if tcp:
                sock.sendall(struct.pack(">H", len(query)) + query)
                data = _read_tcp(sock)
            else:
                sock.send(query)
                data = sock.recv(65535)
    except TimeoutError:
        return f"no reply from {where} within {timeout:g}s"
    except OSError as err:
        return f"{where}: {err.strerror or err}"
    if not is_reply_to(data, query):
        return f"{where} sent something that is not a reply to the probe"
    return None


def _read_tcp(sock: socket.socket) -> bytes:
    def exactly(size: int) -> bytes:
        buffer = b""
        while len(buffer) < size:
            chunk = sock.recv(size - len(buffer))
            if not chunk:
                raise OSError("connection closed")
            buffer += chunk
        return buffer

    length = struct.unpack(">H", exactly(2))[0]
    return exactly(length)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blockdns.ops.probe", description="Health probe: ask a DNS server one question."
    )
    parser.add_argument("address", nargs="?", default="127.0.0.1:53", help="IP[:PORT] (default 127.0.0.1:53)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"the name to ask for (default {DEFAULT_NAME})")
    parser.add_argument("--type", default="A", choices=sorted(QTYPES), help="the query type (default A)")
    parser.add_argument("--tcp", action="store_true", help="ask over TCP instead of UDP")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait (default 2)")
    args = parser.parse_args(argv)
    try:
        host, port = split_address(args.address)
    except ValueError:
        host, port = "", 0
    if not host or not 0 < port < 65536:
        print(f"probe: bad address {args.address!r}: give IP, IP:PORT or [IPv6]:PORT", file=sys.stderr)
        return 2
    if not all(0 < len(label) < 64 and label.isascii() for label in args.name.strip(".").split(".")):
        print(f"probe: bad name {args.name!r}", file=sys.stderr)
        return 2
    problem = probe(host, port, args.name, QTYPES[args.type], tcp=args.tcp, timeout=args.timeout)
    if problem:
        print(f"probe: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
