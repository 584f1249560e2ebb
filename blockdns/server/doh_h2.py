"""DoH over HTTP/2: an asyncio protocol driving h2's connection state machine (framing, HPACK, stream states
and flow control are h2's).

* At most ``MAX_STREAMS`` streams open at once (``SETTINGS_MAX_CONCURRENT_STREAMS``, enforced by h2), so at
  most that many queries in flight per connection; request bodies held at once are bounded by
  ``MAX_BUFFERED`` (past it a request gets 503), each by 64 KiB (past it, 413).
* A response larger than the stream's or the connection's send window waits for the client's
  WINDOW_UPDATE, without holding up the other streams.
* Each response goes out in its own write, so in a TLS record of its own, as Unbound sends them: dnsperf
  (2.10) takes one response per record it reads and leaves a second one in the same record unread until
  more data comes, which under load loses most queries.
* A client's GOAWAY (RFC 9113 §6.8) ends the connection only once the streams it had opened are answered:
  its last-stream-id names *our* streams (we open none). h2 moves its state machine to CLOSED on any GOAWAY
  received (python-hyper/h2 issue 1181), which would refuse those answers, and every frame after the GOAWAY
  in the same read (a SETTINGS ack, a WINDOW_UPDATE); :class:`_OpenAfterGoaway` leaves the state as it is,
  and the GOAWAY's event decides: a graceful one (NO_ERROR) lets the streams finish, another closes.
"""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from blockdns.server.connections import Connection
from blockdns.server.doh_base import (
    DROPPED,
    TOO_LARGE,
    DohConnection,
    DohContext,
    Pending,
    Reply,
    forwarding_headers,
)
from blockdns.server.streamwire import MAX_STREAM_MESSAGE

MAX_STREAMS = 100
MAX_HEADER_LIST = 16 * 1024
MAX_BUFFERED = 4 * MAX_STREAM_MESSAGE  # request body bytes held per connection, all streams together

_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_outbound_headers=False,  # ours are fixed and well-formed
    normalize_outbound_headers=False,
)
_STATUS = {status: b"%d" % status for status in (200, 400, 404, 405, 413, 415, 503)}


class _OpenAfterGoaway(h2.connection.H2ConnectionStateMachine):
    """h2's connection state machine, except that a GOAWAY received does not close the connection."""

    def process_input(self, input_: h2.connection.ConnectionInputs) -> list[h2.events.Event]:
        if input_ is h2.connection.ConnectionInputs.RECV_GOAWAY:
            return []
        return super().process_input(input_)


class _Request:
    """A request stream not yet answered: what its headers said, and its body so far."""

    __slots__ = ("body", "content_type", "forwarding", "method", "target", "too_large")

    def __init__(self) -> None:
        self.method = b""
        self.target = b""
        self.content_type: bytes | None = None
        self.forwarding: tuple[str | None, str | None] = (None, None)
        self.body = bytearray()
        self.too_large = False


class H2Connection(DohConnection):
    def __init__(self, server: DohContext, transport: asyncio.Transport, slot: Connection) -> None:
        super().__init__(server, transport, slot)
        conn = h2.connection.H2Connection(_CONFIG)
        conn.state_machine = _OpenAfterGoaway()
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        conn.initiate_connection()
        self.h2 = conn
        self.requests_open: dict[int, _Request] = {}  # streams whose request is still arriving
        self.answering: set[int] = set()  # streams whose answer is being worked out or sent
        self.blocked: dict[int, memoryview] = {}  # response bytes waiting for the client's window
        self.buffered = 0  # request body bytes held, all streams
        self.goaway_received = False
        transport.write(conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        conn = self.h2
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:  # h2 has queued its GOAWAY
            self._flush()
            self.transport.close()
            return
        self.received()
        try:
            for event in events:
                self._event(event)
        except Exception as err:  # never the server: this connection only
            self.server.failures.error("DoH connection from %s failed: %r", self.peer, err, exc_info=True)
            self.transport.abort()
            return
        self._flush()
        self._close_if_done()

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._data(event)
        elif isinstance(event, h2.events.StreamEnded):
            request = self.requests_open.pop(event.stream_id, None)
            if request is not None:
                self._answer(event.stream_id, request)
        elif isinstance(event, h2.events.WindowUpdated):
            self._unblock(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                self._unblock(0)
        elif isinstance(event, h2.events.StreamReset):
            self._forget(event.stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event)

    def _request(self, event: h2.events.RequestReceived) -> None:
        request = _Request()
        headers = event.headers or ()
        for name, value in headers:
            if name == b":method":
                request.method = value
            elif name == b":path":
                request.target = value
            elif name == b"content-type":
                request.content_type = value
        if self.server.proxies.networks:  # (a reload may change them)
            request.forwarding = forwarding_headers(headers)
        assert event.stream_id is not None
        self.requests_open[event.stream_id] = request

    def _data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        assert stream_id is not None
        data = event.data or b""
        if event.flow_controlled_length:
            self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        request = self.requests_open.get(stream_id)
        if request is None:  # answered early (413, 503): the rest of its body is dropped
            return
        if len(request.body) + len(data) > MAX_STREAM_MESSAGE:
            self._give_up(stream_id, request, TOO_LARGE)
        elif self.buffered + len(data) > MAX_BUFFERED:
            self._give_up(stream_id, request, DROPPED)
        else:
            request.body += data
            self.buffered += len(data)

    def _give_up(self, stream_id: int, request: _Request, reply: Reply) -> None:
        """Answer a request before its body has all arrived, and drop what arrived."""
        del self.requests_open[stream_id]
        self.buffered -= len(request.body)
        self.answering.add(stream_id)
        self._send(stream_id, reply)

    def _answer(self, stream_id: int, request: _Request) -> None:
        body = bytes(request.body)
        self.buffered -= len(body)
        self.answering.add(stream_id)
        result = self.requests.answer(
            request.method,
            request.target,
            request.content_type,
            body,
            self.peer,
            self.sni_id,
            request.forwarding,
        )
        if isinstance(result, Pending):
            task = result.task
            self.track(task)
            task.add_done_callback(lambda _: self._answered(stream_id, result))
        else:
            self._send(stream_id, result)

    def _answered(self, stream_id: int, pending: Pending) -> None:
        self.untrack(pending.task)
        if self.closed or stream_id not in self.answering:
            return
        try:
            self._send(stream_id, self.requests.finish(pending))
        except Exception as err:
            self.server.failures.error("DoH connection from %s failed: %r", self.peer, err, exc_info=True)
            self.transport.abort()
            return
        self._flush()
        self._close_if_done()

    def _send(self, stream_id: int, reply: Reply) -> None:
        status, headers, body = reply
        conn = self.h2
        try:
            conn.send_headers(stream_id, [(b":status", _STATUS[status]), *headers], end_stream=not body)
        except h2.exceptions.StreamClosedError:  # reset by the client meanwhile
            self._forget(stream_id)
            return
        if not body:  # (a response to HEAD)
            self._forget(stream_id)
            return
        self.blocked[stream_id] = memoryview(body)
        self._push(stream_id)

    def _push(self, stream_id: int) -> None:
        """Send as much of the stream's response as the flow-control windows allow."""
        conn = self.h2
        rest = self.blocked[stream_id]
        try:
            while rest:
                size = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                if size <= 0:
                    self.blocked[stream_id] = rest
                    return
                chunk, rest = rest[:size], rest[size:]
                conn.send_data(stream_id, chunk, end_stream=not rest)
        except h2.exceptions.StreamClosedError:
            pass
        finally:
            self._flush()
        self._forget(stream_id)

    def _unblock(self, stream_id: int) -> None:
        if stream_id:
            if stream_id in self.blocked:
                self._push(stream_id)
            return
        for blocked_id in list(self.blocked):
            if blocked_id in self.blocked:
                self._push(blocked_id)

    def _forget(self, stream_id: int) -> None:
        request = self.requests_open.pop(stream_id, None)
        if request is not None:
            self.buffered -= len(request.body)
        self.answering.discard(stream_id)
        self.blocked.pop(stream_id, None)

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        if event.error_code != h2.errors.ErrorCodes.NO_ERROR:
            self.transport.close()  # the client has given up on the connection
            return
        self.goaway_received = True

    def _close_if_done(self) -> None:
        if self.goaway_received and not self.answering and not self.requests_open and not self.closed:
            self.close_idle()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def close_idle(self) -> None:
        if not self.closed:
            self.h2.close_connection()
            self._flush()
        self.transport.close()
