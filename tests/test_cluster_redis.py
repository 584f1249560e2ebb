"""Replicas sharing one Redis ([cluster] redis): two real blockdns servers and a real redis-server, each on
its own loopback port. A pause, a resume or a reload on one replica reaches the other; the counters are
summed over both; a replica that loses Redis keeps answering DNS, logs one line, and reconnects by itself."""

from __future__ import annotations

import json
import logging
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from blockdns import config
from blockdns.errors import ConfigError
from blockdns.ops import cluster as cluster_module
from blockdns.server import app as app_module

from conftest import TEST_LISTS_TOML, RunningServer
from fakedns import FakeDNS
from opshelpers import TOKEN, chromium_paths, headless_chrome, http
from ports import free_port
from redisproc import REDIS_SERVER, SKIP_REASON, RedisProcess

BLOCKED = "chat.deepseek.com"
PROBE = "probe.cluster.test"
DEADLINE = 5.0  # seconds for anything to reach the other replica
RECONNECT_DEADLINE = cluster_module.BACKOFF_MAX + 2 * cluster_module.TIMEOUT + 3.0

needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason=SKIP_REASON)


def config_text(upstream: FakeDNS, redis_url: str, probe_address: str) -> str:
    return f"""\
[server]
listen = ["127.0.0.1:0"]

[resolver]
mode = "forward"
upstreams = ["{upstream.url}"]

[policy]
block = ["domain:deepseek.com"]

[local]
records = ["{PROBE}. 300 IN A {probe_address}"]

{TEST_LISTS_TOML}
[querylog]
path = ""

[api]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[cluster]
redis = "{redis_url}"
"""


def wait_until(condition: Callable[[], bool], seconds: float = DEADLINE) -> float:
    """Seconds until ``condition()`` held; fails the test past the deadline."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not within {seconds:.1f}s")
        time.sleep(0.001)
    return time.monotonic() - started


@dataclass
class Cluster:
    redis: RedisProcess
    config: Path
    upstream: FakeDNS
    a: RunningServer
    b: RunningServer

    def api(self, replica: RunningServer, method: str, path: str, body: object = None) -> object:
        assert replica.server is not None and replica.server.api is not None
        reply = http(method, replica.server.api.url + path, body, token=TOKEN)
        assert reply.status == 200, reply.text
        return reply.json()


def connected(replica: RunningServer) -> bool:
    assert replica.server is not None and replica.server.cluster is not None
    return replica.server.cluster.connected


def paused(replica: RunningServer) -> bool:
    assert replica.server is not None
    return replica.server.pause_switch.paused()


def stored_pause(cluster: Cluster) -> dict[str, object]:
    value = cluster.redis.get(cluster_module.PAUSE_KEY)
    return json.loads(value) if value else {}  # type: ignore[no-any-return]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis").start()
    yield process
    process.kill()


@pytest.fixture
def upstream() -> Iterator[FakeDNS]:
    fake = FakeDNS("127.0.0.2").answer(BLOCKED, "A", "192.0.2.66").start()
    yield fake
    fake.stop()


@pytest.fixture
def cluster(
    tmp_path: Path, redis_server: RedisProcess, upstream: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    # Each replica would notice the shared file change by itself; the tests want to see the announcement.
    monkeypatch.setattr(app_module, "WATCH_INTERVAL", 3600.0)
    path = tmp_path / "blockdns.toml"  # one file read by both, as a Kubernetes ConfigMap is
    path.write_text(config_text(upstream, redis_server.url, "192.0.2.1"))
    replicas = [RunningServer(config.load(path)).start() for _ in range(2)]
    try:
        for replica in replicas:
            wait_until(lambda replica=replica: connected(replica))
        yield Cluster(redis_server, path, upstream, *replicas)
    finally:
        for replica in replicas:
            replica.stop()


@needs_redis
def test_a_pause_on_one_replica_reaches_the_other(cluster: Cluster) -> None:
    assert cluster.b.query(BLOCKED).rcode() == dns.rcode.NXDOMAIN
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        cluster.api(cluster.a, "POST", "/api/pause", {"duration": "10m"})
        wait_until(lambda: paused(cluster.b))
        latencies.append(time.monotonic() - started)
        assert cluster.b.query(BLOCKED).answer[0][0].address == "192.0.2.66"
        assert cluster.api(cluster.b, "GET", "/api/health") == {"status": "ok", "paused": True}
        cluster.api(cluster.a, "POST", "/api/resume")
        wait_until(lambda: not paused(cluster.b))
        assert cluster.b.query(BLOCKED).rcode() == dns.rcode.NXDOMAIN
    median, worst = statistics.median(latencies) * 1000, max(latencies) * 1000
    print(f"pause A->B: median {median:.1f} ms, max {worst:.1f} ms")
    assert stored_pause(cluster)["until"] == 0  # a resume is a record too


@needs_redis
def test_a_replica_that_starts_later_reads_the_pause(cluster: Cluster) -> None:
    until = cluster.api(cluster.a, "POST", "/api/pause", {"duration": "10m"})["paused_until"]  # type: ignore[index]
    wait_until(lambda: paused(cluster.b))
    late = RunningServer(config.load(cluster.config)).start()
    try:
        wait_until(lambda: paused(late))
        assert late.server is not None and late.server.paused_until is not None
        assert abs(late.server.paused_until - until) < 1.0
        assert late.query(BLOCKED).answer[0][0].address == "192.0.2.66"
    finally:
        late.stop()


@needs_redis
def test_a_reload_on_one_replica_reloads_the_other_from_its_own_files(cluster: Cluster) -> None:
    assert cluster.b.query(PROBE).answer[0][0].address == "192.0.2.1"
    cluster.config.write_text(config_text(cluster.upstream, cluster.redis.url, "192.0.2.2"))
    assert cluster.b.server is not None and cluster.a.server is not None
    b_reloads = cluster.b.server.stats.reloads
    cluster.api(cluster.a, "POST", "/api/lists/reload")
    wait_until(lambda: cluster.b.query(PROBE).answer[0][0].address == "192.0.2.2")
    # B reloaded once and did not announce it back: A reloaded only the once it was asked to.
    wait_until(lambda: cluster.b.server is not None and cluster.b.server.stats.reloads == b_reloads + 1)
    time.sleep(0.5)  # time for an echo to arrive, if there were one (the assertion is that none does)
    assert cluster.a.server.stats.reloads == 1
    assert cluster.b.server.stats.reloads == b_reloads + 1


@needs_redis
def test_the_counters_are_summed_over_the_replicas(cluster: Cluster) -> None:
    for _ in range(3):
        assert cluster.a.query(BLOCKED).rcode() == dns.rcode.NXDOMAIN
    for _ in range(2):
        assert cluster.b.query(PROBE).rcode() == dns.rcode.NOERROR

    def totals() -> dict[str, object]:
        body = cluster.api(cluster.a, "GET", "/api/stats")
        assert isinstance(body, dict)
        return body["cluster"]  # type: ignore[no-any-return]

    # B writes its counters every COUNTER_INTERVAL seconds; A adds its own as they are now.
    def summed() -> bool:
        view = totals()
        queries = view["totals"]["queries"] if view["totals"] else {}  # type: ignore[index]
        return view["replicas"] == 2 and queries.get("total") == 5  # type: ignore[union-attr]

    wait_until(summed, cluster_module.COUNTER_INTERVAL + DEADLINE)
    view = totals()
    assert view["connected"] is True and view["redis"] == cluster.redis.url
    queries = view["totals"]["queries"]  # type: ignore[index]
    assert queries["blocked"] == 3 and queries["by_outcome"]["local"] == 2
    own = cluster.api(cluster.a, "GET", "/api/stats")["queries"]  # type: ignore[index]
    assert own["total"] == 3  # the rest of the body stays this replica's own
    metrics = http("GET", cluster.a.server.api.url + "/metrics").text  # type: ignore[union-attr]
    assert "blockdns_cluster_connected 1.0" in metrics
    # A replica that stops takes its numbers out of the totals at once, not when they expire.
    cluster.b.stop()
    cluster.b.server = None  # stopped: the fixture's teardown has nothing left to stop
    view = totals()
    assert view["replicas"] == 1 and view["totals"]["queries"]["total"] == 3  # type: ignore[index]


@needs_redis
def test_losing_redis_keeps_dns_answering_and_reconnects(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blockdns")
    cluster.api(cluster.a, "POST", "/api/pause", {"duration": "10m"})
    wait_until(lambda: paused(cluster.b))
    cluster.redis.kill()
    wait_until(lambda: not connected(cluster.a) and not connected(cluster.b))
    for replica in (cluster.a, cluster.b):
        assert replica.query(BLOCKED).answer[0][0].address == "192.0.2.66"  # the last state: paused
        assert replica.query(PROBE).answer[0][0].address == "192.0.2.1"
    # A change made while Redis is away stays local to that replica, and goes out once Redis is back.
    cluster.api(cluster.a, "POST", "/api/resume")
    assert cluster.a.query(BLOCKED).rcode() == dns.rcode.NXDOMAIN and paused(cluster.b)
    body = cluster.api(cluster.b, "GET", "/api/stats")
    assert body["cluster"]["connected"] is False and body["cluster"]["totals"] is None  # type: ignore[index]
    time.sleep(2 * cluster_module.BACKOFF_FIRST + 1)  # several failed attempts: still one line each
    lost = [r.getMessage() for r in caplog.records if "lost Redis" in r.getMessage()]
    assert len(lost) == 2, lost
    assert {cluster.a.server.cluster.replica, cluster.b.server.cluster.replica} == {  # type: ignore[union-attr]
        message.split("replica ")[1].split()[0] for message in lost
    }

    RedisProcess(cluster.redis.directory, cluster.redis.port).start()  # empty: it kept nothing
    cluster.redis.process = None
    started = time.monotonic()
    wait_until(lambda: connected(cluster.a) and connected(cluster.b), RECONNECT_DEADLINE)
    print(f"reconnected {time.monotonic() - started:.2f}s after Redis came back")
    wait_until(lambda: not paused(cluster.b))  # A's resume, newer than B's pause, won
    # ...in Redis too, though both wrote their record back to the empty Redis: the older never replaces it.
    wait_until(lambda: stored_pause(cluster).get("until") == 0)
    assert cluster.b.query(BLOCKED).rcode() == dns.rcode.NXDOMAIN
    back = [r.getMessage() for r in caplog.records if "connected to Redis" in r.getMessage()]
    assert len(back) == 2, back
    # The channel works again both ways.
    cluster.api(cluster.b, "POST", "/api/pause", {"duration": "10m"})
    wait_until(lambda: paused(cluster.a))


def test_redis_down_at_start_is_one_line_and_dns_answers(
    tmp_path: Path, upstream: FakeDNS, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blockdns")
    url = "redis://:s3cret-word@127.0.0.1:9/0"  # the discard port: nothing listens
    path = tmp_path / "blockdns.toml"
    path.write_text(config_text(upstream, url, "192.0.2.1"))
    replica = RunningServer(config.load(path)).start()
    try:
        assert replica.query(BLOCKED).rcode() == dns.rcode.NXDOMAIN
        wait_until(lambda: any("cannot reach Redis" in r.getMessage() for r in caplog.records))
        time.sleep(2 * cluster_module.BACKOFF_FIRST + 1)
        lines = [r.getMessage() for r in caplog.records if "Redis" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "redis://127.0.0.1:9/0" in lines[0]
        assert not any("s3cret" in r.getMessage() for r in caplog.records)
        assert replica.query(PROBE).answer[0][0].address == "192.0.2.1"
    finally:
        replica.stop()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379/0", "redis:///0", "redis://127.0.0.1:99999/0", "redis://u:s3cret@h/db0"],
)
def test_a_bad_redis_url_is_one_line_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_dict({"cluster": {"redis": url}})
    message = str(caught.value)
    assert "cluster.redis" in message and "\n" not in message and "s3cret" not in message


def test_display_url_drops_the_credentials() -> None:
    assert cluster_module.display_url("redis://user:pw@redis:6380/2") == "redis://redis:6380/2"
    assert cluster_module.display_url("rediss://:pw@[::1]/0") == "rediss://[::1]/0"


@pytest.mark.parametrize(
    "data",
    [
        {"until": 1e12, "changed": 1.0, "origin": "x"},
        {"until": float("inf"), "changed": 1.0, "origin": "x"},
        {"until": float("nan"), "changed": 1.0, "origin": "x"},
        {"until": True, "changed": 1.0, "origin": "x"},
        {"until": 1.0, "changed": "1", "origin": "x"},
        {"until": 1.0, "changed": 1.0},
        [1, 2],
    ],
)
def test_only_well_formed_pause_records_are_taken(data: object) -> None:
    record = cluster_module.PauseRecord.parse(data)
    assert (record is not None) is (data == {"until": 1e12, "changed": 1.0, "origin": "x"})


@needs_redis
def test_sighup_on_one_blockdns_process_reloads_the_other(
    tmp_path: Path, redis_server: RedisProcess, upstream: FakeDNS
) -> None:
    """Two real `blockdns serve` processes, each with its own copy of the config (as two hosts would have)."""
    processes: list[tuple[subprocess.Popen[bytes], Path, int, Path]] = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            port = free_port()
            config_path = directory / "blockdns.toml"
            config_path.write_text(process_config(upstream, redis_server.url, port, "192.0.2.1"))
            output = directory / "output.log"
            with output.open("wb") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "blockdns", "serve", "--config", str(config_path)],
                    stdout=sink, stderr=subprocess.STDOUT, cwd=directory,
                )  # fmt: skip
            processes.append((process, config_path, port, output))
        for process, _, port, output in processes:
            wait_until(lambda p=process, n=port: p.poll() is not None or probe_address(n) == "192.0.2.1", 60)
            assert process.poll() is None, output.read_text()  # it exited: say why
            wait_until(lambda output=output: "joined through Redis" in output.read_text(), 10)
        for _, config_path, port, _ in processes:
            config_path.write_text(process_config(upstream, redis_server.url, port, "192.0.2.2"))
        (a, _, _, _), (_, _, b_port, b_output) = processes
        a.send_signal(signal.SIGHUP)
        wait_until(lambda: probe_address(b_port) == "192.0.2.2")
        wait_until(lambda: "reloaded: reloading this replica's configuration" in b_output.read_text())
        for process, *_ in processes:
            process.send_signal(signal.SIGTERM)
        for process, _, _, output in processes:
            assert process.wait(15) == 0
            text = output.read_text()
            assert "Traceback" not in text, text
        assert redis_server.get(cluster_module.PAUSE_KEY) is None  # nobody paused
        with redis_server.connect() as client:
            assert client.zcard(cluster_module.REPLICAS_KEY) == 0  # both took their counters out
    finally:
        for process, *_ in processes:
            if process.poll() is None:
                process.kill()
                process.wait(5)


def process_config(upstream: FakeDNS, redis_url: str, port: int, probe_address: str) -> str:
    text = config_text(upstream, redis_url, probe_address).replace("127.0.0.1:0", f"127.0.0.1:{port}", 1)
    return text.replace('listen = "127.0.0.1:0"', 'listen = ""')  # the API: not needed here


def probe_address(port: int) -> str | None:
    try:
        response = dns.query.udp(dns.message.make_query(PROBE, "A"), "127.0.0.1", port=port, timeout=1)
    except (dns.exception.Timeout, OSError):
        return None
    return response.answer[0][0].address if response.answer else None


@needs_redis
@pytest.mark.skipif(chromium_paths() is None, reason="chromium and chromedriver are not installed")
def test_the_dashboard_gives_the_cluster_total(cluster: Cluster, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert cluster.a.query(BLOCKED).rcode() == dns.rcode.NXDOMAIN
    for _ in range(2):
        assert cluster.b.query(PROBE).rcode() == dns.rcode.NOERROR
    wait_until(
        lambda: cluster.api(cluster.a, "GET", "/api/stats")["cluster"]["replicas"] == 2,  # type: ignore[index]
        cluster_module.COUNTER_INTERVAL + DEADLINE,
    )
    assert cluster.a.server is not None and cluster.a.server.api is not None
    driver = headless_chrome(tmp_path / "chrome-profile")
    try:
        driver.set_page_load_timeout(20)
        driver.get(cluster.a.server.api.url + "/")
        WebDriverWait(driver, 10, poll_frequency=0.1).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true"
        )
        WebDriverWait(driver, 10 + cluster_module.COUNTER_INTERVAL, poll_frequency=0.2).until(
            lambda d: d.find_element(By.ID, "queries-scope").text == "this replica; 3 on all 2 replicas"
        )
        assert driver.find_element(By.ID, "total-queries").text == "1"
    finally:
        driver.quit()
