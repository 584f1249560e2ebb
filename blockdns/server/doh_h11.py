"""DoH over HTTP/1.1: an asyncio protocol driving h11's state machine (parsing and framing are h11's).

One request at a time, as HTTP/1.1 has it: while a request is being answered the connection is not read,
so a client pipelining requests finds them waiting in the socket, not in our memory. The request line and
headers are bounded by ``MAX_HEAD``, a body by 64 KiB (past it, 413; the rest of the body is read and
dropped up to ``MAX_DRAINED``, past which the connection is closed). A client that waits for
``100 Continue`` before its body (``Expect: 100-continue``) gets it at once.
"""

from __future__ import annotations

import asyncio
import contextlib

import h11

from blockdns.server.connections import Connection
from blockdns.server.doh_base import DohConnection, DohContext, Pending, Reply, forwarding_headers, plain
from blockdns.server.streamwire import MAX_STREAM_MESSAGE

MAX_HEAD = 16 * 1024
MAX_DRAINED = 4 * MAX_STREAM_MESSAGE


class H11Connection(DohConnection):
    def __init__(self, server: DohContext, transport: asyncio.Transport, slot: Connection) -> None:
        super().__init__(server, transport, slot)
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.body_size = 0  # bytes of the body received, kept or not
        self.answered = False  # the current request's response has been sent (perhaps before its end)
        self.answering = False  # its answer is being worked out

    def data_received(self, data: bytes) -> None:
        self.received()
        try:
            self.h11.receive_data(data)
        except RuntimeError:  # data after the client's end, or after a protocol error: nothing to read
            return
        self._process()

    def _process(self) -> None:
        conn = self.h11
        try:
            while not self.answering and not self.closed:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return
                if event is h11.PAUSED:
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                        continue
                    return
                if isinstance(event, h11.Request):
                    self.request = event
                    self.body.clear()
                    self.body_size = 0
                    self.answered = False
                    if conn.they_are_waiting_for_100_continue:  # (curl waits a second for it)
                        self.transport.write(
                            conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                        )
                elif isinstance(event, h11.Data):
                    self._body(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    if not self.answered:
                        self._answer()
                elif isinstance(event, h11.ConnectionClosed):
                    self.transport.close()
                    return
        except h11.RemoteProtocolError as err:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(h11.LocalProtocolError):
                    self._send(plain(err.error_status_hint, "a bad HTTP/1.1 request"))
            self.transport.close()
        except Exception as err:  # never the server: this connection only
            self.server.failures.error("DoH connection from %s failed: %r", self.peer, err, exc_info=True)
            self.transport.abort()

    def _body(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.answered:
            if self.body_size > MAX_DRAINED:
                self.transport.close()
            return
        if self.body_size > MAX_STREAM_MESSAGE:
            self.body.clear()
            self._answer()  # 413 before the body's end
        else:
            self.body += data

    def _answer(self) -> None:
        request = self.request
        assert request is not None
        content_type = None
        for name, value in request.headers:
            if name == b"content-type":
                content_type = value
                break
        forwarding: tuple[str | None, str | None] = (None, None)
        if self.server.proxies.networks:
            forwarding = forwarding_headers(request.headers)
        body = bytes(self.body) if self.body_size <= MAX_STREAM_MESSAGE else None
        result = self.requests.answer(
            request.method, request.target, content_type, body, self.peer, self.sni_id, forwarding
        )
        if isinstance(result, Pending):
            self.answering = True
            self.transport.pause_reading()
            self.track(result.task)
            result.task.add_done_callback(lambda _: self._answered(result))
        else:
            self._send(result)

    def _answered(self, pending: Pending) -> None:
        self.untrack(pending.task)
        self.answering = False
        if self.closed:
            return
        self._send(self.requests.finish(pending))
        if not self.writing_paused:
            self.transport.resume_reading()
        self._process()

    def may_read(self) -> bool:
        return not self.answering

    def _send(self, reply: Reply) -> None:
        status, headers, body = reply
        conn = self.h11
        self.answered = True
        out = conn.send(h11.Response(status_code=status, headers=headers))
        out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        self.transport.write(out)
        if conn.our_state is h11.MUST_CLOSE:
            self.transport.close()
