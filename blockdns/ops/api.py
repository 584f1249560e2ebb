"""The admin HTTP API, the dashboard and ``/metrics``, served by aiohttp on the server's event loop.

Who may ask what is decided in :mod:`blockdns.ops.httpaccess`: every request must name an accepted host in
``Host`` (against DNS rebinding); every change (any method but GET, HEAD, OPTIONS) needs
``Authorization: Bearer TOKEN`` equal to ``[api] token`` (compared in constant time), and so do reads of
data when ``[api] read_token`` is set or the API is not bound to loopback. An empty configured token refuses
whatever needs it with 403. Settings are read from ``control.settings`` on every request, so a reload that
changes them takes effect at once; the bound address is the one the API actually listens on.

Nothing slow runs on the event loop: query log reads run in a worker thread, and ``/metrics`` and
``/api/stats`` are rendered in one from a snapshot of the counters (:mod:`blockdns.ops.snapshot`). A
malformed request gets a 4xx and one log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from blockdns.config import parse_duration
from blockdns.errors import BlockdnsError, InvalidName
from blockdns.ops import metrics
from blockdns.ops.clientid import QueryLogError
from blockdns.ops.httpaccess import host_allowed, host_name, reads_need_token
from blockdns.ops.openapi import document
from blockdns.ops.snapshot import Snapshot, cluster_body, paused_until, stats_body, take_snapshot
from blockdns.resolve.explain import decision_evidence

if TYPE_CHECKING:
    from blockdns.ops.cluster import ClusterView
    from blockdns.ops.control import ServerControl
    from blockdns.ops.querylog import QueryLogWriter

    QueryLog = QueryLogWriter[Any]

log = logging.getLogger("blockdns.api")

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_PAUSE = "5m"
MAX_PAUSE = 30 * 86400.0
DEFAULT_STATS_SINCE = 86400.0
MAX_BODY = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTROL: web.AppKey[ServerControl] = web.AppKey("control")
QUERYLOG: web.AppKey[QueryLog | None] = web.AppKey("querylog")
MANIFEST: web.AppKey[metrics.FeedManifest] = web.AppKey("manifest")
SUMMARIES: web.AppKey[SummaryCache] = web.AppKey("summaries")
LISTEN_HOST: web.AppKey[str] = web.AppKey("listen_host")
# Routes that hold no data: the dashboard must load to ask for the token; probes cannot hold one.
PUBLIC_ROUTES = frozenset({"/", "/static/{name}", "/api/health", "/api/openapi.json"})

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SUMMARY_COST_FACTOR = 20.0  # keep a summary this many times as long as it took to compute...
SUMMARY_MAX_AGE = 30.0  # ...but never longer than this


class SummaryCache:
    """The query log summary for ``GET /api/stats``, computed once for concurrent callers and kept for a
    while in proportion to its cost: free on a small log, at most ~5% of a core on a big one however many
    dashboards are open."""

    def __init__(self) -> None:
        self._entries: dict[float, tuple[float, asyncio.Future[dict[str, object]]]] = {}

    async def get(self, querylog: QueryLog, seconds: float) -> dict[str, object]:
        now = time.monotonic()
        entry = self._entries.get(seconds)
        if entry is None or entry[0] <= now:
            if len(self._entries) > 32:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            future = asyncio.ensure_future(self._compute(querylog, seconds))
            entry = (float("inf"), future)  # fresh until computed
            self._entries[seconds] = entry
        return await asyncio.shield(entry[1])

    async def _compute(self, querylog: QueryLog, seconds: float) -> dict[str, object]:
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(querylog.summary, time.time() - seconds)
        except BaseException:
            self._entries.pop(seconds, None)
            raise
        elapsed = time.monotonic() - started
        current = self._entries.get(seconds)
        if current is not None:
            keep = min(SUMMARY_MAX_AGE, elapsed * SUMMARY_COST_FACTOR)
            self._entries[seconds] = (time.monotonic() + keep, current[1])
        return result


class ApiRunner(web.AppRunner):
    """The running API; ``host`` and ``port`` are what it actually bound (port 0 picks a free one)."""

    @property
    def host(self) -> str:
        return str(self.addresses[0][0])

    @property
    def port(self) -> int:
        return int(self.addresses[0][1])

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, allow_nan=False, default=str)


def ok(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


# ------------------------------------------------------------------------------------------ middlewares


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check, token check, JSON errors for the API, security headers on everything."""
    try:
        refusal = _refusal(request)
        response = refusal if refusal is not None else await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("admin API: %s %s failed", request.method, request.path)
        response = error(500, "internal error; see the server log")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _refusal(request: web.Request) -> web.Response | None:
    """Why this request is not served, as the response to send; None when it may go on."""
    settings = request.app[CONTROL].settings.api
    host = request.headers.get("Host", "")  # not request.host: that falls back to the socket's address
    name = host_name(host)
    if name is None:
        return error(400, "a Host header naming this server is required")
    if not host_allowed(name, settings.allowed_hosts):
        return error(
            403,
            f"Host {name[:100]!r} is not accepted: use an IP address or localhost, or add the name to"
            " [api] allowed_hosts",
        )
    if request.method not in SAFE_METHODS:
        return _check_token(request, "changes")
    if _is_public(request) or not reads_need_token(settings.read_token, request.app[LISTEN_HOST]):
        return None
    return _check_token(request, "reads")


def _is_public(request: web.Request) -> bool:
    match = request.match_info
    if match.http_exception is not None:
        return False
    resource = match.route.resource
    return resource is not None and resource.canonical in PUBLIC_ROUTES


def _check_token(request: web.Request, what: str) -> web.Response | None:
    token = request.app[CONTROL].settings.api.token
    if not token:
        if what == "changes":
            return error(403, "changes are disabled: set [api] token in the config to allow them")
        return error(
            403,
            "reads need the token (the API is not bound to loopback, or [api] read_token is set) and"
            " [api] token is empty: set it in the config",
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = error(401, "missing or wrong token: send Authorization: Bearer TOKEN")
        response.headers["WWW-Authenticate"] = 'Bearer realm="blockdns"'
        return response
    return None


class ProtocolErrorFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (no Host in HTTP/1.1, a bad header, a line too long) with a
    traceback before answering 400. Anyone who can connect can send one: one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            message = " ".join(str(exc.message).split())[:200]
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "admin API: bad request from %s: %s %s"
            record.args = (peer, exc.code, message)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


server_log = logging.getLogger("blockdns.api.http")
server_log.addFilter(ProtocolErrorFilter())


# ---------------------------------------------------------------------------------------- input parsing


class BadInput(Exception):
    """A request parameter that cannot be used: becomes a 400 with this message."""


def _since_seconds(request: web.Request, default: float | None) -> float | None:
    """How far back ``since`` reaches, in seconds (``default`` when absent)."""
    text = request.query.get("since", "").strip()
    if not text:
        return default
    try:
        return parse_duration(text)
    except ValueError as err:
        raise BadInput(f"since: {err}") from None


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", "100").strip()
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise BadInput(f"limit: {text!r} is not a whole number from 1 to 10000")
    return int(text)


def _flag(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise BadInput(f"{name}: {text!r} is not true or false")


def _client(request: web.Request) -> str | None:
    text = request.query.get("client", "").strip()
    return text or None


def _address(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        raise BadInput(f"client: {text!r} is not an IP address") from None


async def _json_body(request: web.Request) -> dict[str, object]:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object")
    return body


def _pause_seconds(body: dict[str, object]) -> float:
    value = body.get("duration", DEFAULT_PAUSE)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadInput('duration: give a duration such as "5m", "1h" or a number of seconds')
    try:
        seconds = parse_duration(value)
    except ValueError as err:
        raise BadInput(f"duration: {err}") from None
    if not 0 < seconds <= MAX_PAUSE:
        raise BadInput("duration: must be more than 0 and at most 30d")
    return seconds


def bad_input(func: Handler) -> Handler:
    """Turn :class:`BadInput` and user-level blockdns errors raised by a handler into a 400."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await func(request)
        except (BadInput, InvalidName, QueryLogError) as err:
            return error(400, str(err))

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


# --------------------------------------------------------------------------------------------- handlers


@bad_input
async def get_stats(request: web.Request) -> web.StreamResponse:
    seconds = _since_seconds(request, DEFAULT_STATS_SINCE)
    assert seconds is not None
    querylog = request.app[QUERYLOG]
    await request.app[CONTROL].refresh_stats()
    snapshot = take_snapshot(request.app[CONTROL], querylog)
    summary: dict[str, object] | None = None
    problem: str | None = None
    if querylog is not None:
        try:
            summary = await request.app[SUMMARIES].get(querylog, seconds)
        except QueryLogError as err:
            problem = str(err)
    cluster = request.app[CONTROL].cluster
    view = await cluster.view() if cluster is not None else None
    text = await asyncio.to_thread(_stats_json, snapshot, summary, problem, view)
    return web.Response(text=text, content_type="application/json")


def _stats_json(
    snapshot: Snapshot, summary: dict[str, object] | None, problem: str | None, view: ClusterView | None
) -> str:
    body = stats_body(snapshot)
    body["cluster"] = cluster_body(view)
    if snapshot.querylog is not None:
        state = body["querylog"]
        assert isinstance(state, dict)
        state["summary"] = summary
        if problem is not None:
            state["error"] = problem
    return _dumps(body)


@bad_input
async def get_querylog(request: web.Request) -> web.StreamResponse:
    querylog = request.app[QUERYLOG]
    limit, blocked, client = _limit(request), _flag(request, "blocked"), _client(request)
    seconds = _since_seconds(request, None)
    since = time.time() - seconds if seconds is not None else None
    if querylog is None:
        return error(404, 'the query log is off ([querylog] path = "")')
    rows = await asyncio.to_thread(querylog.recent, limit, blocked, client, since)
    return ok({"rows": rows})


@bad_input
async def get_check(request: web.Request) -> web.StreamResponse:
    name = request.query.get("name", "").strip()
    if not name:
        raise BadInput("name: give the name to check, e.g. /api/check?name=chat.deepseek.com")
    client = _address(_client(request))
    try:
        decision = request.app[CONTROL].check(name, client)
    except BlockdnsError as err:
        raise BadInput(str(err)) from None
    # The policy keeps no evidence: it is read from the vendor file, off the event loop.
    return ok(decision.to_json() | {"evidence": await asyncio.to_thread(decision_evidence, decision)})


@bad_input
async def post_pause(request: web.Request) -> web.StreamResponse:
    seconds = _pause_seconds(await _json_body(request))
    control = request.app[CONTROL]
    until = control.pause(seconds)
    log.warning("admin API: blocking paused for %.0fs by %s", seconds, request.remote)
    return ok({"paused": True, "paused_until": until, "seconds": seconds})


async def post_resume(request: web.Request) -> web.StreamResponse:
    control = request.app[CONTROL]
    control.resume()
    log.warning("admin API: blocking resumed by %s", request.remote)
    return ok({"paused": False, "paused_until": None})


async def post_reload(request: web.Request) -> web.StreamResponse:
    log.info("admin API: reload requested by %s", request.remote)
    result = await request.app[CONTROL].reload()
    body = {"ok": result.ok, "message": result.message}
    if not result.ok:
        return ok({**body, "error": result.message}, status=409)
    return ok(body)


async def get_metrics(request: web.Request) -> web.StreamResponse:
    await request.app[CONTROL].refresh_stats()
    snapshot = take_snapshot(request.app[CONTROL], request.app[QUERYLOG])
    text = await asyncio.to_thread(metrics.render, snapshot, request.app[MANIFEST])
    response = web.Response(body=text)
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


async def get_openapi(request: web.Request) -> web.StreamResponse:
    return ok(document())


async def get_health(request: web.Request) -> web.StreamResponse:
    control = request.app[CONTROL]
    return ok({"status": "ok", "paused": paused_until(control) is not None})


async def get_dashboard(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        STATIC_DIR / "dashboard.html", headers={"Content-Type": "text/html; charset=utf-8"}
    )


async def get_static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    types = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
    path = STATIC_DIR / name
    kind = types.get(name.rsplit(".", 1)[-1])
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        return error(404, "not found")
    return web.FileResponse(path, headers={"Content-Type": f"{kind}; charset=utf-8"})


# ------------------------------------------------------------------------------------------------- app


def make_app(
    control: ServerControl, querylog: QueryLog | None = None, *, listen_host: str
) -> web.Application:
    """The API for a server; ``listen_host`` is the address it is bound to (it decides whether reads need
    the token)."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[CONTROL] = control
    app[QUERYLOG] = querylog
    app[MANIFEST] = metrics.FeedManifest()
    app[SUMMARIES] = SummaryCache()
    app[LISTEN_HOST] = listen_host
    app.router.add_get("/", get_dashboard)
    app.router.add_get("/static/{name}", get_static)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/api/stats", get_stats)
    app.router.add_get("/api/querylog", get_querylog)
    app.router.add_get("/api/check", get_check)
    app.router.add_get("/api/health", get_health)
    app.router.add_get("/api/openapi.json", get_openapi)
    app.router.add_post("/api/pause", post_pause)
    app.router.add_post("/api/resume", post_resume)
    app.router.add_post("/api/lists/reload", post_reload)
    return app


async def start_api(control: ServerControl, querylog: QueryLog | None, host: str, port: int) -> ApiRunner:
    """Serve the API on ``host:port`` (port 0: any free port; read it from ``runner.port``).

    Stop it with ``await runner.cleanup()``. Raises :class:`BlockdnsError` (one line) when the address cannot
    be bound.
    """
    app = make_app(control, querylog, listen_host=host)
    runner = ApiRunner(app, access_log=None, handle_signals=False, logger=server_log)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
    except OSError as err:
        await runner.cleanup()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise BlockdnsError(
            f"cannot listen on {where} for the admin API ([api] listen): {err.strerror}"
        ) from None
    except BaseException:
        await runner.cleanup()
        raise
    log.info("admin API on %s", runner.url)
    settings = control.settings.api
    if reads_need_token(settings.read_token, host) and not settings.token:
        log.warning(
            "admin API: reads need the token (%s) and [api] token is empty: only the dashboard page and"
            " /api/health answer",
            "read_token = true" if settings.read_token else f"bound to {host}, not loopback",
        )
    return runner
