"""Shared fixtures: a real blockdns server on a loopback port, fake upstreams, and a dnspython client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import dns.rdatatype
import pytest
from prometheus_client.parser import text_string_to_metric_families

from blockdns import config
from blockdns.ops.metrics import FeedManifest
from blockdns.ops.metrics import render as render_metrics
from blockdns.ops.snapshot import take_snapshot
from blockdns.resolve.recursive.machine import Result
from blockdns.resolve.recursive.response import parsed_response
from blockdns.resolve.upstream import UpstreamResult
from blockdns.server.app import Server
from blockdns.wire import RD, render

from fakedns import FakeDNS

LISTS_DIR = Path(__file__).resolve().parent.parent / "lists"
TEST_CATALOG = Path(__file__).resolve().parent / "data" / "catalog"
# The [lists] section of a config file on the small test catalogue that fetches nothing (cf. base_config).
TEST_LISTS_TOML = f"""[lists]
catalog = "{TEST_CATALOG / "vendors"}"
guard = "{TEST_CATALOG / "guard.toml"}"
feeds = "{TEST_CATALOG / "feeds.toml"}"
refresh = "0"
"""


class RunningServer:
    """A blockdns Server on its own event loop in a thread, listening on 127.0.0.1 (UDP+TCP)."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.server: Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> RunningServer:
        self._thread.start()
        self.server = self.call(self._start())
        return self

    async def _start(self) -> Server:
        server = Server(self.settings)
        await server.start()
        return server

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.listeners[0].port

    def query(
        self,
        name: str,
        rdtype: str = "A",
        *,
        tcp: bool = False,
        edns: int | None = 0,
        payload: int = 1232,
        timeout: float = 5,
        options: list[Any] | None = None,
        want_dnssec: bool = False,
        source: str | None = None,
    ) -> dns.message.Message:
        if edns is None or edns is False:
            message = dns.message.make_query(name, rdtype, use_edns=False)
        else:
            message = dns.message.make_query(
                name, rdtype, use_edns=edns, payload=payload, options=options, want_dnssec=want_dnssec
            )
        send = dns.query.tcp if tcp else dns.query.udp
        kwargs = {"source": source} if source else {}
        return send(message, "127.0.0.1", port=self.port, timeout=timeout, **kwargs)


def server_metrics(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's Prometheus exposition as (name, sorted labels) -> value, rendered on its loop as a scrape
    renders it."""

    async def scrape() -> bytes:
        return render_metrics(take_snapshot(server.server, None), FeedManifest())

    samples = {}
    for family in text_string_to_metric_families(server.call(scrape()).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def response_wire(
    result: UpstreamResult, qname: bytes, qtype: int, *, qid: int = 0, do: bool = False, qclass: int = 1
) -> bytes:
    """An upstream's parsed result rendered as the complete response to ``qname qtype`` (for dnspython)."""
    question = qname + qtype.to_bytes(2, "big") + qclass.to_bytes(2, "big")
    return render(qid, RD, question, result.response.reply, 0, 1232, 0x8000 if do else 0, 65535)


def render_result(result: Result, *, do: bool, qid: int = 0) -> bytes:
    """A recursive resolution's result as the complete response a client would get."""
    upstream = UpstreamResult(parsed_response(result, do=do), "recursive")
    return response_wire(upstream, result.qname, result.qtype, qid=qid, do=do, qclass=result.qclass)


def ede_of(response: dns.message.Message) -> list[tuple[int, str]]:
    """The Extended DNS Errors in a response, as (code, text)."""
    return [
        (int(opt.code), opt.text or "") for opt in response.options if isinstance(opt, dns.edns.EDEOption)
    ]


def base_config(upstream: FakeDNS | None = None, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config that talks to loopback only: forward mode to ``upstream``, no log, no API, no refresh."""
    raw: dict[str, Any] = {
        "server": {"listen": ["127.0.0.1:0"]},
        "resolver": {
            "mode": "forward",
            "upstreams": [upstream.url] if upstream else ["udp://127.0.0.1:9"],
            "timeout": 1.0,
            "total_timeout": 3.0,
        },
        # A small fixed catalogue, so server tests do not change when the shipped one grows.
        "lists": {
            "refresh": "0",
            "data_dir": "var/lists",
            "catalog": str(TEST_CATALOG / "vendors"),
            "guard": str(TEST_CATALOG / "guard.toml"),
            "feeds": str(TEST_CATALOG / "feeds.toml"),
        },
        "querylog": {"path": ""},
        "api": {"listen": ""},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values
    return raw


@pytest.fixture
def fake_upstream() -> Iterator[FakeDNS]:
    upstream = FakeDNS("127.0.0.2").start()
    yield upstream
    upstream.stop()


@pytest.fixture
def vendor_upstream() -> Iterator[FakeDNS]:
    """A fake upstream that knows one DeepSeek and one OpenAI name, for tests whose policy switches between
    the two vendors."""
    upstream = (
        FakeDNS("127.0.0.2")
        .answer("chat.deepseek.com", "A", "192.0.2.1")
        .answer("chat.openai.com", "A", "192.0.2.2")
        .start()
    )
    yield upstream
    upstream.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """``start_server(raw_config_dict)`` -> a RunningServer; relative paths resolve inside tmp_path."""
    running: list[RunningServer] = []

    def start(raw: dict[str, Any]) -> RunningServer:
        settings = config.from_dict(raw, source=tmp_path / "blockdns.toml")
        server = RunningServer(settings).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()
