"""The admin API against a fake running server: every endpoint, with and without the token, and bad input."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockdns.config import QueryLogSettings, from_dict
from blockdns.ops.api import make_app
from blockdns.ops.control import ReloadResult
from blockdns.ops.httpaccess import reads_need_token
from blockdns.ops.querylog import QueryLog

from opshelpers import BLOCKED_NAME, TEST_LISTS, TOKEN, ApiThread, FakeControl, row

POSTS = [
    ("/api/pause", {"duration": "5m"}),
    ("/api/resume", None),
    ("/api/lists/reload", None),
]
GETS = [
    "/api/stats",
    "/api/querylog",
    f"/api/check?name={BLOCKED_NAME}",
    "/api/health",
    "/api/openapi.json",
    "/metrics",
    "/",
    "/static/dashboard.js",
    "/static/dashboard.css",
]


@pytest.fixture
def control() -> FakeControl:
    control = FakeControl()
    control.stats.queries[(1, "blocked", "default")] += 4
    control.stats.queries[(28, "resolved", "default")] += 6
    control.stats.blocks[("deepseek", "chat", "all")] += 4
    return control


@pytest.fixture
def querylog(tmp_path: Path, control: FakeControl) -> Iterator[QueryLog]:
    querylog = QueryLog(QueryLogSettings(), tmp_path / "q.sqlite", control.stats)
    querylog.start()
    for index in range(4):
        querylog.offer(row(BLOCKED_NAME, control=control, client=f"10.0.0.{index}"))
    for _ in range(6):
        querylog.offer(row("example.com", control=control, qtype=28))
    assert querylog.flush()
    yield querylog
    querylog.close()


@pytest.fixture
def api(control: FakeControl, querylog: QueryLog) -> Iterator[ApiThread]:
    thread = ApiThread(control, querylog).start()
    yield thread
    thread.stop()


def test_port_zero_binds_a_free_port(api: ApiThread) -> None:
    assert api.runner.port > 0
    assert api.runner.url == f"http://127.0.0.1:{api.runner.port}"


@pytest.mark.parametrize("path", GETS)
def test_reads_on_loopback_need_no_token(api: ApiThread, path: str) -> None:
    reply = api.request("GET", path)
    assert reply.status == 200, reply.text
    assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("path", "body"), POSTS)
def test_changes_need_the_token(api: ApiThread, control: FakeControl, path: str, body: object) -> None:
    missing = api.request("POST", path, body)
    assert missing.status == 401
    assert "token" in missing.json()["error"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = api.request("POST", path, body, token=TOKEN + "x")
    assert wrong.status == 401
    basic = api.request("POST", path, body, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status == 401
    assert control.paused_until is None and control.reloads == 0  # nothing happened
    right = api.request("POST", path, body, token=TOKEN)
    assert right.status == 200, right.text


@pytest.mark.parametrize(("path", "body"), POSTS)
def test_an_empty_configured_token_refuses_every_change(querylog: QueryLog, path: str, body: object) -> None:
    control = FakeControl(token="")
    thread = ApiThread(control, querylog).start()
    try:
        for token in (None, "", "anything"):
            reply = thread.request("POST", path, body, token=token)
            assert reply.status == 403
            assert "set [api] token" in reply.json()["error"]
        assert control.paused_until is None and control.reloads == 0
    finally:
        thread.stop()


def test_a_reloaded_token_takes_effect_at_once(api: ApiThread, control: FakeControl) -> None:
    control.settings = from_dict({"api": {"token": "new-token"}})
    assert api.request("POST", "/api/resume", token=TOKEN).status == 401
    assert api.request("POST", "/api/resume", token="new-token").status == 200


def test_pause_and_resume(api: ApiThread, control: FakeControl) -> None:
    before = time.time()
    reply = api.request("POST", "/api/pause", {"duration": "2m"}, token=TOKEN)
    body = reply.json()
    assert body["paused"] is True and body["seconds"] == 120
    assert before + 119 <= body["paused_until"] <= time.time() + 121
    assert control.paused_until == pytest.approx(body["paused_until"])
    stats = api.request("GET", "/api/stats").json()
    assert stats["paused"] is True and stats["paused_until"] == pytest.approx(body["paused_until"])
    assert api.request("POST", "/api/resume", token=TOKEN).json() == {"paused": False, "paused_until": None}
    assert control.paused_until is None
    assert api.request("GET", "/api/stats").json()["paused"] is False
    # No body: the default five minutes; a number: seconds.
    assert api.request("POST", "/api/pause", token=TOKEN).json()["seconds"] == 300
    assert api.request("POST", "/api/pause", {"duration": 90}, token=TOKEN).json()["seconds"] == 90


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"duration": "soon"}, "not a duration"),
        ({"duration": "0"}, "more than 0"),
        ({"duration": "31d"}, "at most 30d"),
        ({"duration": True}, "give a duration"),
        ({"duration": None}, "give a duration"),
        ([1, 2], "JSON object"),
    ],
)
def test_pause_refuses_bad_durations(
    api: ApiThread, control: FakeControl, body: object, message: str
) -> None:
    reply = api.request("POST", "/api/pause", body, token=TOKEN)
    assert reply.status == 400
    assert message in reply.json()["error"]
    assert control.paused_until is None


def test_pause_refuses_a_body_that_is_not_json(api: ApiThread) -> None:
    reply = api.request("POST", "/api/pause", raw=b"duration=5m", token=TOKEN)
    assert reply.status == 400 and "not JSON" in reply.json()["error"]


def test_reload(api: ApiThread, control: FakeControl) -> None:
    reply = api.request("POST", "/api/lists/reload", token=TOKEN)
    assert reply.json() == {"ok": True, "message": "reloaded: 1 vendor"}
    assert control.reloads == 1
    control.reload_result = ReloadResult(False, "blockdns.toml: policy.block: unknown selector")
    refused = api.request("POST", "/api/lists/reload", token=TOKEN)
    assert refused.status == 409
    assert refused.json()["ok"] is False and "unknown selector" in refused.json()["error"]


def test_check(api: ApiThread) -> None:
    body = api.request("GET", f"/api/check?name={BLOCKED_NAME}&client=10.1.2.3").json()
    assert body["blocked"] is True and body["vendor"] == "deepseek" and body["selector"] == "all"
    assert body["group"] == "default" and body["name"] == BLOCKED_NAME
    allowed = api.request("GET", "/api/check?name=example.org").json()
    assert allowed["blocked"] is False and allowed["action"] == "none"


def test_check_gives_the_evidence_of_a_catalogue_entry(api: ApiThread) -> None:
    body = api.request("GET", f"/api/check?name={BLOCKED_NAME}").json()
    assert body["evidence"] == "CherryHQ/cherry-studio src/renderer/src/config/providers.ts"
    assert api.request("GET", "/api/check?name=example.org").json()["evidence"] is None


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/check", "name:"),
        ("/api/check?name=", "name:"),
        ("/api/check?name=bad..name", "empty label"),
        ("/api/check?name=example.com&client=not-an-ip", "not an IP address"),
        ("/api/querylog?limit=0", "limit:"),
        ("/api/querylog?limit=lots", "limit:"),
        ("/api/querylog?since=yesterday", "since:"),
        ("/api/querylog?blocked=maybe", "blocked:"),
        ("/api/stats?since=forever", "since:"),
    ],
)
def test_bad_input_is_a_400_with_a_json_error(api: ApiThread, path: str, message: str) -> None:
    reply = api.request("GET", path)
    assert reply.status == 400
    assert reply.headers["Content-Type"].startswith("application/json")
    assert message in reply.json()["error"]


def test_stats(api: ApiThread) -> None:
    body = api.request("GET", "/api/stats").json()
    assert body["queries"]["total"] == 10 and body["queries"]["blocked"] == 4
    assert body["queries"]["block_rate"] == pytest.approx(0.4)
    assert body["queries"]["by_qtype"] == {"A": 4, "AAAA": 6}
    assert body["top_vendors"] == [{"vendor": "deepseek", "category": "chat", "count": 4}]
    assert body["cache"]["entries"] == 42
    assert body["policy"]["entries"] >= 1
    log = body["querylog"]
    assert log["enabled"] is True and log["written"] == 10
    assert log["summary"]["total"] == 10 and log["summary"]["blocked"] == 4
    assert log["summary"]["top_domains"][0]["name"] == BLOCKED_NAME


def test_querylog(api: ApiThread) -> None:
    rows = api.request("GET", "/api/querylog").json()["rows"]
    assert len(rows) == 10
    blocked = api.request("GET", "/api/querylog?blocked=1&limit=3").json()["rows"]
    assert len(blocked) == 3 and {r["outcome"] for r in blocked} == {"blocked"}
    one = api.request("GET", "/api/querylog?client=10.0.0.2&since=1h").json()["rows"]
    assert [(r["client"], r["name"]) for r in one] == [("10.0.0.2", BLOCKED_NAME)]


def test_querylog_off(control: FakeControl) -> None:
    thread = ApiThread(control, None).start()
    try:
        reply = thread.request("GET", "/api/querylog")
        assert reply.status == 404 and "query log is off" in reply.json()["error"]
        stats = thread.request("GET", "/api/stats").json()
        assert stats["querylog"] == {"enabled": False}
    finally:
        thread.stop()


def test_unknown_paths_and_methods_get_json_errors(api: ApiThread) -> None:
    missing = api.request("GET", "/api/nothing")
    assert missing.status == 404 and missing.json()["error"]
    assert api.request("GET", "/static/../api.py").status == 404
    assert api.request("GET", "/static/missing.js").status == 404
    wrong_method = api.request("GET", "/api/pause")
    assert wrong_method.status == 405 and wrong_method.json()["error"]
    # An unknown POST is refused before anything else is revealed.
    assert api.request("POST", "/api/nothing").status == 401


# ---------------------------------------------------------------------------------- who may ask what


def test_foreign_host_headers_are_refused(api: ApiThread) -> None:
    """DNS rebinding: a page on evil.example resolving to this server must not read the query log."""
    for host in ("evil.example:8053", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io"):
        refused = api.request("GET", "/api/querylog", headers={"Host": host})
        assert refused.status == 403, host
        assert "allowed_hosts" in refused.json()["error"]
    for host in ("localhost", f"localhost:{api.runner.port}", "app.localhost", "LOCALHOST.", "127.0.0.1",
                 "[::1]:8053", "10.0.0.5:8053", "[2001:db8::5]"):  # fmt: skip
        assert api.request("GET", "/api/health", headers={"Host": host}).status == 200, host


@pytest.mark.parametrize("host", ["", "user@127.0.0.1", "127.0.0.1/x", "a b", "[::1", "127.0.0.1:80:80"])
def test_a_malformed_host_header_is_a_400(api: ApiThread, host: str) -> None:
    assert api.request("GET", "/api/health", headers={"Host": host}).status == 400


def test_allowed_hosts_names_a_reverse_proxy(querylog: QueryLog) -> None:
    control = FakeControl(
        from_dict({"api": {"token": TOKEN, "allowed_hosts": ["DNS.example.org.", ".corp.example"]}})
    )
    thread = ApiThread(control, querylog).start()
    try:
        for host in ("dns.example.org", "dns.example.org:443", "Dns.Example.Org.", "corp.example",
                     "a.b.corp.example"):  # fmt: skip
            assert thread.request("GET", "/api/stats", headers={"Host": host}).status == 200, host
        for host in ("example.org", "x.dns.example.org", "dns.example.org.evil.test", "evilcorp.example"):
            assert thread.request("GET", "/api/stats", headers={"Host": host}).status == 403, host
    finally:
        thread.stop()


def raw_http(port: int, request: bytes) -> bytes:
    """Send ``request`` as is and return the whole reply (the API closes after an error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


MALFORMED = [
    b"GET /api/stats HTTP/1.0\r\n\r\n",  # no Host: HTTP/1.0 allows that, we do not
    b"GET /api/stats HTTP/1.1\r\nConnection: close\r\n\r\n",  # no Host in HTTP/1.1
    b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
    b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
    b"POST /api/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: nope\r\n\r\n",
    b"POST /api/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /api/stats HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/stats\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_request_is_a_4xx_without_a_traceback(
    api: ApiThread, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = raw_http(api.runner.port, request_bytes)
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500, reply[:200]
    assert api.request("GET", "/api/health").status == 200  # and the API still answers
    for record in caplog.records:
        assert record.exc_info is None and "Traceback" not in record.getMessage(), record.getMessage()
        assert record.getMessage().count("\n") == 0


def test_reads_need_the_token_when_read_token_is_set(querylog: QueryLog) -> None:
    control = FakeControl(from_dict({"api": {"token": TOKEN, "read_token": True}, "lists": TEST_LISTS}))
    thread = ApiThread(control, querylog).start()
    try:
        assert_reads_need_the_token(thread)
    finally:
        thread.stop()


def test_reads_need_the_token_when_the_api_is_not_bound_to_loopback(querylog: QueryLog) -> None:
    """Bound to 0.0.0.0 (the test still connects to 127.0.0.1 only): every address of the host reaches it."""
    control = FakeControl()
    assert control.settings.api.read_token is False
    thread = ApiThread(control, querylog, host="0.0.0.0").start()
    try:
        assert_reads_need_the_token(thread)
    finally:
        thread.stop()


def assert_reads_need_the_token(thread: ApiThread) -> None:
    for path in (
        "/api/stats",
        "/api/querylog",
        f"/api/check?name={BLOCKED_NAME}",
        "/metrics",
        "/api/nothing",
    ):
        refused = thread.request("GET", path)
        assert refused.status == 401, path
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert thread.request("GET", path, token="wrong").status == 401, path
        if path != "/api/nothing":
            assert thread.request("GET", path, token=TOKEN).status == 200, path
    # What holds no data stays open: the page must load to ask for the token; probes hold none.
    for path in ("/", "/static/dashboard.js", "/api/health", "/api/openapi.json"):
        assert thread.request("GET", path).status == 200, path


def test_reads_that_need_an_unset_token_are_refused(querylog: QueryLog) -> None:
    control = FakeControl(token="")
    thread = ApiThread(control, querylog, host="0.0.0.0").start()
    try:
        refused = thread.request("GET", "/api/querylog", token="anything")
        assert refused.status == 403 and "[api] token is empty" in refused.json()["error"]
        assert thread.request("GET", "/api/health").status == 200
    finally:
        thread.stop()


@pytest.mark.parametrize(
    ("read_token", "listen", "needed"),
    [
        (False, "127.0.0.1", False),
        (False, "127.0.0.53", False),
        (False, "::1", False),
        (False, "0.0.0.0", True),
        (False, "::", True),
        (False, "10.0.0.5", True),
        (False, "::ffff:127.0.0.1", True),  # a mapped address is a v6 socket: not provably loopback only
        (True, "127.0.0.1", True),
    ],
)
def test_when_reads_need_the_token(read_token: bool, listen: str, needed: bool) -> None:
    assert reads_need_token(read_token, listen) is needed


def test_openapi_describes_every_route(api: ApiThread, control: FakeControl) -> None:
    document = api.request("GET", "/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routed = {
        (route.resource.canonical, route.method)
        for route in make_app(control, listen_host="127.0.0.1").router.routes()
        if route.method != "HEAD" and not route.resource.canonical.startswith("/static/")
    }
    assert described == routed
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            if method == "post":
                assert {"401", "403"} <= set(operation["responses"]), path
                assert operation["security"] == [{"bearer": []}]
            elif path not in ("/", "/api/health", "/api/openapi.json"):  # reads of data
                assert {"401", "403"} <= set(operation["responses"]), path
                assert {"bearer": []} in operation["security"], path


def test_summary_cache_computes_once_for_concurrent_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from blockdns.ops import api as api_module

    class SlowLog:
        calls = 0

        def summary(self, since: float) -> dict[str, object]:
            SlowLog.calls += 1
            time.sleep(0.05)
            return {"calls": SlowLog.calls}

    async def scenario() -> None:
        cache = api_module.SummaryCache()
        log = SlowLog()
        results = await asyncio.gather(*(cache.get(log, 86400) for _ in range(5)))  # type: ignore[arg-type]
        assert SlowLog.calls == 1 and all(r == {"calls": 1} for r in results)
        assert await cache.get(log, 86400) == {"calls": 1}  # kept: 20 x 50 ms
        assert await cache.get(log, 3600) == {"calls": 2}  # another window is its own entry
        monkeypatch.setattr(api_module, "SUMMARY_MAX_AGE", 0.0)
        await cache.get(log, 60)
        assert (await cache.get(log, 60))["calls"] == 4  # expired at once: computed again

    asyncio.run(scenario())


def test_a_taken_port_is_one_clear_error(api: ApiThread, control: FakeControl) -> None:
    import asyncio

    from blockdns.errors import BlockdnsError
    from blockdns.ops.api import start_api

    async def clash() -> None:
        await start_api(control, None, "127.0.0.1", api.runner.port)

    with pytest.raises(BlockdnsError, match=r"cannot listen on 127\.0\.0\.1:\d+ for the admin API"):
        asyncio.run(clash())
