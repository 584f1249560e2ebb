"""A real Unbound (the Debian package) run by a test as its own process: DNS over TLS (``tls-port``) and DNS
over HTTPS (``https-port``, Debian builds it with nghttp2) on loopback, with a certificate from the test's
throwaway CA, forwarding everything to a fake upstream, caching nothing, and waiting up to 5 s for the fake
upstream before asking it again (so a slow answer the test asked for comes once)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query

from ports import free_port
from tlscerts import ServerCert

UNBOUND = shutil.which("unbound") or (
    Path("/usr/sbin/unbound") if Path("/usr/sbin/unbound").exists() else None
)
SKIP_REASON = "unbound is not installed (tests/system-deps.sh installs the Debian package)"


class UnboundProcess:
    def __init__(
        self, directory: Path, cert: ServerCert, forward_to: tuple[str, int], extra: str = ""
    ) -> None:
        """``extra``: more ``server:`` lines (a benchmark's local zone)."""
        self.directory = directory
        self.cert = cert
        self.forward_to = forward_to
        self.extra = extra
        self.port, self.tls_port, self.https_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        host, port = self.forward_to
        return f"""server:
  interface: 127.0.0.1@{self.port}
  interface: 127.0.0.1@{self.tls_port}
  interface: 127.0.0.1@{self.https_port}
  tls-port: {self.tls_port}
  https-port: {self.https_port}
  tls-service-key: "{self.cert.key}"
  tls-service-pem: "{self.cert.cert}"
  http-endpoint: "/dns-query"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  username: ""
  chroot: ""
  directory: "{self.directory}"
  pidfile: ""
  use-syslog: no
  logfile: "{self.directory / "unbound.log"}"
  verbosity: 1
  num-threads: 1
  module-config: "iterator"
  qname-minimisation: no
  cache-max-ttl: 0
  cache-max-negative-ttl: 0
  incoming-num-tcp: 64
  tcp-idle-timeout: 30000
  local-zone: "test." nodefault
  local-zone: "unbound-ready.test." static  # the start-up probe, answered without the fake
  infra-cache-min-rtt: 5000  # a fake upstream told to answer slowly is waited for, not asked again
  discard-timeout: 10000  # and its answer still sent (past 1.9 s Unbound drops it and closes a stream)
{self.extra}
forward-zone:
  name: "."
  forward-addr: {host}@{port}
"""

    def start(self, timeout: float = 15) -> UnboundProcess:
        assert UNBOUND is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "unbound.conf"
        conf.write_text(self.config())
        self.process = subprocess.Popen(
            [str(UNBOUND), "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        query = dns.message.make_query("unbound-ready.test", "A")
        while True:
            try:
                dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
                return self
            except (OSError, dns.exception.Timeout):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (
                        (self.directory / "unbound.log").read_text()
                        if (self.directory / "unbound.log").exists()
                        else ""
                    )
                    raise RuntimeError(f"unbound did not start: {log[-2000:]}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
