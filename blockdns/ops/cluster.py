"""Replicas that share one Redis (``[cluster] redis``): pause/resume, reloads and counters.

Nothing here is on the DNS path. Every replica keeps its own pause switch and configuration and answers from
them; Redis only carries what changed from one replica to the others, so a replica that loses Redis goes on
answering with its last state, logs one line, and reconnects by itself (with backoff), logging one more.

What is kept in Redis (every key starts with :data:`PREFIX`; give each cluster its own database number):

* ``blockdns:pause`` — the pause state as a last-writer-wins register: ``{"until", "changed", "origin"}``
  (wall-clock seconds; ``until`` 0 after a resume). A resume is a record too, not a deleted key, so a
  replica that reconnects can tell "resumed while I was away" (a newer record) from "Redis lost its data"
  (no record: it writes its own back). Every change is also published on :data:`CHANNEL`.
* ``blockdns:replica:<id>`` — one replica's counter totals (JSON), rewritten every
  :data:`COUNTER_INTERVAL` seconds with a TTL of three intervals, and ``blockdns:replicas`` — a sorted set
  of replica ids scored by when their totals expire; the cluster totals are the sum over the live ones.
* Reloads are only published: ``{"kind": "reload", "origin"}``. Each replica re-reads its own files (in
  Kubernetes, the same ConfigMap); a replica never re-publishes a reload it received.

Every message names the replica it came from (``origin``); a replica ignores its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from blockdns.ops.labels import qtype_label

if TYPE_CHECKING:
    from blockdns.ops.stats import ServerStats

log = logging.getLogger("blockdns.cluster")

PREFIX = "blockdns:"
CHANNEL = PREFIX + "events"
PAUSE_KEY = PREFIX + "pause"
REPLICAS_KEY = PREFIX + "replicas"
COUNTER_INTERVAL = 5.0  # seconds between two writes of this replica's counters
COUNTER_TTL = 3 * COUNTER_INTERVAL  # a replica silent for this long no longer counts
MAX_REPLICAS = 1000  # replicas summed into the cluster totals, at most
MAX_MESSAGE = 64 * 1024  # bytes; a longer message or record is ignored
TIMEOUT = 2.0  # seconds for any one Redis call (connect, read, write)
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0  # seconds between reconnection attempts, doubling

# Write a pause record only if it is newer than the stored one, and publish it, in one step: two replicas that
# reconnect together must not leave the older of their records in Redis. Returns the stored record when it
# was the newer one (the caller adopts it), else nil.
WRITE_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and tonumber(stored['changed'])
     and tonumber(stored['changed']) > tonumber(ARGV[2]) then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return nil
"""

Totals = dict[str, dict[str, int]]  # section -> label -> count, e.g. {"queries_by_outcome": {"blocked": 3}}


class ClusterMember(Protocol):
    """What the cluster asks of the server it belongs to (``server.app.Server``)."""

    stats: ServerStats

    def apply_pause(self, until: float | None, origin: str) -> None:
        """Pause blocking until the wall-clock time ``until`` (None: resume) because another replica did."""

    async def reload_announced(self, origin: str) -> None:
        """Reload from this replica's own files because another replica reloaded."""


@dataclass(frozen=True, slots=True)
class PauseRecord:
    until: float  # wall-clock time blocking comes back; 0: not paused
    changed: float  # wall-clock time of the change: the newer record wins
    origin: str

    def to_json(self) -> str:
        return json.dumps({"until": self.until, "changed": self.changed, "origin": self.origin})

    @classmethod
    def parse(cls, data: object) -> PauseRecord | None:
        """The record in ``data`` (a decoded JSON object), or None when it is not one."""
        if not isinstance(data, dict):
            return None
        until, changed, origin = data.get("until"), data.get("changed"), data.get("origin")
        if not (_is_number(until) and _is_number(changed) and isinstance(origin, str)):
            return None
        return cls(float(until), float(changed), origin[:200])  # type: ignore[arg-type]

    def paused_until(self, now: float) -> float | None:
        return self.until if self.until > now else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def display_url(url: str) -> str:
    """The URL without its user and password: the only form that is ever logged or shown."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def replica_id() -> str:
    """This process's name in the cluster: the host name (the pod's name in Kubernetes), the process id and a
    random part, so two replicas on one host (or in one test) never share it."""
    return f"{socket.gethostname()[:63]}:{os.getpid()}:{secrets.token_hex(3)}"


def counter_totals(stats: ServerStats) -> Totals:
    """The counters the cluster sums. Label sets are those of the server's own counters: bounded by the
    configuration (query types fold into a fixed list)."""
    by_outcome: dict[str, int] = {}
    by_group: dict[str, int] = {}
    by_qtype: dict[str, int] = {}
    for (qtype, outcome, group), count in stats.queries.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + count
        by_group[group] = by_group.get(group, 0) + count
        label = qtype_label(qtype)
        by_qtype[label] = by_qtype.get(label, 0) + count
    upstream = stats.upstream
    return {
        "queries_by_outcome": by_outcome,
        "queries_by_group": by_group,
        "queries_by_qtype": by_qtype,
        "cache": {"hits": stats.cache.hits, "misses": stats.cache.misses},
        "upstream": {
            "queries": upstream.queries,
            "replies": upstream.replies,
            "timeouts": upstream.timeouts,
            "errors": upstream.errors,
        },
        "problems": {
            "refused_clients": stats.refused_clients,
            "bad_packets": stats.bad_packets,
            "dropped_overload": stats.dropped_overload,
            "handler_failures": stats.handler_failures,
            "reloads_refused": stats.reloads_refused,
        },
    }


def add_totals(into: Totals, more: Mapping[str, object]) -> bool:
    """Add one replica's totals (as read from Redis) into ``into``; False (nothing added) when ``more`` is not
    shaped like :func:`counter_totals` output or is far larger than any configuration makes it."""
    checked: list[tuple[str, str, int]] = []
    for section, values in more.items():
        if not isinstance(values, dict) or len(values) > 10_000:
            return False
        for label, count in values.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                return False
            checked.append((str(section)[:100], str(label)[:200], count))
    for section, label, count in checked:
        bucket = into.setdefault(section, {})
        bucket[label] = bucket.get(label, 0) + count
    return True


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The cluster as ``GET /api/stats`` shows it."""

    replica: str
    url: str  # without credentials
    connected: bool
    replicas: int | None  # live replicas counted in ``totals``; None: Redis could not be asked
    totals: Totals | None


class Cluster:
    """This replica's link to the others. ``start()`` runs it in the background; it never raises into the
    event loop, and no call made for the DNS path waits on it."""

    def __init__(self, url: str, member: ClusterMember, replica: str | None = None) -> None:
        self.url = url
        self.display = display_url(url)
        self._password = urlsplit(url).password or ""
        self.member = member
        self.replica = replica or replica_id()
        self.connected = False
        self._client: redis.Redis | None = None
        self._state: PauseRecord | None = None  # the newest pause record this replica knows of
        self._pause_pending = False  # this replica's record must be written and published
        self._reload_pending = False  # a reload made here must be announced
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        self._outage_logged = False  # the one line about the current outage is written
        self._delay = BACKOFF_FIRST  # before the next connection attempt

    # ------------------------------------------------------------------------------- called by the server

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def announce_pause(self, until: float | None) -> None:
        """Blocking was paused (until ``until``) or resumed (None) on this replica: tell the others."""
        now = time.time()
        changed = max(now, self._state.changed + 1e-6) if self._state else now
        self._state = PauseRecord(until or 0.0, changed, self.replica)
        self._pause_pending = True
        self._wake.set()

    def announce_reload(self) -> None:
        """This replica reloaded on request (API, SIGHUP): the others reload their own files."""
        self._reload_pending = True
        self._wake.set()

    async def view(self) -> ClusterView:
        """The cluster totals: this replica's own counters as they are now, plus every other live replica's
        last written ones. Bounded by :data:`TIMEOUT`; when Redis cannot be asked, the totals are None."""
        client = self._client
        replicas: int | None = None
        totals: Totals | None = None
        if client is not None and self.connected:
            try:
                async with asyncio.timeout(TIMEOUT):
                    replicas, totals = await self._read_totals(client)
            except (RedisError, OSError, TimeoutError, ValueError):
                replicas, totals = None, None
        return ClusterView(self.replica, self.display, self.connected, replicas, totals)

    async def stop(self) -> None:
        """Stop, and take this replica's counters out of the cluster totals (best effort, bounded)."""
        for task in [self._task, *self._reloads]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in (self._task, *self._reloads) if t], return_exceptions=True)
        client = self._client
        self._client = None
        if client is None:
            return
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                if self.connected:
                    await self._write_changes(client)  # a resume just before a shutdown still goes out
                    await client.zrem(REPLICAS_KEY, self.replica)
                    await client.delete(self._counter_key(self.replica))
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await client.aclose()
        self.connected = False

    # ------------------------------------------------------------------------------------------ sessions

    async def _run(self) -> None:
        """Connect, serve the session until Redis goes away, wait, connect again: forever. One log line when
        Redis cannot be reached at start or is lost, one when it is back; nothing for each failed attempt."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # whatever Redis or the network did, DNS goes on
                if not self._outage_logged:
                    self._outage_logged = True
                    reason = self._redact(f"{type(err).__name__}: {err}")
                    if self.connected:
                        log.error(
                            "cluster: lost Redis at %s (%s); replica %s keeps answering with its last state"
                            " and reconnects by itself",
                            self.display,
                            reason,
                            self.replica,
                        )
                    else:
                        log.error(
                            "cluster: cannot reach Redis at %s (%s); replica %s answers with its own state"
                            " and keeps trying",
                            self.display,
                            reason,
                            self.replica,
                        )
            self.connected = False
            await self._drop_client()
            await asyncio.sleep(self._delay * random.uniform(0.5, 1.0))
            self._delay = min(self._delay * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        client = redis.Redis.from_url(
            self.url,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=int(COUNTER_INTERVAL),
            decode_responses=True,
        )
        self._client = client
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            # Subscribe before reading the state: a change made in between arrives as a message.
            await pubsub.subscribe(CHANNEL)
            await self._sync(client)
            await self._write_counters(client)
            self.connected = True
            self._delay = BACKOFF_FIRST
            if self._outage_logged:
                log.warning(
                    "cluster: connected to Redis at %s (replica %s); shared state synced",
                    self.display,
                    self.replica,
                )
            else:
                log.info("cluster: replica %s joined through Redis at %s", self.replica, self.display)
            self._outage_logged = False
            listener = asyncio.ensure_future(self._listen(pubsub))
            writer = asyncio.ensure_future(self._write(client))
            try:
                done, _ = await asyncio.wait({listener, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                listener.cancel()
                writer.cancel()
                await asyncio.gather(listener, writer, return_exceptions=True)
            for task in done:
                task.result()  # raises what ended the session
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(TIMEOUT):
                    await pubsub.aclose()

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(TIMEOUT):
                    await client.aclose()

    async def _sync(self, client: redis.Redis) -> None:
        """Settle the pause state with Redis on (re)connection: the newer record wins. Redis having none (a
        new or restarted Redis) while this replica has one means Redis lost it: write ours back."""
        remote = _decode_record(await client.get(PAUSE_KEY))
        local = self._state
        if remote is not None and (local is None or remote.changed > local.changed):
            self._adopt(remote)
        elif local is not None and (remote is None or local.changed > remote.changed):
            self._pause_pending = True
            self._wake.set()

    async def _listen(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(timeout=COUNTER_INTERVAL)
            if message is None or message.get("type") != "message":
                continue
            self._receive(message.get("data"))

    def _receive(self, data: object) -> None:
        if not isinstance(data, str) or len(data) > MAX_MESSAGE:
            return
        try:
            body = json.loads(data)
        except ValueError:
            return
        if not isinstance(body, dict) or body.get("origin") == self.replica:
            return
        kind = body.get("kind")
        if kind == "pause":
            record = PauseRecord.parse(body)
            if record is not None and (self._state is None or record.changed >= self._state.changed):
                self._adopt(record)
        elif kind == "reload":
            if len(self._reloads) >= 2:
                return  # one reload runs and one waits: the waiting one will read whatever changed since
            origin = str(body.get("origin"))[:200]
            task = asyncio.get_running_loop().create_task(self.member.reload_announced(origin))
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    def _adopt(self, record: PauseRecord) -> None:
        self._state = record
        self.member.apply_pause(record.paused_until(time.time()), record.origin)

    async def _write(self, client: redis.Redis) -> None:
        """Write what changed here (pause state, reload announcements) as soon as it changes, and the counters
        every :data:`COUNTER_INTERVAL` seconds."""
        next_counters = time.monotonic() + COUNTER_INTERVAL
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_counters - time.monotonic())):
                    await self._wake.wait()
            self._wake.clear()
            await self._write_changes(client)
            if time.monotonic() >= next_counters:
                await self._write_counters(client)
                next_counters = time.monotonic() + COUNTER_INTERVAL

    async def _write_changes(self, client: redis.Redis) -> None:
        """Write and publish this replica's pause record, if it changed, and announce its reload, if any. What
        could not be written stays pending for the next connection."""
        if self._pause_pending and self._state is not None:
            self._pause_pending = False
            record = self._state
            message = json.dumps({"kind": "pause", **_fields(record)})
            try:
                newer = await client.eval(
                    WRITE_IF_NEWER, 1, PAUSE_KEY, record.to_json(), repr(record.changed), CHANNEL, message
                )
            except BaseException:
                self._pause_pending = True
                raise
            stored = _decode_record(newer)
            if stored is not None and self._state is record:
                self._adopt(stored)
        if self._reload_pending:
            self._reload_pending = False
            await client.publish(CHANNEL, json.dumps({"kind": "reload", "origin": self.replica}))

    # ---------------------------------------------------------------------------------------- counters

    def _counter_key(self, replica: str) -> str:
        return f"{PREFIX}replica:{replica}"

    async def _write_counters(self, client: redis.Redis) -> None:
        body = json.dumps(counter_totals(self.member.stats), separators=(",", ":"))
        expires = time.time() + COUNTER_TTL
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(self._counter_key(self.replica), body, px=int(COUNTER_TTL * 1000))
            pipe.zadd(REPLICAS_KEY, {self.replica: expires})
            pipe.zremrangebyscore(REPLICAS_KEY, "-inf", time.time())
            await pipe.execute()

    async def _read_totals(self, client: redis.Redis) -> tuple[int, Totals]:
        ids = await client.zrangebyscore(REPLICAS_KEY, time.time(), "+inf", start=0, num=MAX_REPLICAS)
        others = [str(replica) for replica in ids if replica != self.replica]
        totals: Totals = {}
        add_totals(totals, counter_totals(self.member.stats))
        counted = 1
        values = await client.mget([self._counter_key(r) for r in others]) if others else []
        for value in values:
            if not isinstance(value, str) or len(value) > MAX_MESSAGE:
                continue
            try:
                body = json.loads(value)
            except ValueError:
                continue
            if isinstance(body, dict) and add_totals(totals, body):
                counted += 1
        return counted, totals

    def _redact(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text


def _fields(record: PauseRecord) -> dict[str, object]:
    return {"until": record.until, "changed": record.changed, "origin": record.origin}


def _decode_record(value: object) -> PauseRecord | None:
    if not isinstance(value, str) or len(value) > MAX_MESSAGE:
        return None
    try:
        return PauseRecord.parse(json.loads(value))
    except ValueError:
        return None
