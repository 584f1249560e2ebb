"""`make bench`: blockdns beside dnsmasq and Unbound: same blocklist, upstream, query mix and machine.

What it does, all on loopback:

1. writes a 100,000-entry blocklist and a query file (80% repeated allowed names, 20% blocked names);
2. starts a fast fake upstream (bench/upstream.py) that answers every allowed name;
3. for each server (dnsmasq, Unbound forwarding with one thread, blockdns with the query log off, blockdns
   with it on): starts it pinned to
   core 0, warms its cache, then drives it with dnsperf pinned to core 1 — a throughput run at full load
   and a latency run at a fixed rate — three times, and keeps the medians;
4. prints queries per second, server CPU per answered query, p50/p99 latency and RSS side by side, with the
   ratio to dnsmasq and the time each took to start answering; then the policy compiler's time and memory
   for 1,000,000 entries.

``--compare-with DIR`` adds the blockdns of another checkout (say, the last release) to the same run, so a
change is judged against its predecessor under the same machine load.

Every run is bounded in time (dnsperf -l) and every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PYTHON = sys.executable
BLOCKLIST_SIZE = 100_000
ALLOWED_NAMES = 200
QUERY_LINES = 20_000
SERVER_CORE, LOAD_CORE = "0", "1"


def blocked_name(index: int) -> str:
    return f"ai{index:06d}.vendor{index % 97}.test"


def allowed_name(index: int) -> str:
    return f"host{index}.allowed.test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return udp.getsockname()[1]


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


# -------------------------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None
    start_seconds: float = 0.0  # from launch to the first answer: loading the blocklist, mostly

    def start(self) -> None:
        launched = time.monotonic()
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *self.command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.process.stderr.read().decode()[-2000:]}")
            if answers(self.port):
                self.start_seconds = time.monotonic() - launched
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start answering within 60 s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def answers(port: int) -> bool:
    query = bytes.fromhex("abcd01000001000000000000") + b"\x05host0\x07allowed\x04test\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.05)  # short: the start time is measured in these probes
        try:
            sock.sendto(query, ("127.0.0.1", port))
            return sock.recv(512)[:2] == b"\xab\xcd"
        except OSError:
            return False


def dnsmasq_server(out: Path, upstream_port: int) -> Server:
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
        user=root
        conf-file={out / "dnsmasq-blocklist.conf"}
        """)
    )
    return Server("dnsmasq", ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"], port)


def unbound_server(out: Path, upstream_port: int) -> Server:
    """Unbound forwarding to the same upstream, one thread, the blocklist as always_nxdomain local zones."""
    port = free_port()
    conf = out / "unbound.conf"
    conf.write_text(
        textwrap.dedent(f"""\
        server:
            interface: 127.0.0.1
            port: {port}
            num-threads: 1
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
    return Server("unbound 1 thread", ["unbound", "-d", "-c", str(conf)], port)


def blockdns_server(
    out: Path, inputs: dict[str, Path], upstream_port: int, querylog: bool, source: Path | None = None
) -> Server:
    """blockdns from this checkout, or (``source``) from another one's package directory."""
    port = free_port()
    label = ("log-on" if querylog else "log-off") + ("-compared" if source else "")
    conf = out / f"blockdns-{label}.toml"
    log_path = str(out / f"querylog-{label}.sqlite") if querylog else ""
    conf.write_text(
        textwrap.dedent(f"""\
        [server]
        listen = ["127.0.0.1:{port}"]
        [resolver]
        mode = "forward"
        upstreams = ["udp://127.0.0.1:{upstream_port}"]
        [policy]
        block = ["feed:bench"]
        [lists]
        feeds = "{inputs["feeds"]}"
        data_dir = "{inputs["data_dir"]}"
        refresh = "0"
        [querylog]
        path = "{log_path}"
        [api]
        listen = ""
        """)
    )
    for stale in out.glob(f"querylog-{label}.sqlite*"):
        stale.unlink()
    name = f"blockdns ({'query log on' if querylog else 'query log off'})"
    if source is not None:
        name = f"blockdns@{source.name}{name[8:]}"
    # -P: the current directory (a checkout, perhaps this one) must not shadow the blockdns meant here.
    env = {**os.environ, "PYTHONPATH": str(source or HERE.parent)}
    return Server(name, [PYTHON, "-P", "-m", "blockdns", "serve", "--config", str(conf)], port, env=env)


# ------------------------------------------------------------------------------------------- dnsperf


@dataclass
class Run:
    qps: float
    lost: float
    cpu_us: float


@dataclass
class Result:
    name: str
    runs: list[Run] = field(default_factory=list)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rss_mb: float = 0.0
    start_seconds: float = 0.0

    @property
    def qps(self) -> float:
        return statistics.median(run.qps for run in self.runs)

    @property
    def cpu_us(self) -> float:
        return statistics.median(run.cpu_us for run in self.runs)


def dnsperf(port: int, queries: Path, seconds: float, *extra: str) -> str:
    command = [
        "taskset",
        "-c",
        LOAD_CORE,
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        str(seconds),
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout


def throughput(server: Server, queries: Path, seconds: float) -> Run:
    cpu_before = server.cpu_seconds()
    output = dnsperf(server.port, queries, seconds, "-c", "8", "-q", "400")
    cpu = server.cpu_seconds() - cpu_before
    completed = int(re.search(r"Queries completed:\s+(\d+)", output).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", output).group(1))
    lost = float(re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", output).group(1))
    return Run(qps, lost, cpu / max(completed, 1) * 1e6)


def latency(server: Server, queries: Path, rate: int, seconds: float) -> tuple[float, float]:
    output = dnsperf(server.port, queries, seconds, "-Q", str(rate), "-v")
    samples = sorted(float(m) for m in re.findall(r"^> \w+ \S+ \S+ ([\d.]+)$", output, re.MULTILINE))
    if not samples:
        return 0.0, 0.0
    return samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000


def measure(server: Server, inputs: dict[str, Path], runs: int, seconds: float, rate: int) -> Result:
    result = Result(server.name)
    server.start()
    try:
        dnsperf(server.port, inputs["queries"], 2, "-n", "1")  # warm the cache and the decision memos
        for _ in range(runs):
            result.runs.append(throughput(server, inputs["queries"], seconds))
        result.p50_ms, result.p99_ms = latency(server, inputs["queries"], rate, 3)
        result.rss_mb = server.rss_mb()
        result.start_seconds = server.start_seconds
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
print(json.dumps({"seconds": elapsed, "mb": rss() - before, "entries": len(group.domains),
                  "lookup_us": per_match}))
"""


def policy_compile() -> dict[str, float]:
    output = subprocess.run([PYTHON, "-c", COMPILE_PROBE], capture_output=True, text=True, timeout=300)
    if output.returncode:
        raise RuntimeError(output.stderr[-2000:])
    return json.loads(output.stdout)


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rate", type=int, default=20000, help="queries per second for the latency run")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument(
        "--compare-with",
        type=Path,
        metavar="DIR",
        help="also run the blockdns of another checkout (its top directory) in the same run",
    )
    args = parser.parse_args()
    if args.compare_with is not None and not (args.compare_with / "blockdns" / "__main__.py").exists():
        print(f"bench: {args.compare_with} is not a blockdns checkout", file=sys.stderr)
        return 2
    for tool in ("dnsperf", "dnsmasq", "unbound", "taskset"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (make system-deps installs it)", file=sys.stderr)
            return 2
    if (os.cpu_count() or 1) < 2:
        print("bench: needs two cores (server and load generator on different cores)", file=sys.stderr)
        return 2
    inputs = write_inputs(OUT)
    upstream_port = free_port()
    upstream = subprocess.Popen(
        ["taskset", "-c", LOAD_CORE, PYTHON, str(HERE / "upstream.py"), str(upstream_port)],
        stdout=subprocess.DEVNULL,
    )
    results: list[Result] = []
    try:
        time.sleep(0.5)
        servers = [
            dnsmasq_server(OUT, upstream_port),
            unbound_server(OUT, upstream_port),
            blockdns_server(OUT, inputs, upstream_port, querylog=False),
            blockdns_server(OUT, inputs, upstream_port, querylog=True),
        ]
        if args.compare_with is not None:
            source = args.compare_with.resolve()
            servers += [
                blockdns_server(OUT, inputs, upstream_port, querylog=False, source=source),
                blockdns_server(OUT, inputs, upstream_port, querylog=True, source=source),
            ]
        for server in servers:
            print(f"bench: {server.name} ...", file=sys.stderr, flush=True)
            results.append(measure(server, inputs, args.runs, args.seconds, args.rate))
    finally:
        upstream.terminate()
        upstream.wait(5)
    report(results, args)
    if not args.skip_compile:
        figures = policy_compile()
        print(
            f"\npolicy compile: {figures['entries']:,} entries in {figures['seconds']:.2f} s, "
            f"(read from the stored feed file and compiled), {figures['mb']:.0f} MB resident for the "
            f"compiled form; match {figures['lookup_us']:.2f} µs per name"
        )
    return 0


def report(results: list[Result], args: argparse.Namespace) -> None:
    base = results[0]
    print(
        f"\n{BLOCKLIST_SIZE:,}-entry blocklist; 80% repeated allowed names, 20% blocked; server on core "
        f"{SERVER_CORE}, dnsperf on core {LOAD_CORE}; median of {args.runs} runs of {args.seconds:.0f} s; "
        f"latency at {args.rate:,} q/s\n"
    )
    columns = (
        ("q/s", 9), ("× dnsmasq", 9), ("CPU µs/q", 9),
        ("p50 ms", 7), ("p99 ms", 7), ("RSS MB", 7), ("start s", 7),
    )  # fmt: skip
    header = f"{'server':<32} " + " ".join(f"{title:>{width}}" for title, width in columns)
    print(header)
    print("-" * len(header))
    for result in results:
        ratio = result.qps / base.qps if base.qps else 0
        print(
            f"{result.name:<32} {result.qps:>9,.0f} {ratio:>9.2f} {result.cpu_us:>9.1f} "
            f"{result.p50_ms:>7.3f} {result.p99_ms:>7.3f} {result.rss_mb:>7.1f} {result.start_seconds:>7.2f}"
        )
    lost = max(run.lost for result in results for run in result.runs)
    print(f"\nqueries lost (worst run): {lost:.2f}%")


if __name__ == "__main__":
    sys.exit(main())
