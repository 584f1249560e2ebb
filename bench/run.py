"""`make bench`: blockdns beside dnsmasq and Unbound: same blocklist, upstream, query mix and machine.

What it does, all on loopback (``--only`` picks parts; ``make bench`` runs them all):

``hit``
    A 100,000-entry blocklist and a query file of 80% repeated allowed names and 20% blocked names, against
    dnsmasq, Unbound forwarding with one thread, blockdns with the query log off and on. Every server is
    started once (the time it took to answer is reported), warmed, then measured in rounds: each round runs
    every server once for ``--seconds`` at full load (dnsperf), the order rotated by one each round. The
    table gives each server's median q/s and server CPU per answer over the rounds, and the median over
    rounds of its ratio to dnsmasq *in the same round*: a busy machine then compares servers, not time
    slots. A latency run at a fixed rate follows the rounds.
``miss``
    Every query a name never asked before (``<index>-<random>.rN.miss.example``, one file of unique names
    per round), so every answer is forwarded to the fake upstream: the same servers (query log off), same
    rounds and ratios. The fake upstream's own CPU is reported, to show it was not the bottleneck.
``hit`` and ``miss`` with two workers
    blockdns with ``[server] workers = 2`` beside Unbound with ``num-threads: 2``, servers on two cores.
    They run only on a machine with at least four cores (two for the servers, two for dnsperf and the
    upstream), or with ``--shared-cores`` (everything on the same two cores: CPU per answer is then the
    only comparable figure). blockdns's row runs only when the blockdns under test accepts the key
    (``blockdns config check``); otherwise it is skipped with the reason.
``start``
    blockdns's start time (launch to first answer) and memory with nothing to block, with a 100,000- and a
    1,000,000-entry catalogue (1,000 synthetic vendor files) and with a 100,000- and a 1,000,000-entry feed
    (a stored feed file in the data directory); each start bounded by ``--start-timeout``.
``compile``
    The policy compiler's time and memory for a 1,000,000-entry feed, in process.

``--compare-with DIR`` adds the blockdns of another checkout (say, the last release) to the same rounds,
so a change is judged against its predecessor under the same machine load.

Every dnsperf run is bounded in time (-l), every start by a deadline, and every process is stopped at the
end, whatever happened.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from ports import free_port  # noqa: E402 - after the path; a port free for UDP and TCP alike

OUT = HERE / "out"
PYTHON = sys.executable
BLOCKLIST_SIZE = 100_000
ALLOWED_NAMES = 200
QUERY_LINES = 20_000
PARTS = ("hit", "miss", "start", "compile")
# Unique names per miss round: enough that no server runs out within --seconds (dnsperf stops at the end of
# the file, -n 1, so a name is never asked twice); a faster server only ends its run early.
MISS_NAMES_PER_SECOND = 60_000
START_SIZES = (100_000, 1_000_000)
START_VENDOR_FILES = 1_000


def blocked_name(index: int) -> str:
    return f"ai{index:06d}.vendor{index % 97}.test"


def allowed_name(index: int) -> str:
    return f"host{index}.allowed.test"


# ------------------------------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class Layout:
    """Which cores the server and the load (dnsperf, fake upstream) are pinned to."""

    server_cores: str
    load_cores: str

    @property
    def shared(self) -> bool:
        return bool(set(self.server_cores.split(",")) & set(self.load_cores.split(",")))

    def starved(self, server_busy: float, load_busy: float, share: float = 0.7) -> bool:
        """Neither the server nor the load used ``share`` of their cores: other work had the CPU."""
        server, load = set(self.server_cores.split(",")), set(self.load_cores.split(","))
        if self.shared:
            return server_busy + load_busy < share * len(server | load)
        return server_busy < share * len(server) and load_busy < share * len(load)


def layouts(cores: int, shared_cores: bool) -> tuple[Layout, Layout | None, str]:
    """The one-core and the two-core layout for this machine; None (and why) when two cores cannot be had."""
    if cores >= 4:
        return Layout("0", "2,3"), Layout("0,1", "2,3"), ""
    one = Layout("0", "1")
    if shared_cores:
        return one, Layout("0,1", "0,1"), ""
    return (
        one,
        None,
        f"the two-worker rows need four cores (two for the servers, two for the load) and this machine has "
        f"{cores}; --shared-cores runs them on the same two cores as the load (CPU per answer only)",
    )


def start_fake_upstream(cores: str) -> tuple[subprocess.Popen[bytes], int]:
    """``upstream.py`` on a free port, pinned to ``cores`` (the load's): the upstream every forwarding server
    of the benchmarks asks. Returns the process and its port."""
    port = free_port()
    process = subprocess.Popen(
        ["taskset", "-c", cores, PYTHON, str(HERE / "upstream.py"), str(port)], stdout=subprocess.DEVNULL
    )
    return process, port


# --------------------------------------------------------------------------------------------- inputs


def write_inputs(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    names = [blocked_name(i) for i in range(BLOCKLIST_SIZE)]
    data_dir = out / "lists"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "bench.list").write_text("# bench blocklist\n" + "".join(f"+{n}\n" for n in names))
    (out / "feeds.toml").write_text(
        textwrap.dedent(f"""\
        [[feeds]]
        name = "bench"
        url = "file://{data_dir / "bench.list"}"
        format = "domains"
        match = "suffix"
        """)
    )
    (out / "dnsmasq-blocklist.conf").write_text("".join(f"address=/{n}/\n" for n in names))
    (out / "unbound-blocklist.conf").write_text(
        "server:\n" + "".join(f'    local-zone: "{n}." always_nxdomain\n' for n in names)
    )
    lines = []
    for i in range(QUERY_LINES):
        if i % 5 == 4:  # 20% blocked: spread over 2,000 distinct blocked names
            lines.append(f"{blocked_name((i * 7919) % 2000 * 50)} A")
        else:  # 80% repeated allowed names
            lines.append(f"{allowed_name(i % ALLOWED_NAMES)} A")
    (out / "queries.txt").write_text("\n".join(lines) + "\n")
    return {"data_dir": data_dir, "feeds": out / "feeds.toml", "queries": out / "queries.txt"}


def write_miss_queries(path: Path, round_index: int, count: int) -> Path:
    """``count`` names never asked before: unique by index and round, random so no two runs share them."""
    rng = random.Random()
    with path.open("w") as file:
        for start in range(0, count, 10_000):
            file.write(
                "".join(
                    f"{i:x}-{rng.getrandbits(40):010x}.r{round_index}.miss.example A\n"
                    for i in range(start, min(start + 10_000, count))
                )
            )
    return path


# -------------------------------------------------------------------------------------------- servers


def read_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (blockdns workers are child processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(read_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = read_stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """Resident and peak resident MB, summed over ``pids`` (shared pages of forked workers count twice)."""
    rss = peak = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1])
    return rss / 1024, peak / 1024


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    layout: Layout
    stderr_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    start_seconds: float = 0.0  # from launch to the first answer: loading the blocklist, mostly
    failure: str = ""
    querylog: Path | None = None  # blockdns's SQLite query log, when it keeps one
    answered: int = 0  # queries dnsperf saw answered, over every run against it

    def start(self, timeout: float) -> None:
        """Launch pinned to the layout's server cores and wait until it answers; raise if it never does."""
        launched = time.monotonic()
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                ["taskset", "-c", self.layout.server_cores, *self.command],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=self.env,
                start_new_session=True,  # its own process group: stop() reaches workers it forked
            )
        deadline = launched + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.stderr_tail()}")
            if answers(self.port):
                self.start_seconds = time.monotonic() - launched
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not answer within {timeout:.0f} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pids(self) -> list[int]:
        assert self.process is not None
        return process_tree(self.process.pid)

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace").strip()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole process group after 10 s; idempotent."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # a worker the server left behind, or the server
        self.process.wait()


def answers(port: int) -> bool:
    query = bytes.fromhex("abcd01000001000000000000") + b"\x05host0\x07allowed\x04test\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.05)  # short: the start time is measured in these probes
        try:
            sock.sendto(query, ("127.0.0.1", port))
            return sock.recv(512)[:2] == b"\xab\xcd"
        except OSError:
            return False


def dnsmasq_server(out: Path, upstream_port: int, layout: Layout) -> Server:
    """dnsmasq forwarding to the same upstream; dns-forward-max above dnsperf's 400 queries in flight (the
    default, 150, would drop cache misses that Unbound and blockdns forward)."""
    port = free_port()
    conf = out / "dnsmasq.conf"
    conf.write_text(
        textwrap.dedent(f"""\
        port={port}
        listen-address=127.0.0.1
        bind-interfaces
        no-resolv
        no-hosts
        no-negcache
        server=127.0.0.1#{upstream_port}
        cache-size=10000
        dns-forward-max=1000
        user=root
        conf-file={out / "dnsmasq-blocklist.conf"}
        """)
    )
    command = ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"]
    return Server("dnsmasq", command, port, layout, out / "dnsmasq.stderr")


def unbound_server(out: Path, upstream_port: int, layout: Layout, threads: int = 1) -> Server:
    """Unbound forwarding to the same upstream, the blocklist as always_nxdomain local zones."""
    port = free_port()
    conf = out / f"unbound-{threads}.conf"
    conf.write_text(
        textwrap.dedent(f"""\
        server:
            interface: 127.0.0.1
            port: {port}
            num-threads: {threads}
            so-reuseport: yes
            do-daemonize: no
            username: ""
            chroot: ""
            directory: "{out}"
            pidfile: ""
            use-syslog: no
            logfile: ""
            verbosity: 0
            do-ip6: no
            access-control: 127.0.0.0/8 allow
            do-not-query-localhost: no
            module-config: "iterator"
            qname-minimisation: no
            msg-cache-size: 32m
            rrset-cache-size: 64m
            # The bench's names are under .test, which Unbound answers itself (RFC 6761) unless told not to:
            # without this it would never forward or cache the allowed names the others forward.
            local-zone: "test." nodefault
        include: "{out / "unbound-blocklist.conf"}"
        forward-zone:
            name: "."
            forward-addr: 127.0.0.1@{upstream_port}
        """)
    )
    name = "unbound 1 thread" if threads == 1 else f"unbound {threads} threads"
    command = ["unbound", "-d", "-c", str(conf)]
    return Server(name, command, port, layout, out / f"unbound-{threads}.stderr")


def blockdns_config(
    out: Path, label: str, lists: str, policy: str, upstream_port: int, **server: object
) -> tuple[Path, int]:
    """A blockdns config on a free port: forwarding to the fake upstream, no API, no refresh, log off.

    ``lists`` and ``policy`` are the bodies of those sections; ``server`` adds keys to ``[server]`` (only
    the ones given, so an older blockdns without them still reads the rest).
    """
    port = free_port()
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in server.items())
    conf = out / f"blockdns-{label}.toml"
    conf.write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n{extra}'
        f'[resolver]\nmode = "forward"\nupstreams = ["udp://127.0.0.1:{upstream_port}"]\n'
        f'[policy]\n{policy}\n[lists]\n{lists}\nrefresh = "0"\n[querylog]\npath = ""\n[api]\nlisten = ""\n'
    )
    return conf, port


def blockdns_command(conf: Path, source: Path | None) -> tuple[list[str], dict[str, str]]:
    # -P: the current directory (a checkout, perhaps this one) must not shadow the blockdns meant here.
    env = {**os.environ, "PYTHONPATH": str(source or HERE.parent)}
    return [PYTHON, "-P", "-m", "blockdns", "serve", "--config", str(conf)], env


def blockdns_server(
    out: Path,
    inputs: dict[str, Path],
    upstream_port: int,
    layout: Layout,
    *,
    querylog: bool,
    source: Path | None = None,
    workers: int = 1,
) -> Server:
    """blockdns from this checkout, or (``source``) from another one's package directory."""
    label = ("log-on" if querylog else "log-off") + (f"-{workers}w" if workers > 1 else "")
    label += "-compared" if source else ""
    lists = f'feeds = "{inputs["feeds"]}"\ndata_dir = "{inputs["data_dir"]}"'
    server_keys = {"workers": workers} if workers > 1 else {}
    conf, port = blockdns_config(out, label, lists, 'block = ["feed:bench"]', upstream_port, **server_keys)
    if querylog:
        for stale in out.glob(f"querylog-{label}.sqlite*"):
            stale.unlink()
        log_path = out / f"querylog-{label}.sqlite"
        conf.write_text(conf.read_text().replace('[querylog]\npath = ""', f'[querylog]\npath = "{log_path}"'))
    name = f"blockdns{f' {workers} workers' if workers > 1 else ''} ({'log on' if querylog else 'log off'})"
    if source is not None:
        name = name.replace("blockdns", f"blockdns@{source.name}", 1)
    command, env = blockdns_command(conf, source)
    server = Server(name, command, port, layout, out / f"blockdns-{label}.stderr", env)
    server.querylog = log_path if querylog else None
    return server


def refusal(server: Server) -> str:
    """Why the blockdns under test refuses ``server``'s config (``config check``'s line); "" if it accepts."""
    python_m_blockdns, config = server.command[:4], server.command[-2:]  # [..., "serve", "--config", FILE]
    check = [*python_m_blockdns, "config", "check", *config]
    result = subprocess.run(check, capture_output=True, text=True, env=server.env, timeout=120)
    if result.returncode == 0:
        return ""
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"config check exited {result.returncode}"


# ------------------------------------------------------------------------------------------- dnsperf


@dataclass
class Run:
    qps: float
    lost: float
    cpu_us: float  # server CPU per answered query
    busy: float  # server CPU over dnsperf's life, in cores
    upstream_busy: float  # the fake upstream's CPU over dnsperf's life, in cores
    upstream_us: float  # the fake upstream's CPU per answered query
    load_busy: float  # dnsperf's and the fake upstream's CPU over dnsperf's life, in cores
    starved: bool  # neither the server nor the load near their cores' worth: other work had the CPU


@dataclass
class Result:
    name: str
    runs: dict[int, Run] = field(default_factory=dict)  # by round
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rss_mb: float = 0.0
    start_seconds: float = 0.0
    failure: str = ""

    def median(self, value: Callable[[Run], float]) -> float:
        return statistics.median(value(run) for run in self.runs.values()) if self.runs else 0.0

    def median_ratio(self, base: Result, value: Callable[[Run], float]) -> float:
        """The median over rounds of this server's ``value`` over ``base``'s in the same round."""
        ratios = [
            value(run) / value(base.runs[index])
            for index, run in self.runs.items()
            if index in base.runs and value(base.runs[index])
        ]
        return statistics.median(ratios) if ratios else 0.0


@dataclass
class Dnsperf:
    output: str
    cpu: float  # seconds of CPU dnsperf used
    wall: float  # seconds from its launch to its exit: the run, its setup and its wait for the last answers


def dnsperf(port: int, queries: Path, seconds: float, cores: str, *extra: str) -> Dnsperf:
    command = ["taskset", "-c", cores, "dnsperf", "-s", "127.0.0.1", "-p", str(port)]
    command += ["-d", str(queries), "-l", str(seconds), *extra]
    before, launched = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    wall = time.monotonic() - launched
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # dnsperf is the only child reaped meanwhile
    return Dnsperf(output, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall)


def figure(pattern: str, output: str) -> float:
    found = re.search(pattern, output)
    if found is None:
        raise RuntimeError(f"dnsperf printed no {pattern!r}: {output[-1000:]}")
    return float(found.group(1))


def throughput(server: Server, queries: Path, seconds: float, upstream: int, once: bool) -> Run:
    pids = server.pids()
    upstream_before, cpu_before = cpu_seconds([upstream]), cpu_seconds(pids)
    extra = ("-n", "1") if once else ()
    # -t 1: a query unanswered after 1 s on loopback is lost; dnsperf then waits at most 1 s for the last
    # answers, so the CPU shares below, taken over dnsperf's whole life, are not diluted by a 5 s wait.
    run = dnsperf(
        server.port, queries, seconds, server.layout.load_cores, "-c", "8", "-q", "400", "-t", "1", *extra
    )
    cpu = cpu_seconds(pids) - cpu_before
    upstream_cpu = cpu_seconds([upstream]) - upstream_before
    answered = max(figure(r"Queries completed:\s+(\d+)", run.output), 1)
    server.answered += int(answered)
    busy = cpu / run.wall
    load_busy = (run.cpu + upstream_cpu) / run.wall
    return Run(
        qps=figure(r"Queries per second:\s+([\d.]+)", run.output),
        lost=figure(r"Queries lost:\s+\d+ \(([\d.]+)%\)", run.output),
        cpu_us=cpu / answered * 1e6,
        busy=busy,
        upstream_busy=upstream_cpu / run.wall,
        upstream_us=upstream_cpu / answered * 1e6,
        load_busy=load_busy,
        starved=server.layout.starved(busy, load_busy),
    )


def latency(server: Server, queries: Path, rate: int, seconds: float, once: bool) -> tuple[float, float]:
    extra = ("-n", "1") if once else ()
    output = dnsperf(
        server.port, queries, seconds, server.layout.load_cores, "-Q", str(rate), "-v", *extra
    ).output
    server.answered += int(figure(r"Queries completed:\s+(\d+)", output))
    samples = sorted(float(m) for m in re.findall(r"^> \w+ \S+ \S+ ([\d.]+)$", output, re.MULTILINE))
    if not samples:
        return 0.0, 0.0
    return samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000


# ------------------------------------------------------------------------------------------ the mixes


@dataclass
class Mix:
    title: str
    queries: Callable[[int], Path]  # the query file of round N (rounds <0: the latency run)
    once: bool  # every name asked at most once (dnsperf -n 1): the file must outlast the run
    rate: int  # queries per second of the latency run


def hit_mix(inputs: dict[str, Path], rate: int) -> Mix:
    title = f"cache-hit mix: {BLOCKLIST_SIZE:,}-entry blocklist; 80% repeated allowed names, 20% blocked"
    return Mix(title, lambda _round: inputs["queries"], once=False, rate=rate)


def miss_mix(out: Path, seconds: float, rate: int) -> Mix:
    count = int(max(seconds, 3) * MISS_NAMES_PER_SECOND)

    def queries(round_index: int) -> Path:
        return write_miss_queries(out / "miss-queries.txt", round_index, count)

    title = "cache-miss mix: every name asked once (unique random names), forwarded to the fake upstream"
    return Mix(title, queries, once=True, rate=rate)


def run_mix(mix: Mix, servers: list[Server], rounds: int, seconds: float, upstream: int) -> dict[str, Result]:
    """``rounds`` rounds of one full-load run per server, the order rotated each round; then latency."""
    results = {server.name: Result(server.name, start_seconds=server.start_seconds) for server in servers}
    for index in range(rounds):
        queries = mix.queries(index)
        shift = index % len(servers)
        for server in servers[shift:] + servers[:shift]:
            if not alive(server, results[server.name]):
                continue
            run = throughput(server, queries, seconds, upstream, mix.once)
            results[server.name].runs[index] = run
            print(
                f"bench: round {index + 1}/{rounds}: {server.name}: {run.qps:,.0f} q/s, "
                f"{run.cpu_us:.1f} µs/q, busy {run.busy:.2f}, load {run.load_busy:.2f}, lost {run.lost:.2f}%",
                file=sys.stderr,
                flush=True,
            )
    queries = mix.queries(-1)
    for server in servers:
        result = results[server.name]
        if alive(server, result):
            result.p50_ms, result.p99_ms = latency(server, queries, mix.rate, 3, mix.once)
            result.rss_mb = memory_mb(server.pids())[0]
    return results


def alive(server: Server, result: Result) -> bool:
    if server.failure or not server.alive():
        server.failure = server.failure or f"exited: {server.stderr_tail()}"
        result.failure = server.failure
        return False
    return True


@contextmanager
def started(servers: list[Server], queries: Path, timeout: float) -> Iterator[list[Server]]:
    """Start every server (one after the other, so each start time is its own) and warm its cache; stop all
    of them on the way out, whatever happened. A server that fails to start is reported, not fatal."""
    try:
        for server in servers:
            print(f"bench: starting {server.name}", file=sys.stderr, flush=True)
            try:
                server.start(timeout)
            except (RuntimeError, TimeoutError) as err:
                server.failure = str(err)
                print(f"bench: {err}", file=sys.stderr)
                continue
            warm = dnsperf(server.port, queries, 2, server.layout.load_cores, "-n", "1")  # cache and memos
            server.answered += int(figure(r"Queries completed:\s+(\d+)", warm.output))
        yield servers
    finally:
        for server in servers:
            server.stop()


# ---------------------------------------------------------------------------------------- start cost


@dataclass
class StartResult:
    name: str
    entries: int
    seconds: float | None = None
    rss_mb: float = 0.0
    peak_mb: float = 0.0
    failure: str = ""


def write_catalogue(directory: Path, entries: int) -> None:
    """``entries`` domains in START_VENDOR_FILES vendor files, as the curated catalogue writes them."""
    directory.mkdir(parents=True)
    per_file = entries // START_VENDOR_FILES
    for vendor in range(START_VENDOR_FILES):
        head = (
            f'name = "Vendor {vendor}"\njurisdiction = "US"\ncategories = ["chat"]\n'
            f'homepage = "https://v{vendor}.test"\nreviewed = 2026-01-01\n'
        )
        domains = "".join(
            f'\n[[domains]]\nname = "ai{i:07d}.v{vendor}.test"\nevidence = "https://v{vendor}.test/"\n'
            for i in range(vendor * per_file, (vendor + 1) * per_file)
        )
        (directory / f"v{vendor:04d}.toml").write_text(head + domains)


@dataclass(frozen=True)
class StartCase:
    row: str
    entries: int
    lists: str  # the [lists] section's body
    policy: str  # the [policy] section's body


def start_cases(work: Path) -> Iterator[StartCase]:
    """Each start measured, its inputs written to ``work`` (and removed after it)."""
    empty_catalogue = work / "empty" / "vendors"
    empty_catalogue.mkdir(parents=True)
    no_feeds = work / "no-feeds.toml"
    no_feeds.write_text("")
    data_dir = work / "data"
    data_dir.mkdir()
    lists = f'catalog = "{empty_catalogue}"\nfeeds = "{no_feeds}"\ndata_dir = "{data_dir}"'
    yield StartCase("nothing to block", 0, lists, "block = []")
    for size in START_SIZES:
        catalogue = work / f"catalogue-{size}" / "vendors"
        write_catalogue(catalogue, size)
        lists = f'catalog = "{catalogue}"\nfeeds = "{no_feeds}"\ndata_dir = "{data_dir}"'
        yield StartCase(f"catalogue ({START_VENDOR_FILES:,} files)", size, lists, 'block = ["all"]')
        # The next start of the unchanged catalogue loads the compiled form the first one cached.
        yield StartCase("catalogue again, unchanged", size, lists, 'block = ["all"]')
        shutil.rmtree(catalogue.parent)
    for size in START_SIZES:
        feeds = work / f"feeds-{size}.toml"
        feeds.write_text(f'[[feeds]]\nname = "big{size}"\nurl = "file:///dev/null"\nformat = "domains"\n')
        stored = data_dir / f"big{size}.list"  # the plain stored name: no manifest entry needed
        stored.write_text("".join(f"+ai{i:07d}.vendor{i % 997}.test\n" for i in range(size)))
        lists = f'catalog = "{empty_catalogue}"\nfeeds = "{feeds}"\ndata_dir = "{data_dir}"'
        yield StartCase("feed (stored file)", size, lists, f'block = ["feed:big{size}"]')
        stored.unlink()


def start_costs(upstream_port: int, layout: Layout, timeout: float) -> list[StartResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="blockdns-bench-start-") as temporary:
        work = Path(temporary)
        for index, case in enumerate(start_cases(work)):
            if index == 0:  # an unreported start first: the first one pays for a cold page cache
                start_cost(work, "warm-up", case, upstream_port, layout, timeout)
            results.append(start_cost(work, str(index), case, upstream_port, layout, timeout))
    return results


def start_cost(
    work: Path, label: str, case: StartCase, upstream_port: int, layout: Layout, timeout: float
) -> StartResult:
    """One blockdns start: launch to first answer, then its memory; stopped whatever happened."""
    conf, port = blockdns_config(work, f"start-{label}", case.lists, case.policy, upstream_port)
    command, env = blockdns_command(conf, None)
    server = Server(case.row, command, port, layout, work / f"start-{label}.stderr", env)
    result = StartResult(case.row, case.entries)
    print(f"bench: start with {case.row}, {case.entries:,} entries", file=sys.stderr, flush=True)
    try:
        server.start(timeout)
        result.seconds = server.start_seconds
        result.rss_mb, result.peak_mb = memory_mb(server.pids())
    except TimeoutError:
        result.failure = f"no answer within {timeout:.0f} s"
    except RuntimeError as err:
        result.failure = str(err).splitlines()[-1][:120]
    finally:
        server.stop()
    return result


# ------------------------------------------------------------------------------------ policy compile


COMPILE_PROBE = """
import gc, json, sys, tempfile, time
from pathlib import Path
from blockdns.catalog import Catalog
from blockdns.feeds.model import read_data
from blockdns.policy import FeedSource, compile_policy

def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024

# The real path: a stored 1,000,000-entry feed file, read and compiled as the server does on (re)load.
path = Path(tempfile.mkdtemp()) / "big.list"
path.write_text("".join(f"+ai{i:07d}.vendor{i % 997}.test\\n" for i in range(1_000_000)))
gc.collect()
before = rss()
started = time.perf_counter()
data = read_data(path)
feed = FeedSource("big", None, "chat", "block", data)
policy = compile_policy(Catalog({}, {}, Path(".")), ["feed:big"], [], [], [feed])
elapsed = time.perf_counter() - started
del data, feed
gc.collect()
group = policy.default
probes = [f"x.ai{i:07d}.vendor{i % 997}.test" for i in range(0, 1_000_000, 10)] + ["www.example.org"] * 1000
t = time.perf_counter()
for name in probes:
    group.domains.match(name)
per_match = (time.perf_counter() - t) / len(probes) * 1e6
path.unlink()
print(json.dumps({"seconds": elapsed, "mb": rss() - before, "entries": len(group.domains),
                  "lookup_us": per_match}))
"""


def policy_compile() -> dict[str, float]:
    output = subprocess.run([PYTHON, "-c", COMPILE_PROBE], capture_output=True, text=True, timeout=300)
    if output.returncode:
        raise RuntimeError(output.stderr[-2000:])
    return json.loads(output.stdout)


# ---------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds per mix (each runs every server once)")
    parser.add_argument("--seconds", type=float, default=8, help="length of one full-load run")
    parser.add_argument("--rate", type=int, default=20000, help="q/s of the cache-hit latency run")
    parser.add_argument("--miss-rate", type=int, default=2000, help="q/s of the cache-miss latency run")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts to run, of {', '.join(PARTS)}"
    )
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="on fewer than four cores, run the two-worker rows anyway, servers and load on the same cores",
    )
    parser.add_argument("--start-timeout", type=float, default=120, help="seconds a server gets to answer")
    parser.add_argument(
        "--compare-with",
        type=Path,
        metavar="DIR",
        help="also run the blockdns of another checkout (its top directory) in the same rounds",
    )
    args = parser.parse_args()
    args.parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown part {', '.join(unknown)}; of {', '.join(PARTS)}")
    if args.runs < 1 or args.seconds <= 0:
        parser.error("--runs and --seconds must be positive")
    return args


def main() -> int:
    args = parse_args()
    if args.compare_with is not None and not (args.compare_with / "blockdns" / "__main__.py").exists():
        print(f"bench: {args.compare_with} is not a blockdns checkout", file=sys.stderr)
        return 2
    for tool in ("dnsperf", "dnsmasq", "unbound", "taskset"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (make system-deps installs it)", file=sys.stderr)
            return 2
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        print("bench: needs two cores (server and load generator on different cores)", file=sys.stderr)
        return 2
    one, two, no_two = layouts(cores, args.shared_cores)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through every finally: stop servers
    inputs = write_inputs(OUT)
    upstream, upstream_port = start_fake_upstream(one.load_cores)
    failed = False
    try:
        wait_for_upstream(upstream_port)
        if "hit" in args.parts or "miss" in args.parts:
            failed |= compare_servers(args, inputs, upstream.pid, upstream_port, one, two, no_two)
        if "start" in args.parts:
            starts = start_costs(upstream_port, one, args.start_timeout)
            report_starts(starts, one)
            failed |= any(result.failure for result in starts)
    finally:
        upstream.terminate()
        upstream.wait(5)
    if "compile" in args.parts:
        figures = policy_compile()
        print(
            f"\npolicy compile: {figures['entries']:,} entries in {figures['seconds']:.2f} s, "
            f"(read from the stored feed file and compiled), {figures['mb']:.0f} MB resident for the "
            f"compiled form; match {figures['lookup_us']:.2f} µs per name"
        )
    return 1 if failed else 0


def wait_for_upstream(port: int) -> None:
    """The fake upstream answers a query straight to the client; wait (bounded) until it does."""
    query = bytes.fromhex("abcd01000001000000000000") + b"\x02up\x04test\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + 30
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            try:
                sock.sendto(query, ("127.0.0.1", port))
                if sock.recv(512)[:2] == b"\xab\xcd":
                    return
            except OSError:
                continue
    raise RuntimeError("the fake upstream did not answer within 30 s")


def compare_servers(
    args: argparse.Namespace,
    inputs: dict[str, Path],
    upstream_pid: int,
    upstream_port: int,
    one: Layout,
    two: Layout | None,
    no_two: str,
) -> bool:
    """The hit and miss tables; True if some server failed."""
    source = args.compare_with.resolve() if args.compare_with is not None else None

    def blockdns(layout: Layout, querylog: bool, compared: bool = False, workers: int = 1) -> Server:
        return blockdns_server(
            OUT,
            inputs,
            upstream_port,
            layout,
            querylog=querylog,
            source=source if compared else None,
            workers=workers,
        )

    # (server, in the miss mix too)
    servers = [
        (dnsmasq_server(OUT, upstream_port, one), True),
        (unbound_server(OUT, upstream_port, one), True),
        (blockdns(one, querylog=False), True),
        (blockdns(one, querylog=True), False),
    ]
    if source is not None:
        servers += [(blockdns(one, False, compared=True), True), (blockdns(one, True, compared=True), False)]
    skipped: list[str] = []
    if two is None:
        skipped.append(f"unbound 2 threads, blockdns 2 workers: skipped: {no_two}")
    else:
        servers.append((unbound_server(OUT, upstream_port, two, threads=2), True))
        for querylog in (False, True):
            candidate = blockdns(two, querylog, workers=2)
            reason = refusal(candidate)
            if reason:
                skipped.append(
                    f"{candidate.name}: skipped: the blockdns under test refuses workers = 2: {reason}"
                )
            else:
                servers.append((candidate, not querylog))
    for line in skipped:
        print(f"bench: {line}", file=sys.stderr)
    mixes = []
    if "hit" in args.parts:
        mixes.append((hit_mix(inputs, args.rate), [server for server, _ in servers]))
    if "miss" in args.parts:
        mixes.append(
            (miss_mix(OUT, args.seconds, args.miss_rate), [server for server, miss in servers if miss])
        )
    needed = [server for server, _ in servers if any(server in mixed for _, mixed in mixes)]
    tables = []
    with started(needed, inputs["queries"], args.start_timeout):
        for mix, mixed in mixes:
            tables.append((mix, run_mix(mix, mixed, args.runs, args.seconds, upstream_pid)))
    (OUT / "miss-queries.txt").unlink(missing_ok=True)  # tens of MB, of no use after the run
    for mix, results in tables:
        report(mix, list(results.values()), args, one, two)
    for server in needed:
        if server.querylog is not None and not server.failure:
            print(querylog_kept(server))
    for line in skipped:
        print(line)
    return any(server.failure for server in needed)


def querylog_kept(server: Server) -> str:
    """How many of ``server``'s answers to dnsperf its query log stored, counted after its stop (which writes
    the queue out): a log that drops rows at full load would make its CPU per answer look cheaper than
    logging is."""
    assert server.querylog is not None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{server.querylog}?mode=ro", uri=True)) as conn:
            rows = int(conn.execute("SELECT count(*) FROM queries").fetchone()[0])
    except sqlite3.Error as err:
        return f"query log of {server.name}: cannot count its rows: {err}"
    share = rows / max(server.answered, 1)
    return (
        f"query log of {server.name}: {rows:,} rows stored for {server.answered:,} answers to dnsperf "
        f"({share:.1%}; the start's probes add a few rows)"
    )


# -------------------------------------------------------------------------------------------- report


def report(
    mix: Mix, results: list[Result], args: argparse.Namespace, one: Layout, two: Layout | None
) -> None:
    base = results[0]
    print(f"\n{mix.title}")
    print(
        f"server on core {one.server_cores}, dnsperf and the fake upstream on core {one.load_cores}"
        + (f" (two-thread rows: servers on {two.server_cores}, load on {two.load_cores})" if two else "")
        + f"; {args.runs} round{'s' if args.runs > 1 else ''} of {args.seconds:g} s, servers taking turns; "
        f"latency at {mix.rate:,} q/s"
    )
    print(
        "q/s and CPU: medians over the rounds; × dnsmasq: median over rounds of the ratio in the same round\n"
    )
    columns = (
        ("q/s", 9), ("× dnsmasq", 9), ("CPU µs/q", 9), ("× dnsmasq", 9), ("busy", 5), ("load", 5),
        ("lost %", 6), ("p50 ms", 7), ("p99 ms", 7), ("RSS MB", 7), ("start s", 7),
    )  # fmt: skip
    header = f"{'server':<34} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    for result in results:
        if not result.runs:
            print(f"{result.name:<34} failed: {result.failure.splitlines()[-1] if result.failure else '?'}")
            continue
        qps, cpu = result.median(lambda run: run.qps), result.median(lambda run: run.cpu_us)
        print(
            f"{result.name:<34} {qps:>9,.0f} {result.median_ratio(base, lambda run: run.qps):>9.2f} "
            f"{cpu:>9.1f} {result.median_ratio(base, lambda run: run.cpu_us):>9.2f} "
            f"{result.median(lambda run: run.busy):>5.2f} {result.median(lambda run: run.load_busy):>5.2f} "
            f"{max(run.lost for run in result.runs.values()):>6.2f} "
            f"{result.p50_ms:>7.3f} {result.p99_ms:>7.3f} {result.rss_mb:>7.1f} {result.start_seconds:>7.2f}"
        )
        if result.failure:
            print(f"{'':<34} then failed: {result.failure.splitlines()[-1]}")
    runs = [run for result in results for run in result.runs.values()]
    if not runs:
        return
    print(
        "\nbusy: the server's CPU over dnsperf's life, in cores; load: dnsperf's and the fake upstream's\n"
        "(a server below its cores while the load is at its own was held back by the load);\n"
        "lost: the worst run's share of queries without an answer within 1 s (dnsperf -t 1)"
    )
    starved = [run for run in runs if run.starved]
    if starved:
        print(
            f"in {len(starved)} of {len(runs)} runs neither the server nor the load used 70% of its cores: "
            "other work had the CPU; compare CPU per answer, not q/s"
        )
    if two is not None and two.shared:
        print("two-thread rows share their cores with dnsperf and the upstream: compare CPU per answer only")
    if mix.once:
        worst = max(runs, key=lambda run: run.upstream_busy)
        print(
            f"fake upstream: at most {worst.upstream_busy:.2f} of a core during a run "
            f"({worst.upstream_us:.1f} µs per answer)"
        )


def report_starts(results: list[StartResult], layout: Layout) -> None:
    base = results[0] if results and results[0].seconds is not None else None
    print(
        f"\nblockdns start: launch to first answer, then resident memory; server on core "
        f"{layout.server_cores}; per entry: over 'nothing to block'\n"
    )
    columns = (("entries", 10), ("start s", 8), ("RSS MB", 7), ("peak MB", 8), ("B/entry", 8))
    header = f"{'blockdns with':<26} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    for result in results:
        if result.seconds is None:
            print(f"{result.name:<26} {result.entries:>10,} {'failed: ' + result.failure}")
            continue
        per_entry = (
            f"{(result.rss_mb - base.rss_mb) * 1048576 / result.entries:>8.0f}"
            if base and result.entries
            else f"{'':>8}"
        )
        print(
            f"{result.name:<26} {result.entries:>10,} {result.seconds:>8.2f} {result.rss_mb:>7.1f} "
            f"{result.peak_mb:>8.1f} {per_entry}"
        )


if __name__ == "__main__":
    sys.exit(main())
