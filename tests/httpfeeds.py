"""A real HTTP server on 127.0.0.1 (port 0) that serves feeds the way real servers misbehave.

Build routes with :meth:`FeedServer.serve` and friends: a body with ETag / Last-Modified (answering 304 to a
matching conditional request), an error status (also "fail N times, then serve"), a slow answer, a truncated
body (Content-Length larger than what is sent), an oversize body, an HTML error page with status 200, a gzip
body, an empty 200. Every request is recorded (path and headers) so tests can count them and check the
conditional headers sent.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0  # seconds to wait before answering
    truncate: int | None = None  # send only this many body bytes, with the full Content-Length
    gzip: bool = False  # Content-Encoding: gzip
    failures: int = 0  # answer failure_status this many times first
    failure_status: int = 500
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]


HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Rate limit</title></head>"
    b"<body><h1>Too many requests</h1><p>Please try again later.</p></body></html>\n"
)


class FeedServer:
    """``with FeedServer() as server: server.serve("/list.txt", b"...")``; ``server.url("/list.txt")``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    # -- lifecycle

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # -- builders

    def serve(self, path: str, body: bytes | str, **options: object) -> Route:
        data = body.encode("utf-8") if isinstance(body, str) else body
        route = Route(body=data, **options)  # type: ignore[arg-type]
        with self._lock:
            self.routes[path] = route
        return route

    def fail(self, path: str, status: int = 500, body: bytes = b"server error\n") -> Route:
        return self.serve(path, body, status=status)

    def slow(self, path: str, body: bytes | str, delay: float) -> Route:
        return self.serve(path, body, delay=delay)

    def truncated(self, path: str, body: bytes | str, sent: int) -> Route:
        return self.serve(path, body, truncate=sent)

    def html_page(self, path: str) -> Route:
        return self.serve(path, HTML_ERROR_PAGE, content_type="text/html; charset=utf-8")

    def empty(self, path: str) -> Route:
        return self.serve(path, b"")

    def oversize(self, path: str, size: int) -> Route:
        line = b"big.example.com\n"
        return self.serve(path, line * (size // len(line) + 1))

    # -- what happened

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for request in self.requests if path is None or request.path == path)

    def last(self, path: str) -> Request:
        with self._lock:
            return [request for request in self.requests if request.path == path][-1]

    # -- the handler

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path)
                with server._lock:
                    server.requests.append(Request(path, {k.lower(): v for k, v in self.headers.items()}))
                    route = server.routes.get(path)
                    failing = route is not None and route.failures > 0
                    if failing:
                        route.failures -= 1  # type: ignore[union-attr]
                if route is None:
                    self._send(404, b"not found\n", "text/plain")
                    return
                if route.delay:
                    time.sleep(route.delay)
                if failing:
                    self._send(route.failure_status, b"try again\n", "text/plain")
                    return
                if self._not_modified(route):
                    self.send_response(304)
                    self._validators(route)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = gzip.compress(route.body) if route.gzip else route.body
                extra = {"Content-Encoding": "gzip"} if route.gzip else {}
                self._send(route.status, body, route.content_type, route, {**extra, **route.headers})

            def _not_modified(self, route: Route) -> bool:
                if route.status != 200:
                    return False
                tag = self.headers.get("If-None-Match")
                if tag is not None and route.etag is not None:
                    return tag == route.etag
                since = self.headers.get("If-Modified-Since")
                return since is not None and route.last_modified is not None and since == route.last_modified

            def _validators(self, route: Route) -> None:
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str,
                route: Route | None = None,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if route is not None:
                    self._validators(route)
                sent = body
                if route is not None and route.truncate is not None:
                    sent = body[: route.truncate]
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                try:
                    self.wfile.write(sent)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
