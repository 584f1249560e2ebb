"""``[server] workers = N``: N worker processes answer DNS on the same addresses; one supervisor runs them.

Process model (docs/operations.md, "Worker processes"):

* The **supervisor** loads the configuration and compiles the policy once, picks the real port of every
  ``:0`` listen address (a probe socket pair bound with SO_REUSEPORT, held until the workers have bound), and
  then forks the **zygote** before it starts any thread or event loop. It binds no DNS socket: it owns the
  admin API, the query log's one writer, the file watcher, the feed refresh and the cluster link, and it
  relays reloads, pause/resume and counters between them and the workers.
* The **zygote** forks every worker, the first ones and those that replace a dead one. A fork from a process
  with threads (the supervisor has the query-log writer and the event loop's executor) can leave the child
  on a lock that a vanished thread held; the zygote has one thread and no loop. Every worker it forks shares
  the startup policy's pages copy-on-write (``gc.freeze()`` before the fork keeps the collector from writing
  to them). It reaps the workers and reports each exit to the supervisor.
* Each **worker** is a :class:`~blockdns.server.app.Server` that binds its own UDP and TCP sockets on every
  address with SO_REUSEPORT (the kernel spreads queries and connections over them by a hash of the source
  address and port), runs no API, watcher or query-log writer, and talks to the supervisor over a Unix socket
  pair (:mod:`blockdns.server.workerlink`): reloads, pause state, counters and its query-log rows.

A worker that dies is replaced, at once after a long life, with a doubling delay (0.5 s up to 30 s) after a
short one, so a crash loop does not spin; each death is logged once with its exit status. A worker whose
supervisor dies reads end-of-file on its link and stops (and PR_SET_DEATHSIG ends the zygote, and a worker
whose zygote died). SIGINT and SIGTERM to the supervisor stop every worker (SIGTERM), then itself. SIGHUP, a
file change, a feed refresh, the API's reload and a cluster reload all reload the supervisor first (a bad
configuration is refused there, once) and then every worker, each compiling its own copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import logging
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn

from blockdns.config import ListenAddress, Settings
from blockdns.errors import BlockdnsError, ConfigError
from blockdns.localdata import LocalData
from blockdns.ops.control import ReloadResult
from blockdns.ops.stats import ServerStats
from blockdns.policy import Policy
from blockdns.runtime import build_policy, load_local
from blockdns.server.app import Server, configure_logging, load_replacement, load_tls_files, loop_factory
from blockdns.server.workerlink import ChannelSink, Link, LinkClosed, WorkerInit

log = logging.getLogger("blockdns.workers")

READY_TIMEOUT = 120.0  # seconds for the first workers to bind (a worker may compile a changed policy first)
ASK_TIMEOUT = 2.0  # seconds a worker has to send its counters
RELOAD_TIMEOUT = 300.0  # seconds a worker has to compile and swap in a reloaded configuration
STOP_TIMEOUT = 10.0  # seconds workers have to stop after SIGTERM before SIGKILL
STATS_INTERVAL = 2.0  # seconds between two collections of the workers' counters
STABLE_LIFE = 10.0  # a worker that lived this long is replaced at once; a shorter life doubles the delay
RESTART_SOON, RESTART_FIRST, RESTART_MAX = 0.2, 0.5, 30.0
_PR_SET_PDEATHSIG = 1
_UNAVAILABLE_ERRNOS = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}


def run(settings: Settings) -> None:
    """Serve with ``[server] workers`` processes until SIGINT or SIGTERM."""
    configure_logging()
    check_encrypted_listeners(settings)
    policy = build_policy(settings)  # a bad config or catalogue fails here, once, before any fork
    local = load_local(settings)
    supervise(settings, policy, local)


def check_encrypted_listeners(settings: Settings) -> None:
    """The DoT/DoH listeners work with workers: each worker binds every ``tls_listen`` and ``https_listen``
    address with SO_REUSEPORT, like the plain ones. Refused here, before any fork: a bad certificate (one
    line), and port 0, which would give every worker a port of its own."""
    load_tls_files(settings)
    server = settings.server
    for key, addresses in (
        ("server.tls_listen", server.tls_addresses()),
        ("server.https_listen", server.https_addresses()),
    ):
        if any(address.port == 0 for address in addresses):
            raise ConfigError(
                "port 0 is not supported with workers > 1 (every worker would get another port): give a port",
                file=str(settings.source or "<defaults>"),
                key=key,
            )


def supervise(settings: Settings, policy: Policy, local: LocalData) -> None:
    """Run ``settings.server.worker_count()`` workers until SIGINT or SIGTERM."""
    addresses, probes = reserve_ports(settings.server.listen_addresses())
    if threading.active_count() > 1:  # pragma: no cover - a bug: the zygote must fork a single thread
        log.warning("forking the zygote with %d threads running", threading.active_count())
    gc.collect()
    gc.freeze()  # the startup objects move to the permanent generation: the collector never writes them
    zygote = Zygote.start(settings, policy, local, addresses, probes)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_supervise(settings, policy, local, addresses, probes, zygote))
    finally:
        zygote.close()


async def _supervise(
    settings: Settings,
    policy: Policy,
    local: LocalData,
    addresses: list[ListenAddress],
    probes: list[socket.socket],
    zygote: Zygote,
) -> None:
    supervisor = Supervisor(settings, policy, local, addresses, zygote)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, supervisor.finish)
    loop.add_signal_handler(signal.SIGTERM, supervisor.finish)
    try:
        await supervisor.start_querylog()  # before the workers: they are told whether to send rows
        await supervisor.start_workers(settings.server.worker_count())
        for probe in probes:
            probe.close()
        await supervisor.start_admin()
        if supervisor.querylog is not None:  # it names clients through the local data and the router
            supervisor.start_upstreams()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(supervisor.reload()))
        log.info(supervisor.describe())
        await supervisor.finished.wait()
        log.info("stopping")
    finally:
        await supervisor.stop_workers()
        await supervisor.stop()


def reserve_ports(addresses: list[ListenAddress]) -> tuple[list[ListenAddress], list[socket.socket]]:
    """Every ``:0`` address with the port the kernel picked, free for both UDP and TCP, and the probe sockets
    holding it (SO_REUSEPORT, so the workers can bind beside them; close them once they have: a bound UDP
    probe would get a share of the queries). An address the host cannot bind is left out with a warning."""
    result: list[ListenAddress] = []
    probes: list[socket.socket] = []
    for address in addresses:
        if address.port != 0:
            result.append(address)
            continue
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        for _attempt in range(20):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            for probe in (udp, tcp):
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                udp.bind((address.host, 0))
                tcp.bind((address.host, udp.getsockname()[1]))
            except OSError as err:
                udp.close()
                tcp.close()
                if err.errno in _UNAVAILABLE_ERRNOS:
                    log.warning("skipping %s: %s", address, err.strerror)
                    break
                continue  # the UDP port is taken for TCP: try another
            result.append(ListenAddress(host=address.host, port=udp.getsockname()[1]))
            probes += (udp, tcp)
            break
        else:
            raise BlockdnsError(f"cannot find a free port for {address}")
    return result, probes


def set_death_signal(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux; elsewhere a no-op: the
    link's end-of-file still stops a worker)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


def restart_delay(previous: float, lived: float) -> float:
    """Seconds before a worker that died after ``lived`` seconds is replaced, ``previous`` being the delay
    before it started. Soon after a long life (the shortest delay lets a SIGTERM sent to the whole process
    group reach the supervisor first); after a short one, double the last delay, from 0.5 s up to 30 s."""
    if lived >= STABLE_LIFE:
        return RESTART_SOON
    return min(max(2 * previous, RESTART_FIRST), RESTART_MAX)


def _alive(slot: WorkerSlot) -> bool:
    """Still running: the zygote has not reported its exit, and (should the zygote be gone) it exists."""
    if not slot.running:
        return False
    try:
        os.kill(slot.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


# ----------------------------------------------------------------------------------------------- zygote


@dataclass(slots=True)
class Zygote:
    """The supervisor's handle on the zygote: spawn requests go down ``requests`` (with the worker's end of
    its link as SCM_RIGHTS), and ``("spawned", index, pid)`` and ``("exited", pid, status)`` come up
    ``events``."""

    pid: int
    requests: socket.socket
    events: socket.socket

    @classmethod
    def start(
        cls,
        settings: Settings,
        policy: Policy,
        local: LocalData,
        addresses: list[ListenAddress],
        probes: list[socket.socket],
    ) -> Zygote:
        requests, zygote_requests = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        events, zygote_events = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the zygote
            requests.close()
            events.close()
            for probe in probes:
                probe.close()
            _zygote_main(zygote_requests, zygote_events, settings, policy, local, addresses)
        zygote_requests.close()
        zygote_events.close()
        return cls(pid, requests, events)

    def spawn(self, index: int, link_end: socket.socket) -> None:
        socket.send_fds(self.requests, [str(index).encode()], [link_end.fileno()])

    def close(self) -> None:
        """End the zygote (it reads end-of-file) and reap it."""
        self.requests.close()
        self.events.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _zygote_main(
    requests: socket.socket,
    events: socket.socket,
    settings: Settings,
    policy: Policy,
    local: LocalData,
    addresses: list[ListenAddress],
) -> NoReturn:  # pragma: no cover - runs in the zygote
    code = 0
    try:
        set_death_signal(signal.SIGKILL)
        # Ctrl-C, timeout(1) and systemd signal the whole group: the zygote ends when the supervisor does
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)  # a handler, so the wakeup fd is written
        signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        selector = selectors.DefaultSelector()
        selector.register(requests, selectors.EVENT_READ)
        selector.register(wake_read, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is wake_read:
                    with contextlib.suppress(BlockingIOError):
                        while wake_read.recv(512):
                            pass
                    _reap(events)
                    continue
                message, fds, _, _ = socket.recv_fds(requests, 64, 1)
                if not message:
                    os._exit(0)  # the supervisor is gone (its workers read end-of-file on their links)
                index = int(message)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    for sock in (requests, events, wake_read, wake_write):
                        sock.close()
                    _worker_main(index, socket.socket(fileno=fds[0]), settings, policy, local, addresses)
                for fd in fds:
                    os.close(fd)
                _send(events, ("spawned", index, pid))
            _reap(events)
    except BaseException:
        log.exception("the worker zygote failed")
        code = 1
    os._exit(code)


def _reap(events: socket.socket) -> None:  # pragma: no cover - runs in the zygote
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(events, ("exited", pid, status))


def _send(sock: socket.socket, message: tuple[object, ...]) -> None:  # pragma: no cover - in the zygote
    import pickle

    from blockdns.server.workerlink import HEADER

    data = pickle.dumps(message)
    with contextlib.suppress(OSError):
        sock.sendall(HEADER.pack(len(data)) + data)


# ----------------------------------------------------------------------------------------------- worker


def _worker_main(
    index: int,
    link_end: socket.socket,
    settings: Settings,
    policy: Policy,
    local: LocalData,
    addresses: list[ListenAddress],
) -> NoReturn:  # pragma: no cover - runs in a worker (the tests run real workers)
    code = 0
    try:
        set_death_signal(signal.SIGTERM)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops the workers on Ctrl-C
        for handler in logging.getLogger().handlers:
            handler.setFormatter(
                logging.Formatter(f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s")
            )
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_work(index, link_end, settings, policy, local, addresses))
    except BlockdnsError as err:  # a port it cannot bind: one line, as the single-process server says it
        log.error("worker %d: %s", index, err)
        code = 2
    except BaseException:
        log.exception("worker %d failed", index)
        code = 1
    logging.shutdown()
    os._exit(code)


async def _work(
    index: int,
    link_end: socket.socket,
    settings: Settings,
    policy: Policy,
    local: LocalData,
    addresses: list[ListenAddress],
) -> None:  # pragma: no cover - runs in a worker
    link = await Link.open(link_end)
    kind, init = await link.receive()
    assert kind == "init" and isinstance(init, WorkerInit)
    if init.reload and settings.source is not None:
        try:  # the configuration changed since the zygote was forked: serve what the others serve
            settings = await asyncio.to_thread(load_replacement, settings.source)
            policy = await asyncio.to_thread(build_policy, settings)
            local = await asyncio.to_thread(load_local, settings)
        except BlockdnsError as err:
            log.error("worker %d: the changed configuration is refused; serving the first: %s", index, err)
    server = Server(settings, policy, local)
    server.pause_switch.until = init.paused_until
    await server.start_dns(addresses, reuse_port=True)
    background: list[asyncio.Task[None]] = []
    sink: ChannelSink | None = None
    if init.querylog:
        sink = ChannelSink(link, settings.querylog.queue_size, server.stats)
        server.engine.accounting.querylog = sink
        background.append(asyncio.create_task(sink.run()))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(server.reload()))
    link.send(("ready", os.getpid()))
    background.append(asyncio.create_task(_obey(link, server, stopping)))
    await stopping.wait()
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await server.stop()
    if sink is not None:
        sink.flush()
    await link.drain()
    link.close()


async def _obey(link: Link, server: Server, stopping: asyncio.Event) -> None:  # pragma: no cover - a worker
    """Carry out the supervisor's messages until the link closes (the supervisor is gone: stop). A reload
    runs beside them, so counters and the pause switch are not held up by a compile."""
    reloads: set[asyncio.Task[None]] = set()

    async def reload(kind: str, seq: int) -> None:
        result = await (server._reload() if kind == "reload" else server.reload_local())
        link.send(("reloaded", seq, result.ok, result.message))

    try:
        while True:
            message = await link.receive()
            kind = message[0]
            if kind == "stats":
                link.send(("stats", message[1], server.stats.copy(), server.cache_size()))
            elif kind == "pause":
                server.pause_switch.until = message[1]
            elif kind in ("reload", "reload_local"):
                task = asyncio.get_running_loop().create_task(reload(kind, message[1]))
                reloads.add(task)
                task.add_done_callback(reloads.discard)
    except LinkClosed:
        log.error("worker %d: the supervisor is gone; stopping", os.getpid())
        stopping.set()


# ------------------------------------------------------------------------------------------- supervisor


@dataclass(slots=True, eq=False)
class WorkerSlot:
    """One of the N places a worker fills; a dead worker's replacement takes its slot."""

    index: int
    pid: int = 0
    link: Link | None = None
    started: float = 0.0  # time.monotonic() of the last start
    restarts: int = 0
    running: bool = False
    delay: float = 0.0  # before the next restart after a short life
    stats: ServerStats | None = None  # the last counters it sent
    cache_entries: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    listening: asyncio.Task[None] | None = None  # takes its messages until its link closes


class Supervisor(Server):
    """The supervisor: a :class:`Server` that binds no DNS socket and runs workers that do.

    Its :attr:`stats` are the sum over the workers (those alive, and the last counters of the dead ones, so a
    total never goes back), with its own reload and query-log counts; :meth:`refresh_stats` asks every worker
    for fresh ones (the API calls it before a read), and they are collected every few seconds anyway."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        local: LocalData,
        addresses: list[ListenAddress],
        zygote: Zygote,
    ) -> None:
        super().__init__(settings, policy, local)
        self.addresses = addresses
        self.zygote = zygote
        self.own = self.shared.stats  # what this process counts itself: reloads, the query log's drops
        self.stats = self.own.copy()
        self.retired = ServerStats()  # the last counters of workers that died
        self.slots: list[WorkerSlot] = []
        self.changed = False  # a reload swapped in another configuration since the zygote was forked
        self.stopping = False  # no more restarts
        self.finished = asyncio.Event()  # set by SIGINT, SIGTERM or the zygote's death: stop everything
        self._seq = 0
        self._waiting: dict[int, asyncio.Future[tuple[object, ...]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------ the workers

    async def start_workers(self, count: int) -> None:
        self._spawn_task(self._zygote_events())
        self.slots = [WorkerSlot(index) for index in range(count)]
        for slot in self.slots:
            await self._spawn(slot)
        waits = [asyncio.create_task(slot.ready.wait()) for slot in self.slots]
        _, pending = await asyncio.wait(waits, timeout=READY_TIMEOUT)
        for task in pending:
            task.cancel()
        if pending or any(not slot.running for slot in self.slots):
            raise BlockdnsError("the worker processes did not start: see the lines above")
        self._spawn_task(self._collect_stats())

    async def _spawn(self, slot: WorkerSlot) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.zygote.spawn(slot.index, theirs)
        finally:
            theirs.close()
        slot.link = link = await Link.open(mine)
        slot.started = time.monotonic()
        slot.ready.clear()
        slot.stats = None
        slot.running = True
        link.send(("init", WorkerInit(self.changed, self.pause_switch.until, self.querylog is not None)))
        slot.listening = asyncio.get_running_loop().create_task(self._listen(slot, link))

    async def _listen(self, slot: WorkerSlot, link: Link) -> None:
        """Take one worker's messages until its link closes."""
        with contextlib.suppress(LinkClosed):
            while True:
                message = await link.receive()
                kind = message[0]
                if kind == "rows":
                    querylog = self.querylog
                    if querylog is not None:
                        for row in message[1]:
                            querylog.offer(row)
                elif kind == "ready":
                    slot.pid = message[1]
                    slot.ready.set()
                elif kind in ("stats", "reloaded"):
                    if kind == "stats" and slot.link is link:
                        slot.stats, slot.cache_entries = message[2], message[3]
                    waiting = self._waiting.pop(message[1], None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(message[2:])
        link.close()

    def finish(self) -> None:
        self.stopping = True
        self.finished.set()

    async def _zygote_events(self) -> None:
        link = await Link.open(self.zygote.events)
        with contextlib.suppress(LinkClosed):
            while True:
                message = await link.receive()
                if message[0] == "spawned":
                    self.slots[message[1]].pid = message[2]
                elif message[0] == "exited":
                    self._exited(message[1], message[2])
        if not self.stopping:  # no more workers can be started: let the service manager start us again
            log.error("the worker zygote (pid %d) is gone: stopping", self.zygote.pid)
            self.finish()

    def _exited(self, pid: int, status: int) -> None:
        slot = next((slot for slot in self.slots if slot.pid == pid and slot.running), None)
        if slot is None:
            return
        slot.running = False
        if slot.stats is not None:
            self.retired.add(slot.stats)
            slot.stats = None
        if slot.link is not None:
            slot.link.close()
        slot.ready.set()  # a start that waits for it fails now, not at its deadline
        if self.stopping:
            return
        lived = time.monotonic() - slot.started
        slot.delay = restart_delay(slot.delay, lived)
        log.error(
            "worker %d (pid %d) %s after %.1f s; starting another in %.1f s",
            slot.index, pid, describe_exit(status), lived, slot.delay,
        )  # fmt: skip
        self._spawn_task(self._restart(slot))

    async def _restart(self, slot: WorkerSlot) -> None:
        await asyncio.sleep(slot.delay)
        if self.stopping:
            return
        slot.restarts += 1
        await self._spawn(slot)

    async def stop_workers(self) -> None:
        """SIGTERM to every worker; SIGKILL to those still running after :data:`STOP_TIMEOUT`."""
        self.stopping = True
        running = [slot for slot in self.slots if slot.running and slot.pid]
        for slot in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_alive(slot) for slot in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the zygote's exit reports flip ``running``
        for slot in running:
            if _alive(slot):
                log.error("worker %d (pid %d) did not stop: killing it", slot.index, slot.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)
        listening = [slot.listening for slot in self.slots if slot.listening is not None]
        if listening:  # the rows a worker sent before it stopped are read up to its link's end
            await asyncio.wait(listening, timeout=STOP_TIMEOUT)
        for task in [*self._tasks, *listening]:
            task.cancel()
        await asyncio.gather(*self._tasks, *listening, return_exceptions=True)

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask_all(self, kind: str, timeout: float) -> list[tuple[WorkerSlot, tuple[object, ...] | None]]:
        """Send ``(kind, seq)`` to every running worker; their answers (None: none in time)."""
        asked: list[tuple[WorkerSlot, asyncio.Future[tuple[object, ...]]]] = []
        for slot in self.slots:
            if slot.running and slot.link is not None and slot.ready.is_set():
                self._seq += 1
                future = asyncio.get_running_loop().create_future()
                self._waiting[self._seq] = future
                slot.link.send((kind, self._seq))
                asked.append((slot, future))
        if asked:
            await asyncio.wait([future for _, future in asked], timeout=timeout)
        answers: list[tuple[WorkerSlot, tuple[object, ...] | None]] = []
        for slot, future in asked:
            answers.append((slot, future.result() if future.done() else None))
            future.cancel()
        self._waiting = {seq: future for seq, future in self._waiting.items() if not future.done()}
        return answers

    # ------------------------------------------------------------------------------------ the counters

    async def refresh_stats(self) -> None:
        await self._ask_all("stats", ASK_TIMEOUT)
        total = self.own.copy()
        total.add(self.retired)
        for slot in self.slots:
            if slot.stats is not None:
                total.add(slot.stats)
        total.reloads, total.reloads_refused = self.own.reloads, self.own.reloads_refused  # counted once
        self.stats = total

    async def _collect_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            await self.refresh_stats()

    def cache_size(self) -> int:
        return sum(slot.cache_entries for slot in self.slots if slot.running)

    def worker_states(self) -> list[dict[str, object]]:
        return [
            {
                "index": slot.index,
                "pid": slot.pid,
                "running": slot.running,
                "restarts": slot.restarts,
                "queries": slot.stats.total_queries() if slot.stats is not None else 0,
                "cache_entries": slot.cache_entries,
            }
            for slot in self.slots
        ]

    # ------------------------------------------------------------------------- reloads and the pause

    async def _swapped_in(self, result: ReloadResult, kind: str) -> ReloadResult:
        """Relay a reload the supervisor has swapped in (a bad configuration was refused there, once) to every
        worker, inside the reload lock, so the reload counts only once they have it too."""
        self.changed = True
        problems: list[str] = []
        answers = await self._ask_all(kind, RELOAD_TIMEOUT)
        for slot, answer in answers:
            if answer is None:
                problems.append(f"worker {slot.index}: no answer")
            elif not answer[0]:
                problems.append(f"worker {slot.index}: {answer[1]}")
        if problems:
            return ReloadResult(False, f"{result.message}; not in every worker: {'; '.join(problems)}")
        return ReloadResult(True, f"{result.message} (in {len(answers)} workers)")

    def pause(self, seconds: float) -> float:
        until = super().pause(seconds)
        self._relay_pause()
        return until

    def resume(self) -> None:
        super().resume()
        self._relay_pause()

    def apply_pause(self, until: float | None, origin: str) -> None:
        super().apply_pause(until, origin)
        self._relay_pause()

    def _relay_pause(self) -> None:
        for slot in self.slots:
            if slot.running and slot.link is not None:
                slot.link.send(("pause", self.pause_switch.until))

    def describe(self) -> str:
        policy = self.policy
        addresses = ", ".join(f"{address.host}:{address.port}" for address in self.addresses)
        server = self.settings.server
        encrypted = [f"{address} (DoT)" for address in server.tls_addresses()]
        encrypted += [f"{address} (DoH)" for address in server.https_addresses()]
        return (
            f"blockdns serving on {addresses} (udp+tcp) with {len(self.slots)} worker processes "
            f"(pids {', '.join(str(slot.pid) for slot in self.slots)}), "
            f"{''.join(text + ', ' for text in encrypted)}{self.settings.resolver.mode} mode, "
            f"{len(policy.catalog.vendors)} vendors, {policy.size} policy entries"
        )
