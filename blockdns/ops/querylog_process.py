"""The server's end of the SQLite query log's writer process (:mod:`blockdns.ops.querylog_store`): starting
it, one request at a time, stopping it, and telling a dead one apart from a refusal."""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import blockdns
from blockdns.ops.clientid import QueryLogError

if TYPE_CHECKING:
    from blockdns.config import QueryLogSettings
    from blockdns.ops.querylog_store import Report

# Seconds for a new process to open the database: an import on a slow disk, a lock, or the one-time upgrade
# of a schema-2 log (about 1.4 s per million rows here, so some 15 s at the default max_rows; a process killed
# mid-upgrade leaves the old schema, and the next start would be cut short the same way).
START_TIMEOUT = 120.0
# The blockdns package this server runs, first on the child's path: the child runs the same code.
PACKAGE_ROOT = str(Path(blockdns.__file__).resolve().parent.parent)


class WriterGone(Exception):
    """The writer process died (or stopped answering); what it was handling is lost."""


class WriterProcess:
    def __init__(self, settings: QueryLogSettings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process and wait until it has the database open; QueryLogError (one line) when it
        cannot open it or does not start."""
        ours, theirs = Pipe(duplex=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")])),
        }
        try:
            # -P: the server's working directory must not shadow the package on the path.
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-m", "blockdns.ops.querylog_store", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as err:
            ours.close()
            raise QueryLogError(f"{self.path}: cannot start the query log writer: {err.strerror}") from None
        finally:
            theirs.close()
        self._conn = ours
        try:
            ours.send_bytes(pickle.dumps((self.settings, str(self.path))))
            if not ours.poll(START_TIMEOUT):
                raise WriterGone(f"did not answer within {START_TIMEOUT:.0f} s")
            kind, message = pickle.loads(ours.recv_bytes())
        except (WriterGone, EOFError, OSError) as err:
            self.kill()
            raise QueryLogError(
                f"{self.path}: the query log writer did not start: {err or 'it exited'}"
            ) from None
        if kind != "ready":
            self.kill()
            raise QueryLogError(str(message))

    def request(self, message: tuple[object, ...]) -> Report:
        """Send ``message`` and wait for the report; WriterGone when the process died meanwhile. A message
        that cannot be pickled raises what pickle raises, before anything is sent."""
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        conn = self._conn
        if conn is None:
            raise WriterGone("is not running")
        try:
            conn.send_bytes(data)
            report: Report = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            raise WriterGone(self._death()) from None
        return report

    def stop(self, timeout: float = 10.0) -> Report | None:
        """Ask the process to finish and wait for it; its last report (None when it was gone already)."""
        report = None
        if self.alive:
            with contextlib.suppress(WriterGone):
                report = self.request(("stop",))
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()
        return report

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _death(self) -> str:
        """How the process ended, for the log line; the process is reaped."""
        process = self._process
        self._close()
        if process is None:
            return "is not running"
        try:
            code = process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        return (
            f"(pid {process.pid}) exited with code {code}"
            if code >= 0
            else f"(pid {process.pid}) was killed by signal {-code}"
        )
