"""``GET /api/openapi.json``: an OpenAPI 3.0 description of the admin API, kept beside the code it describes
(a test checks that every route of the app is described and every described path is routed)."""

from __future__ import annotations

from typing import Any

from blockdns import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR, description)


_CHANGE_ERRORS = {
    "401": _error("missing or wrong `Authorization: Bearer TOKEN`"),
    "403": _error("no token is configured (`[api] token` is empty), so every change is refused"),
}

# Reads of data need the token when `[api] read_token = true` or the API is not bound to loopback.
_READ_ERRORS = {
    "401": _error("the token is needed for reads here, and it is missing or wrong"),
    "403": _error("the token is needed for reads here and `[api] token` is empty"),
}
# The token, or nothing on an API bound to loopback.
_READ_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {}]

_SINCE = {
    "name": "since",
    "in": "query",
    "required": False,
    "description": "how far back: a duration such as `90s`, `15m`, `1h`, `7d` (default: `24h` for stats,"
    " the whole log for the query log)",
    "schema": {"type": "string", "example": "1h"},
}

_ROW = {
    "type": "object",
    "properties": {
        "ts": {"type": "number", "description": "seconds since the epoch"},
        "client": {"type": "string", "nullable": True, "description": "address, keyed hash, or null"},
        "client_name": {
            "type": "string",
            "nullable": True,
            "description": "the client's name from local records, hosts files or a forward zone's PTR"
            " (only when the log keeps full addresses)",
            "example": "laptop-anna.home.arpa",
        },
        "group": {"type": "string"},
        "name": {"type": "string"},
        "qtype": {"type": "string", "example": "AAAA"},
        "outcome": {
            "type": "string",
            "enum": ["resolved", "cached", "stale", "blocked", "local", "refused", "error"],
        },
        "rcode": {"type": "string", "example": "NXDOMAIN"},
        "reason": {"type": "string", "nullable": True},
        "rule": {"type": "string", "nullable": True},
        "selector": {"type": "string", "nullable": True},
        "vendor": {"type": "string", "nullable": True},
        "category": {"type": "string", "nullable": True},
        "upstream": {"type": "string", "nullable": True},
        "duration_ms": {"type": "number"},
        "transport": {"type": "string", "example": "udp"},
        "client_id": {
            "type": "string",
            "nullable": True,
            "description": "the client ID that chose the group: a DoH path /dns-query/NAME or a DoT SNI"
            " NAME.<server name> listed in a group's client_ids",
            "example": "laptop",
        },
    },
}

_DECISION = {
    "type": "object",
    "required": ["name", "blocked", "action", "group"],
    "properties": {
        "name": {"type": "string"},
        "blocked": {"type": "boolean"},
        "action": {"type": "string", "enum": ["block", "allow", "none"]},
        "rule": {"type": "string", "nullable": True, "description": "the matching domain entry"},
        "selector": {"type": "string", "nullable": True, "example": "vendor:deepseek"},
        "vendor": {"type": "string", "nullable": True},
        "vendor_name": {"type": "string", "nullable": True},
        "category": {"type": "string", "nullable": True},
        "jurisdiction": {"type": "string", "nullable": True},
        "feed": {"type": "string", "nullable": True},
        "group": {"type": "string"},
        "via": {"type": "string", "nullable": True},
        "reason": {"type": "string"},
    },
}

_PAUSE_STATE = {
    "type": "object",
    "properties": {
        "paused": {"type": "boolean"},
        "paused_until": {"type": "number", "nullable": True, "description": "seconds since the epoch"},
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "blockdns admin API",
            "version": __version__,
            "description": "Statistics, the query log, policy checks and run-time control of a blockdns"
            " server. Every POST needs `Authorization: Bearer TOKEN` matching `[api] token`, and an empty"
            " token refuses every change. Reads of data (stats, query log, check, metrics) need it too when"
            " `[api] read_token = true` or the API is not bound to a loopback address. Every request must"
            " carry a `Host` that is an IP address, `localhost` or a name in `[api] allowed_hosts` (400"
            " without one, 403 for another name).",
        },
        "paths": {
            "/api/stats": {
                "get": {
                    "summary": "Server counters, pause state, and a summary of the query log",
                    "security": _READ_SECURITY,
                    "parameters": [_SINCE],
                    "responses": {
                        "200": _json(
                            {"type": "object"},
                            "this replica's counters since start; `querylog.summary` covers"
                            " `since`: totals, block rate, top vendors/domains/clients, a time series;"
                            " `cluster.totals`: the counters of every live replica sharing `[cluster] redis`",
                        ),
                        "400": _error("bad `since`"),
                        **_READ_ERRORS,
                    },
                }
            },
            "/api/querylog": {
                "get": {
                    "summary": "Recent queries, newest first",
                    "security": _READ_SECURITY,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
                        },
                        {
                            "name": "blocked",
                            "in": "query",
                            "description": "only blocked queries",
                            "schema": {"type": "boolean", "default": False},
                        },
                        {
                            "name": "client",
                            "in": "query",
                            "description": "one client's address (or its hash)",
                            "schema": {"type": "string"},
                        },
                        _SINCE,
                    ],
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"rows": {"type": "array", "items": _ROW}}},
                            "the matching rows",
                        ),
                        "400": _error("bad parameter, or a client filter the privacy mode cannot apply"),
                        "404": _error("the query log is off"),
                        **_READ_ERRORS,
                    },
                }
            },
            "/api/check": {
                "get": {
                    "summary": "Explain the decision for a name, as the running server would take it",
                    "security": _READ_SECURITY,
                    "parameters": [
                        {"name": "name", "in": "query", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "client",
                            "in": "query",
                            "description": "client IP (picks its group)",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": _json(_DECISION, "the decision"),
                        "400": _error("missing or bad input"),
                        **_READ_ERRORS,
                    },
                }
            },
            "/api/pause": {
                "post": {
                    "summary": "Turn blocking off for a while; it comes back on by itself",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "duration": {
                                            "type": "string",
                                            "example": "5m",
                                            "description": "up to 30d; default 5m",
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_PAUSE_STATE, "paused"),
                        "400": _error("bad duration"),
                        **_CHANGE_ERRORS,
                    },
                }
            },
            "/api/resume": {
                "post": {
                    "summary": "Turn blocking back on now",
                    "security": [{"bearer": []}],
                    "responses": {"200": _json(_PAUSE_STATE, "blocking is on"), **_CHANGE_ERRORS},
                }
            },
            "/api/lists/reload": {
                "post": {
                    "summary": "Reload the config, catalogue and feed data (like SIGHUP)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Reload"}, "reloaded"),
                        "409": _json(
                            {"$ref": "#/components/schemas/Reload"},
                            "refused: the new config or lists are invalid; the old ones keep serving",
                        ),
                        **_CHANGE_ERRORS,
                    },
                }
            },
            "/api/health": {
                "get": {
                    "summary": "Liveness: the API answers",
                    "responses": {"200": _json({"type": "object"}, '`{"status": "ok"}`')},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": _READ_SECURITY,
                    "responses": {
                        "200": {
                            "description": "text exposition",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_READ_ERRORS,
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The dashboard",
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Reload": {
                    "type": "object",
                    "properties": {"ok": {"type": "boolean"}, "message": {"type": "string"}},
                },
            },
        },
    }
