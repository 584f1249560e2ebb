"""A real PostgreSQL server for the tests: the Debian package's binaries, run as the test's own process on a
loopback port, its data in a temporary directory (fsync off: the data is thrown away).

PostgreSQL refuses to run as root; when the tests run as root, initdb and postgres run as the ``postgres``
user the package creates (the data directory is given to that user).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from ports import free_port

USER = "blockdns"  # the database superuser initdb creates; loopback connections are trusted
PASSWORD = "pw-never-shown"  # trust auth ignores it; tests check it never appears in output


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None when it can."""
    if binaries() is None:
        return "PostgreSQL is not installed (tests/system-deps.sh installs the Debian package)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run PostgreSQL as"
    return None


class PostgresServer:
    def __init__(self) -> None:
        bin_dir = binaries()
        assert bin_dir is not None
        self.bin = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="blockdns-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "--no-sync",
                   "-E", "UTF8", "--locale", "C.UTF-8"])  # fmt: skip

    def _run(self, args: list[str]) -> None:
        result = subprocess.run(args, user=self._user, capture_output=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.decode(errors='replace')}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> PostgresServer:
        args = [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", str(self.base), "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=50"]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=open(self.base / "log", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.base / "log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start: {log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown: open connections are closed, as when a database server goes away."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def processes(self) -> list[int]:
        """The postmaster and every process it started (the backends serving connections among them)."""
        assert self.process is not None
        found, queue = [], [self.process.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                queue.extend(int(child) for child in task.read_text().split())
        return found

    def freeze(self) -> None:
        """Stop every PostgreSQL process (SIGSTOP): connections stay open and nothing answers, as when the
        database host hangs or the network drops packets."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
