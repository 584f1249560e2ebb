"""A real redis-server (the Debian package) run by a test as its own process: a loopback port, no
persistence, its working directory in the test's temporary directory."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from ports import free_port

REDIS_SERVER = shutil.which("redis-server")
SKIP_REASON = "redis-server is not installed (tests/system-deps.sh installs the Debian package)"


class RedisProcess:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisProcess:
        assert REDIS_SERVER is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.directory), "--protected-mode", "yes"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def connect(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)

    def get(self, key: str) -> str | None:
        with self.connect() as client:
            value = client.get(key)
        assert value is None or isinstance(value, str)
        return value

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
