"""A TCP relay on loopback that counts the connections it carries and can cut them: put in front of a
server, it shows how many connections (so TLS handshakes) a client opened, and plays a server that closes
a connection in the middle of a stream.

    relay = TcpRelay(("127.0.0.1", unbound.tls_port)).start()
    ...  # the client talks to 127.0.0.1:relay.port
    relay.accepted  # connections opened so far
    relay.cut()  # close every connection now (both ends)
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpRelay:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self.accepted = 0
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()

    def start(self) -> TcpRelay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):  # pass small writes on at once, as the two ends wrote them
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.accepted += 1
                self._open.append((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        """Close every connection carried so far, both ways."""
        with self._lock:
            pairs, self._open = self._open, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


if (
    __name__ == "__main__"
):  # a relay in a process of its own: prints its port, then its count when stdin closes
    import sys

    relay = TcpRelay((sys.argv[1], int(sys.argv[2]))).start()
    print(relay.port, flush=True)
    sys.stdin.read()
    print(relay.accepted, flush=True)
