"""The application: binds the listeners to the engine and runs the lifecycle — signals, reload (SIGHUP,
file changes, the API), pause, background feed refresh, query log and admin API.

What a configuration wires together is built in one place,
:func:`blockdns.server.generation.build_generation`. A reload compiles the new policy off the event loop,
builds a new generation from it and swaps it in with one assignment; a bad new config — or an empty one,
which would otherwise mean the built-in defaults — is refused with one log line, counted, and the old one
keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blockdns import config as config_module
from blockdns.config import ListenAddress, Settings
from blockdns.errors import BlockdnsError, ConfigError
from blockdns.feeds.manifest import manifest_path, read_manifest
from blockdns.feeds.refresh import update_command
from blockdns.feeds.report import failed_feeds_summary
from blockdns.localdata import LocalData
from blockdns.ops.api import ApiRunner, start_api
from blockdns.ops.control import ReloadResult
from blockdns.ops.querylog import QueryLog, QueryLogWriter
from blockdns.policy import Decision, Policy
from blockdns.resolve.base import HTTPS, TLS
from blockdns.resolve.clientnames import ClientNames
from blockdns.resolve.upstream import Upstream
from blockdns.runtime import build_policy, catalog_dir, data_dir, feeds_file, guard_file, load_local
from blockdns.server import heap, rxdrops
from blockdns.server.connections import ConnectionSlots
from blockdns.server.engine import Engine
from blockdns.server.generation import Generation, Shared, build_generation
from blockdns.server.tasks import TaskSet
from blockdns.server.tcp import TcpServer
from blockdns.server.tlsaccept import (
    ProtocolTlsListener,
    StreamTlsListener,
    TlsListener,
    listening_socket,
)
from blockdns.server.tlsfiles import TlsFiles
from blockdns.server.udp import UdpProtocol
from blockdns.tomlfile import read_toml

if TYPE_CHECKING:
    from blockdns.ops.cluster import Cluster
    from blockdns.server.doh import DohServer

log = logging.getLogger("blockdns")

WATCH_INTERVAL = 2.0  # seconds between two looks at the watched files
# Binding these fails on hosts without IPv6; such an address is skipped with a warning instead of failing.
_UNAVAILABLE_ERRNOS = {99, 97}  # EADDRNOTAVAIL, EAFNOSUPPORT


@dataclass(frozen=True, slots=True)
class Listener:
    address: ListenAddress
    udp: asyncio.DatagramTransport
    tcp: asyncio.base_events.Server

    @property
    def port(self) -> int:
        return self.udp.get_extra_info("sockname")[1]


@dataclass(frozen=True, slots=True)
class EncryptedListener:
    """A DoT (``tls``) or DoH (``https``) listening socket."""

    kind: str
    address: ListenAddress
    server: TlsListener

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


class Server:
    """A running blockdns. Implements :class:`blockdns.ops.control.ServerControl`."""

    def __init__(
        self, settings: Settings, policy: Policy | None = None, local: LocalData | None = None
    ) -> None:
        self._settings = settings
        self.shared = Shared()
        self.stats = self.shared.stats
        self.pause_switch = self.shared.pause
        self.tasks = TaskSet(settings.server.max_inflight)
        generation = build_generation(settings, policy or build_policy(settings), self.shared, local=local)
        self.engine = Engine(generation, self.stats, self.tasks)
        self.tcp = TcpServer(
            self.engine,
            ConnectionSlots(
                self.stats,
                max_connections=settings.server.tcp_max_connections,
                max_per_client=settings.server.tcp_max_per_client,
                idle_timeout=settings.server.tcp_idle_timeout,
            ),
        )
        # Encrypted DNS: the certificate is read (and checked, one line for a bad file) before anything binds.
        self.tls_files = load_tls_files(settings)
        self.dot: TcpServer | None = None
        self.doh: DohServer | None = None
        if self.tls_files is not None:
            self.dot = TcpServer(self.engine, self.tcp.slots, TLS, self.tls_files)
            if settings.server.https_listen:
                from blockdns.server.doh import DohServer  # h2 and h11: loaded only for a DoH listener
                from blockdns.server.forwarded import TrustedProxies

                proxies = TrustedProxies(settings.server.proxy_networks())
                self.doh = DohServer(self.engine, self.tcp.slots, self.tls_files, proxies)
        self.client_names = ClientNames()  # for the query log: read by its writer thread
        self.listeners: list[Listener] = []
        self.encrypted: list[EncryptedListener] = []
        self.querylog: QueryLogWriter[Any] | None = None
        self.api: ApiRunner | None = None
        self.cluster: Cluster | None = None  # the link to the other replicas ([cluster] redis)
        self._background: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._watched: dict[Path, FileState] = {}
        self.last_refresh: float | None = None
        self.settle_heap = False  # freeze what is alive after every load (the process's own server only)

    # --------------------------------------------------------------------------------- ServerControl

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def reloads(self) -> int:
        return self.stats.reloads

    @property
    def generation(self) -> Generation:
        return self.engine.generation

    @property
    def policy(self) -> Policy:
        return self.engine.generation.policy

    @property
    def upstream(self) -> Upstream:
        return self.engine.generation.upstream

    @property
    def paused_until(self) -> float | None:
        remaining = self.pause_switch.until - time.monotonic()
        return time.time() + remaining if remaining > 0 else None

    def pause(self, seconds: float) -> float:
        self.pause_switch.until = time.monotonic() + seconds
        log.warning("blocking paused for %.0f seconds", seconds)
        until = time.time() + seconds
        if self.cluster is not None:
            self.cluster.announce_pause(until)
        return until

    def resume(self) -> None:
        self.pause_switch.until = 0.0
        log.warning("blocking resumed")
        if self.cluster is not None:
            self.cluster.announce_pause(None)

    def apply_pause(self, until: float | None, origin: str) -> None:
        """Another replica paused (until the wall-clock time ``until``) or resumed (None) blocking."""
        was_paused = self.pause_switch.paused()
        if until is None:
            self.pause_switch.until = 0.0
            if was_paused:
                log.warning("blocking resumed by replica %s", origin)
            return
        self.pause_switch.until = time.monotonic() + (until - time.time())
        log.warning("blocking paused for %.0f seconds by replica %s", until - time.time(), origin)

    async def reload_announced(self, origin: str) -> None:
        log.info("replica %s reloaded: reloading this replica's configuration and lists", origin)
        await self._reload()

    def check(self, name: str, client: str | None) -> Decision:
        return self.policy.decide(name, client)

    def cache_size(self) -> int:
        return len(self.engine.generation.cache)

    async def refresh_stats(self) -> None:
        """Nothing to gather: this process's counters are :attr:`stats` (a supervisor's are its workers')."""

    def worker_states(self) -> list[dict[str, object]]:
        return []

    async def reload(self) -> ReloadResult:
        """Re-read the config file and every list; swap them in only if all of it is valid. Asked for by
        someone (the API, SIGHUP): with ``[cluster] redis``, a reload that succeeds is announced, and the
        other replicas reload their own files."""
        result = await self._reload()
        if result.ok and self.cluster is not None:
            self.cluster.announce_reload()
        return result

    async def _reload(self) -> ReloadResult:
        """:meth:`reload` without telling the other replicas: for changes every replica sees by itself (its
        watched files, its own feed refresh) and for reloads another replica announced."""
        async with self._reload_lock:
            source = self._settings.source
            try:
                settings = await asyncio.to_thread(load_replacement, source) if source else self._settings
                policy = await asyncio.to_thread(build_policy, settings)
                local = await asyncio.to_thread(load_local, settings)
            except BlockdnsError as err:
                self.shared.stats.reloads_refused += 1
                log.error("reload refused, the last good configuration keeps serving: %s", err)
                return ReloadResult(False, str(err))
            self._apply(settings, policy, local)
            self._settle()
            self._snapshot_watched()  # before the relay: a file changed while it runs is seen as changed
            message = f"reloaded: {len(policy.catalog.vendors)} vendors, {policy.size} policy entries"
            result = await self._swapped_in(ReloadResult(True, message), "reload")
            self.shared.stats.reloads += 1  # counted once every process serving for this one has it
            log.info(result.message)
            return result

    async def reload_local(self) -> ReloadResult:
        """Re-read the hosts files (the local records with them) and swap in a generation with the new local
        data, keeping the configuration and the compiled policy; bad data is refused like a bad config."""
        async with self._reload_lock:
            try:
                local = await asyncio.to_thread(load_local, self._settings)
            except BlockdnsError as err:
                self.shared.stats.reloads_refused += 1
                log.error("hosts files not reloaded, the old local names keep serving: %s", err)
                return ReloadResult(False, str(err))
            self._apply(self._settings, self.policy, local)
            self._settle()
            self._snapshot_watched()
            message = f"reloaded the hosts files: {len(local)} local names"
            result = await self._swapped_in(ReloadResult(True, message), "reload_local")
            log.info(result.message)
            return result

    async def _swapped_in(self, result: ReloadResult, kind: str) -> ReloadResult:
        """A reload has swapped its generation in here; a supervisor relays it to its workers (``kind`` names
        the reload) and says how that went. A single process has nothing more to do."""
        return result

    def _apply(self, settings: Settings, policy: Policy, local: LocalData) -> None:
        old = self._settings
        for section, changed in (
            ("server.listen", settings.server.listen != old.server.listen),
            ("server.tls_listen", settings.server.tls_listen != old.server.tls_listen),
            ("server.https_listen", settings.server.https_listen != old.server.https_listen),
            ("querylog", settings.querylog != old.querylog),
            ("api.listen", settings.api.listen != old.api.listen),
            ("cluster.redis", settings.cluster != old.cluster),
        ):
            if changed:
                log.warning("%s changed: restart blockdns to apply it", section)
        previous = self.engine.generation
        generation = build_generation(settings, policy, self.shared, previous, local)
        self.tasks.limit = settings.server.max_inflight
        slots = self.tcp.slots
        slots.idle_timeout = settings.server.tcp_idle_timeout
        slots.max_connections = settings.server.tcp_max_connections
        slots.max_per_client = settings.server.tcp_max_per_client
        if self.tls_files is not None and settings.server.tls_cert and settings.server.tls_key:
            # a renewed certificate: every new handshake gets it; a bad one is refused and the old one kept
            self.tls_files.reload(
                settings.resolve_path(settings.server.tls_cert),
                settings.resolve_path(settings.server.tls_key),
            )
        if self.doh is not None:
            self.doh.proxies.networks = tuple(settings.server.proxy_networks())
        self._settings = settings
        self.engine.install(generation)
        self.client_names.configure(generation.local, generation.router)
        if generation.upstream is not previous.upstream:
            self._start_background(self._swap_upstream(generation.upstream, previous.upstream))
        if generation.router is not previous.router:
            self._start_background(self._swap_upstream(generation.router, previous.router))
        if generation.cache is not previous.cache:  # nothing reads the old cache's refreshes any more
            self._start_background(previous.cache.refreshes.cancel_all())
        elif generation.router is not previous.router:  # refreshes ran, and failed, against the old upstreams
            generation.cache.refreshes.forget_failures()
            self._start_background(generation.cache.refreshes.cancel_all())

    def _settle(self) -> None:
        """Freeze the heap again once the queries that started under the old generation are done (each
        holds it until then): frozen then, it could never be collected."""
        if self.settle_heap:
            delay = self._settings.resolver.total_timeout + heap.SETTLE_SLACK
            asyncio.get_running_loop().call_later(delay, heap.settle)

    async def _swap_upstream(self, new: Upstream, old: Upstream) -> None:
        await new.start()
        await old.close()

    # ------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.start_dns(self._settings.server.listen_addresses())
        await self.start_admin()

    async def start_dns(self, addresses: list[ListenAddress], *, reuse_port: bool = False) -> None:
        """Bind the listeners (``reuse_port``: join the SO_REUSEPORT group of the other worker processes) and
        start the upstreams."""
        for address in addresses:
            listener = await self._bind(address, reuse_port)
            if listener is not None:
                self.listeners.append(listener)
        if not self.listeners:
            raise BlockdnsError("no listen address could be bound")
        await self._bind_encrypted(reuse_port)
        self.start_upstreams()
        if rxdrops.SUPPORTED:
            udp_sockets = [listener.udp.get_extra_info("socket") for listener in self.listeners]
            self._start_background(rxdrops.sample_receive_drops(self.stats, udp_sockets))

    def start_upstreams(self) -> None:
        self._start_background(self.upstream.start())
        self._start_background(self.generation.router.start())
        self.client_names.configure(self.generation.local, self.generation.router)

    async def start_admin(self) -> None:
        """The query log (unless :meth:`start_querylog` started it), the cluster link, the admin API, the
        file watcher and the feed refresh."""
        if self.querylog is None:
            await self.start_querylog()
        self._start_cluster()
        await self._start_api()
        self._snapshot_watched()
        self._start_background(self._watch_files())
        if self._settings.lists.refresh_seconds() > 0:
            self._start_background(self._refresh_feeds())

    async def _bind(self, address: ListenAddress, reuse_port: bool = False) -> Listener | None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        # Port 0 (tests): take the port the kernel gives UDP, then bind TCP to the same one.
        for _attempt in range(20):
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: UdpProtocol(self.engine),
                    local_addr=(address.host, address.port),
                    family=family,
                    reuse_port=reuse_port or None,
                )
            except OSError as err:
                if err.errno in _UNAVAILABLE_ERRNOS:
                    log.warning("skipping %s: %s", address, err.strerror)
                    return None
                raise BlockdnsError(f"cannot listen on udp {address}: {err.strerror}") from None
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(
                    self.tcp.handle,
                    address.host,
                    port,
                    family=family,
                    reuse_address=True,
                    reuse_port=reuse_port or None,
                    backlog=256,
                )
            except OSError as err:
                udp.close()
                if address.port == 0:
                    continue  # the kernel's UDP port is taken for TCP: try another
                raise BlockdnsError(f"cannot listen on tcp {address}: {err.strerror}") from None
            return Listener(address, udp, tcp)
        raise BlockdnsError(f"cannot find a free port for {address}")

    async def _bind_encrypted(self, reuse_port: bool) -> None:
        """The DoT and DoH listeners: a connection takes its slot at accept, before its TLS handshake
        (:class:`TlsListener`)."""
        server = self._settings.server
        listeners: list[tuple[str, list[ListenAddress], Callable[[socket.socket], TlsListener]]] = []
        tls = self.tls_files
        if self.dot is not None and tls is not None:
            dot, dot_context, dot_allowed = self.dot, tls.dot, self.engine.allows

            def dot_listener(sock: socket.socket) -> TlsListener:  # streams: a handler per connection
                return StreamTlsListener(sock, dot, dot_context, dot_allowed, TLS)

            listeners.append((TLS, server.tls_addresses(), dot_listener))
        if self.doh is not None and tls is not None:
            doh, doh_context = self.doh, tls.doh

            def doh_allowed(client: str) -> bool:  # a trusted proxy relays its clients' queries
                return doh.engine.allows(client) or doh.proxies.trusted(client)

            def doh_listener(sock: socket.socket) -> TlsListener:  # a protocol: h2 and h11 are sans-IO
                return ProtocolTlsListener(sock, doh, doh_context, doh_allowed, HTTPS)

            listeners.append((HTTPS, server.https_addresses(), doh_listener))
        for kind, addresses, make_listener in listeners:
            for address in addresses:
                try:
                    sock = listening_socket(address.host, address.port, reuse_port=reuse_port)
                except OSError as err:
                    if err.errno in _UNAVAILABLE_ERRNOS:
                        log.warning("skipping %s %s: %s", kind, address, err.strerror)
                        continue
                    raise BlockdnsError(f"cannot listen on {kind} {address}: {err.strerror}") from None
                listening = make_listener(sock)
                listening.start()
                self.encrypted.append(EncryptedListener(kind, address, listening))

    async def start_querylog(self) -> None:
        settings = self._settings.querylog
        querylog: QueryLogWriter[Any]
        if settings.is_postgres():
            from blockdns.ops.querylog_pg import PostgresQueryLog  # psycopg is loaded only when it is used

            querylog = PostgresQueryLog(settings, self.shared.stats)
        else:
            path = self._settings.querylog_path()
            if path is None:
                return
            querylog = QueryLog(settings, path, self.shared.stats)
        querylog.client_names = self.client_names.name
        querylog.start()
        self.querylog = querylog
        self.engine.accounting.querylog = querylog

    def _start_cluster(self) -> None:
        url = self._settings.cluster.redis
        if not url:
            return
        from blockdns.ops.cluster import Cluster  # imports the Redis client: only when there is a cluster

        self.cluster = Cluster(url, self)
        self.cluster.start()

    async def _start_api(self) -> None:
        address = self._settings.api.address()
        if address is None:
            return
        self.api = await start_api(self, self.querylog, address[0], address[1])

    def _start_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        for listener in self.listeners:
            listener.udp.close()
            listener.tcp.close()
        for encrypted in self.encrypted:
            await encrypted.server.close()
        for stream in (self.tcp, self.dot, self.doh):
            if stream is not None:
                await stream.handlers.close()
        if self.cluster is not None:
            await self.cluster.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.tasks.cancel_all()
        await self.generation.cache.refreshes.cancel_all()
        if self.api is not None:
            with contextlib.suppress(Exception):
                await self.api.cleanup()
        if self.querylog is not None:
            await asyncio.to_thread(self.querylog.close)
        await self.client_names.close()
        await self.generation.router.close()
        await self.upstream.close()
        self._stopped.set()

    # ------------------------------------------------------------------------- background maintenance

    def _watched_paths(self) -> list[Path]:
        settings = self._settings
        paths = [p for p in (settings.source, feeds_file(settings), guard_file(settings)) if p]
        catalog = catalog_dir(settings)
        paths += sorted(catalog.glob("*.toml"))
        paths.append(catalog.parent / "guard.toml")
        directory = data_dir(settings)
        paths += sorted(directory.glob("*.list"))
        paths.append(manifest_path(directory))
        if settings.server.tls_cert and settings.server.tls_key:  # a renewed certificate is taken on change
            paths += [
                settings.resolve_path(settings.server.tls_cert),
                settings.resolve_path(settings.server.tls_key),
            ]
        return paths + settings.hosts_paths()

    def _watched_states(self) -> dict[Path, FileState]:
        return {path: _file_state(path) for path in self._watched_paths()}

    def _snapshot_watched(self) -> None:
        self._watched = self._watched_states()

    async def _watch_files(self) -> None:
        """Reload when the config, the catalogue, the feed definitions, the fetched lists or the hosts files
        change (when only hosts files changed, just the local names: the policy stays compiled), once the
        change has settled: two looks WATCH_INTERVAL apart must find every file as it was (modification
        time, size, inode). A file being written — an editor that truncates and then writes, a copy under
        way — changes between looks and is waited out; a reload never reads it half written unless the writer
        stalls for a whole interval, and then an empty file is still refused by :func:`load_replacement`.
        (A content hash would add nothing: a change the three do not show is a write within one timestamp
        tick that keeps the size, which the next look cannot tell from a finished one either.)

        The scan runs in a worker thread: a hundred stat calls would otherwise stall every query behind them
        for a millisecond or two."""
        changed: dict[Path, FileState] | None = None  # what the last look saw, when it differed
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            current = await asyncio.to_thread(self._watched_states)
            if current == self._watched:
                changed = None
            elif current != changed:
                changed = current  # moved since the last look: look again before reloading
            else:
                changed = None
                moved = {
                    path
                    for path in current.keys() | self._watched.keys()
                    if current.get(path) != self._watched.get(path)
                }
                self._watched = current
                if moved <= set(self._settings.hosts_paths()):
                    log.info("hosts files changed: reloading the local names")
                    await self.reload_local()
                else:
                    log.info("configuration or list files changed: reloading")
                    await self._reload()

    async def _refresh_feeds(self) -> None:
        """Run ``blockdns lists update`` in a child process every ``lists.refresh``; then reload.

        A child process keeps the fetch path (httpx, parsing large lists) out of the server's memory and
        event loop; the server only ever reads the finished, atomically written files.
        """
        period = self._settings.lists.refresh_seconds()
        manifest = manifest_path(data_dir(self._settings))
        first_wait = max(0.0, period - (time.time() - _mtime(manifest))) if manifest.exists() else 0.0
        await asyncio.sleep(first_wait)
        while True:
            command = update_command(self._settings.source)
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            _, err = await process.communicate()
            self.last_refresh = time.time()
            if process.returncode not in (0, 1):
                log.error("feed refresh failed: %s", err.decode(errors="replace").strip()[-300:])
            elif process.returncode == 1:
                states = await asyncio.to_thread(read_manifest, manifest.parent)
                log.warning("feed refresh: %s", failed_feeds_summary(states) or "some feeds failed")
            await self._reload()
            await asyncio.sleep(max(self._settings.lists.refresh_seconds(), 60.0))

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    def describe(self) -> str:
        policy = self.policy
        addresses = ", ".join(f"{listener.address.host}:{listener.port}" for listener in self.listeners)
        addresses += " (udp+tcp)"
        for encrypted in self.encrypted:
            bound = ListenAddress(host=encrypted.address.host, port=encrypted.port)
            addresses += f", {bound} ({'DoT' if encrypted.kind == TLS else 'DoH'})"
        mode = self._settings.resolver.mode
        generation = self.generation
        return (
            f"blockdns serving on {addresses}, {mode} mode, "
            f"{len(policy.catalog.vendors)} vendors, {policy.size} policy entries, "
            f"local names: {len(generation.local)}, forward zones: {len(generation.router.zones)}"
        )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


FileState = tuple[int, int, int] | None  # (mtime in ns, size, inode); None: missing or unreadable


def _file_state(path: Path) -> FileState:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def load_tls_files(settings: Settings) -> TlsFiles | None:
    """The certificate of the DoT/DoH listeners (None: there are none); a bad file raises ConfigError."""
    server = settings.server
    if not (server.tls_listen or server.https_listen):
        return None
    return TlsFiles.load(settings.resolve_path(server.tls_cert), settings.resolve_path(server.tls_key))


def load_replacement(path: Path) -> Settings:
    """The config file, read again for a reload (SIGHUP, the file watcher, the API).

    A file with no settings at all — empty, truncated to nothing, only comments — is refused rather than
    read as "all defaults": that would swap forward mode for recursion and drop the groups and the token
    because an editor truncated the file before writing it."""
    raw = read_toml(path)
    if not raw:
        raise ConfigError(
            "has no settings (empty?): refusing to reload to the built-in defaults; to run on the defaults,"
            " restart without --config",
            file=str(path),
        )
    return config_module.from_dict(raw, source=path)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run(settings: Settings) -> None:
    """Serve in this process until SIGINT or SIGTERM. SIGHUP reloads. Uses uvloop when it is installed.
    (``[server] workers`` above 1 runs :func:`blockdns.server.workers.run` instead.)"""
    configure_logging()
    load_tls_files(settings)  # a bad certificate or key fails here, one line, before the policy compiles
    policy = build_policy(settings)  # a bad config or catalogue fails here, before anything is bound
    local = load_local(settings)
    serving = _serve(settings, policy, local)
    del policy, local  # held by the coroutine until it drops them: a reload can free the first policy
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serving)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


async def _serve(settings: Settings, policy: Policy, local: LocalData) -> None:
    server = Server(settings, policy, local)
    del policy, local  # the server holds them; a reload must be able to free them
    server.settle_heap = True
    await server.start()
    heap.settle()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(server.reload()))
    log.info(server.describe())
    await stopping.wait()
    log.info("stopping")
    await server.stop()
