"""The real `blockdns serve` process: SIGHUP reloads atomically, a bad config is refused while the old one
keeps serving, a changed file reloads by itself, SIGTERM stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import TEST_LISTS_TOML
from fakedns import FakeDNS
from opshelpers import http
from ports import free_port
from waiting import wait_until


def write_config(path: Path, port: int, upstream: FakeDNS, block: str, extra: str = "") -> None:
    path.write_text(
        f"""
[server]
listen = ["127.0.0.1:{port}"]
[resolver]
mode = "forward"
upstreams = ["{upstream.url}"]
[policy]
block = [{block}]
{TEST_LISTS_TOML}[querylog]
path = ""
[api]
listen = ""
{extra}
"""
    )


def rcode(port: int, name: str) -> int | None:
    try:
        response = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=1)
    except dns.exception.Timeout:
        return None
    return response.rcode()


def scrape(url: str) -> str:
    try:
        return http("GET", url, timeout=2).text
    except OSError:  # not listening yet
        return ""


def wait_until_serving(process: subprocess.Popen[str], port: int, name: str, expected: int) -> None:
    """Wait for a started server to answer ``name`` with ``expected``; a server that exits fails the test with
    its output. A start can take several seconds on a loaded machine, so the deadline is generous."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"blockdns serve exited with {process.returncode}: {process.communicate()[0]}")
        if rcode(port, name) == expected:
            return
        time.sleep(0.1)
    pytest.fail(f"blockdns serve did not answer {name} on port {port} within 60 s")


@pytest.fixture
def serve(tmp_path):
    processes = []

    def start(config: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "blockdns", "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_sighup_reloads_and_a_bad_config_is_refused(tmp_path, vendor_upstream, serve):
    port = free_port()
    config = tmp_path / "blockdns.toml"
    write_config(config, port, vendor_upstream, '"vendor:deepseek"')
    process = serve(config)
    wait_until_serving(process, port, "chat.deepseek.com", dns.rcode.NXDOMAIN)
    assert rcode(port, "chat.openai.com") == dns.rcode.NOERROR

    write_config(config, port, vendor_upstream, '"vendor:openai"')
    process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: rcode(port, "chat.openai.com") == dns.rcode.NXDOMAIN)
    assert rcode(port, "chat.deepseek.com") == dns.rcode.NOERROR

    config.write_text(config.read_text() + "\n[bogus]\n")
    process.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert rcode(port, "chat.openai.com") == dns.rcode.NXDOMAIN  # the old policy still serves
    assert process.poll() is None

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "reload refused" in output and "bogus: unknown key" in output
    assert "Traceback" not in output


def test_sighup_refuses_an_empty_config_and_counts_it(tmp_path, vendor_upstream, serve):
    port, api_port = free_port(), free_port()
    config = tmp_path / "blockdns.toml"
    write_config(config, port, vendor_upstream, '"vendor:openai"')
    config.write_text(config.read_text().replace('listen = ""', f'listen = "127.0.0.1:{api_port}"'))
    process = serve(config)
    wait_until_serving(process, port, "chat.openai.com", dns.rcode.NXDOMAIN)

    config.write_text("")  # an editor that truncates before it writes
    process.send_signal(signal.SIGHUP)
    metrics = f"http://127.0.0.1:{api_port}/metrics"
    assert wait_until(lambda: "blockdns_config_reloads_refused_total 1.0" in scrape(metrics))
    assert rcode(port, "chat.deepseek.com") == dns.rcode.NOERROR  # forwarded: still the old config
    assert rcode(port, "chat.openai.com") == dns.rcode.NXDOMAIN

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    refusals = [line for line in output.splitlines() if "reload refused" in line]
    assert len(refusals) == 1 and "has no settings" in refusals[0] and str(config) in refusals[0]
    assert "Traceback" not in output


def test_a_changed_config_file_reloads_without_a_signal(tmp_path, vendor_upstream, serve):
    port = free_port()
    config = tmp_path / "blockdns.toml"
    write_config(config, port, vendor_upstream, '"vendor:deepseek"')
    process = serve(config)
    wait_until_serving(process, port, "chat.deepseek.com", dns.rcode.NXDOMAIN)
    time.sleep(0.05)
    write_config(config, port, vendor_upstream, "")
    os.utime(config, (time.time() + 5, time.time() + 5))  # a distinct mtime even on coarse clocks
    assert wait_until(lambda: rcode(port, "chat.deepseek.com") == dns.rcode.NOERROR)


def test_serve_with_a_bad_config_exits_2_with_one_line(tmp_path, serve):
    config = tmp_path / "blockdns.toml"
    config.write_text("[server]\nlisten = ['127.0.0.1:notaport']\n")
    process = serve(config)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 2
    assert output.strip().count("\n") == 0 and "server.listen" in output
