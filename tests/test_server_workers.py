"""``[server] workers = 2``: the real ``blockdns serve``, two worker processes on one port under a supervisor.

Both answer (queries from many source ports spread over their SO_REUSEPORT sockets); a SIGKILLed worker is
replaced while the other keeps answering; SIGHUP, the API's reload and its pause reach both; the counters
add up across them; SIGTERM, or the supervisor's death, leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from blockdns import config
from blockdns.errors import ConfigError
from blockdns.server import workers

from conftest import TEST_LISTS_TOML
from fakedns import FakeDNS
from opshelpers import http
from ports import free_port
from waiting import wait_until

TOKEN = "workers-token"
SERVING = re.compile(r"serving on 127\.0\.0\.1:(\d+) \(udp\+tcp\) with 2 worker processes")
MAX_QUERIES = 2000  # a bound on every loop that sends queries until both workers have answered


def write_config(path: Path, upstream: FakeDNS, api_port: int, block: str, querylog: str = "") -> None:
    path.write_text(
        f"""
[server]
listen = ["127.0.0.1:0"]
workers = 2
[resolver]
mode = "forward"
upstreams = ["{upstream.url}"]
[policy]
block = [{block}]
{TEST_LISTS_TOML}[querylog]
path = "{querylog}"
[api]
listen = "127.0.0.1:{api_port}"
token = "{TOKEN}"
"""
    )


def rcode(port: int, name: str, timeout: float = 2.0) -> int | None:
    """One query from a new socket (so a new source port); None: no answer in time."""
    try:
        response = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=timeout)
    except dns.exception.Timeout:
        return None
    return response.rcode()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Served:
    """A running ``blockdns serve`` with workers: its output, its DNS port and its API."""

    def __init__(self, process: subprocess.Popen[str], api_port: int) -> None:
        self.process = process
        self.api = f"http://127.0.0.1:{api_port}"
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_serving(self) -> None:
        def serving() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"blockdns serve exited with {self.process.returncode}: {self.output()}")
            match = SERVING.search(self.output())
            if match:
                self.port = int(match.group(1))
            return bool(match)

        assert wait_until(serving, 60), self.output()

    def stats(self) -> dict[str, object]:
        body = http("GET", f"{self.api}/api/stats", timeout=10).text
        return json.loads(body)

    def workers(self) -> list[dict[str, int]]:
        workers = self.stats()["workers"]
        assert isinstance(workers, list)
        return workers

    def post(self, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        response = http("POST", f"{self.api}{path}", body=body or {}, token=TOKEN, timeout=60)
        return json.loads(response.text)

    def answer_until_both_served(self, name: str, expected: int) -> int:
        """Ask ``name`` from new source ports until every worker has answered some of them since now; every
        answer must be ``expected``. Returns how many were asked."""
        before = {worker["pid"]: worker["queries"] for worker in self.workers()}
        asked = 0
        while asked < MAX_QUERIES:
            for _ in range(20):
                assert rcode(self.port, name) == expected
                asked += 1
            now = {worker["pid"]: worker["queries"] for worker in self.workers()}
            if set(now) == set(before) and all(now[pid] > before[pid] for pid in now):
                return asked
        pytest.fail(f"{MAX_QUERIES} queries did not reach both workers: {self.workers()}")


@pytest.fixture
def serve(tmp_path: Path, vendor_upstream: FakeDNS) -> Iterator[Callable[[str], Served]]:
    started: list[tuple[Served, set[int]]] = []

    def start(block: str = '"vendor:deepseek"', querylog: str = "") -> Served:
        api_port = free_port()
        write_config(tmp_path / "blockdns.toml", vendor_upstream, api_port, block, querylog)
        process = subprocess.Popen(
            [sys.executable, "-m", "blockdns", "serve", "--config", str(tmp_path / "blockdns.toml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        served = Served(process, api_port)
        seen: set[int] = set()
        started.append((served, seen))
        served.wait_serving()
        seen |= descendants(process.pid)
        return served

    yield start
    for served, seen in started:
        seen |= descendants(served.process.pid) if served.process.poll() is None else set()
        if served.process.poll() is None:
            served.process.send_signal(signal.SIGTERM)
            try:
                served.process.wait(30)
            except subprocess.TimeoutExpired:
                served.process.kill()
                served.process.wait(5)
        for pid in seen:  # no orphan left behind: the zygote and every worker are gone
            if not wait_until(lambda pid=pid: not running(pid)):
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"process {pid} outlived blockdns serve")


def test_two_workers_share_one_port_and_their_counters_add_up(serve):
    served = serve()
    workers = served.workers()
    assert len(workers) == 2 and all(worker["running"] for worker in workers)
    pids = {worker["pid"] for worker in workers}
    assert pids <= descendants(served.process.pid) and served.process.pid not in pids

    asked = served.answer_until_both_served("chat.deepseek.com", dns.rcode.NXDOMAIN)
    asked += served.answer_until_both_served("chat.openai.com", dns.rcode.NOERROR)

    stats = served.stats()
    queries = stats["queries"]
    workers = stats["workers"]
    assert queries["total"] == asked == sum(worker["queries"] for worker in workers)
    assert all(worker["queries"] > 0 for worker in workers)
    metrics = http("GET", f"{served.api}/metrics", timeout=10).text
    per_worker = re.findall(r'^blockdns_worker_queries_total\{worker="\d"\} (\S+)$', metrics, re.M)
    totals = re.findall(r"^blockdns_queries_total\{[^}]*\} (\S+)$", metrics, re.M)
    assert len(per_worker) == 2 and sum(map(float, per_worker)) == sum(map(float, totals)) == asked
    assert "blockdns_workers 2.0" in metrics


def test_a_killed_worker_is_replaced_and_the_other_keeps_answering(serve):
    served = serve()
    victim, survivor = served.workers()
    os.kill(victim["pid"], signal.SIGKILL)
    # Reaped: all its threads have exited, so its sockets are closed. (A query the kernel queued on them
    # between the kill and then is lost with the process, as it would be with one process; the client asks
    # again.) Its leader thread alone turns zombie earlier, while the other threads still hold the sockets.
    assert wait_until(lambda: not Path(f"/proc/{victim['pid']}").exists())

    for _ in range(50):  # the kernel sends every query to the sockets still open: none is lost
        assert rcode(served.port, "chat.deepseek.com") == dns.rcode.NXDOMAIN

    def replaced() -> bool:
        slot = served.workers()[victim["index"]]
        return slot["running"] and slot["pid"] not in (0, victim["pid"]) and slot["restarts"] == 1

    assert wait_until(replaced), served.workers()
    assert served.workers()[survivor["index"]]["pid"] == survivor["pid"]
    served.answer_until_both_served("chat.deepseek.com", dns.rcode.NXDOMAIN)  # the new one answers too
    assert f"worker {victim['index']} (pid {victim['pid']}) was killed by SIGKILL" in served.output()


def test_reloads_and_pause_reach_every_worker(serve, tmp_path, vendor_upstream):
    served = serve('"vendor:deepseek"')
    config_path = tmp_path / "blockdns.toml"
    api_port = int(served.api.rsplit(":", 1)[1])

    write_config(config_path, vendor_upstream, api_port, '"vendor:openai"')
    served.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: _reloads(served) == 1)
    served.answer_until_both_served("chat.openai.com", dns.rcode.NXDOMAIN)
    served.answer_until_both_served("chat.deepseek.com", dns.rcode.NOERROR)

    write_config(config_path, vendor_upstream, api_port, '"vendor:deepseek"')
    result = served.post("/api/lists/reload")  # answers once every worker has swapped the new policy in
    assert result["ok"] and "(in 2 workers)" in str(result["message"])
    served.answer_until_both_served("chat.deepseek.com", dns.rcode.NXDOMAIN)

    served.post("/api/pause", {"duration": "5m"})
    served.answer_until_both_served("chat.deepseek.com", dns.rcode.NOERROR)
    served.post("/api/resume")
    served.answer_until_both_served("chat.deepseek.com", dns.rcode.NXDOMAIN)


def _reloads(served: Served) -> int:
    metrics = http("GET", f"{served.api}/metrics", timeout=10).text
    match = re.search(r"^blockdns_config_reloads_total (\S+)$", metrics, re.M)
    return int(float(match.group(1))) if match else -1


def test_every_worker_s_rows_reach_the_one_query_log(serve, tmp_path):
    log_path = tmp_path / "querylog.sqlite"
    served = serve(querylog=str(log_path))
    asked = served.answer_until_both_served("chat.deepseek.com", dns.rcode.NXDOMAIN)

    def logged() -> int:
        reply = http("GET", f"{served.api}/api/querylog?limit=1000", timeout=10)
        return len(json.loads(reply.text)["rows"])

    assert wait_until(lambda: logged() == asked), (logged(), asked)
    writers = [
        pid for pid in descendants(served.process.pid) | {served.process.pid} if _opened(pid, log_path)
    ]
    worker_pids = {worker["pid"] for worker in served.workers()}
    assert len(writers) == 1 and writers[0] not in worker_pids  # one writer; no worker opens the database


def _opened(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def test_sigterm_stops_every_process(serve):
    served = serve()
    family = descendants(served.process.pid)
    assert len(family) >= 3  # the zygote and two workers
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(30) == 0
    assert wait_until(lambda: not any(running(pid) for pid in family))
    assert "Traceback" not in served.output()


def test_workers_stop_when_the_supervisor_is_killed(serve):
    served = serve()
    family = descendants(served.process.pid)
    served.process.kill()
    served.process.wait(10)
    assert wait_until(lambda: not any(running(pid) for pid in family))


@pytest.mark.parametrize("value", ["0", "-1", '"many"', "1.5", "true"])
def test_a_bad_workers_value_is_one_line_naming_the_key(tmp_path, value):
    path = tmp_path / "blockdns.toml"
    path.write_text(f"[server]\nworkers = {value}\n")
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    assert "server.workers" in str(raised.value) and "\n" not in str(raised.value)


def test_auto_is_one_worker_per_usable_core(tmp_path):
    path = tmp_path / "blockdns.toml"
    path.write_text('[server]\nworkers = "auto"\n')
    assert config.load(path).server.worker_count() == len(os.sched_getaffinity(0))
    path.write_text("[server]\nworkers = 3\n")
    assert config.load(path).server.worker_count() == 3


def test_a_port_the_workers_cannot_bind_fails_the_start_with_one_line(tmp_path, vendor_upstream):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_REUSEPORT: the workers cannot join it
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    path = tmp_path / "blockdns.toml"
    write_config(path, vendor_upstream, free_port(), '"vendor:deepseek"')
    path.write_text(path.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
    try:
        process = subprocess.run(
            [sys.executable, "-m", "blockdns", "serve", "--config", str(path)],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
        )  # fmt: skip
    finally:
        taken.close()
    assert process.returncode != 0
    assert f"cannot listen on udp 127.0.0.1:{port}" in process.stderr + process.stdout
    assert "the worker processes did not start" in process.stderr
    assert "Traceback" not in process.stderr + process.stdout


def test_a_crash_loop_is_slowed_down_and_a_long_life_restarts_soon():
    delays = [0.0]
    for _ in range(10):  # a worker that dies at once, again and again
        delays.append(workers.restart_delay(delays[-1], lived=0.1))
    assert delays[1:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0] and delays[7:] == [30.0] * 4
    assert workers.restart_delay(30.0, lived=workers.STABLE_LIFE) == workers.RESTART_SOON < 0.5
