"""How the server refreshes feeds: by running ``lists update`` in a subprocess, then reloading.

Running the update in its own process keeps httpx, parsing and their memory out of the resolver, and a crash
there cannot take the resolver down; the update commits feed by feed (:mod:`blockdns.feeds.store`), so a
reload at any moment sees whole feeds. The command prints its report to stdout, never a progress bar when
stdout/stderr are not terminals, and exits 0 (all good), 1 (some feed failed or was refused; its last good
data is kept) or 2 (bad config).
"""

from __future__ import annotations

import sys
from pathlib import Path


def update_command(config: Path | None = None, *, force: bool = False) -> list[str]:
    """The argv of ``python -m blockdns lists update [--config FILE]`` for :func:`subprocess.run`."""
    argv = [sys.executable, "-m", "blockdns", "lists", "update"]
    if config is not None:
        argv += ["--config", str(config)]
    if force:
        argv.append("--force")
    return argv
