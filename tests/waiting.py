"""Waiting with a deadline: how tests wait for what another thread or process does."""

from __future__ import annotations

import time
from collections.abc import Callable

DEADLINE = (
    30.0  # seconds: generous, since a loaded 2-core CI machine can be slow; a true condition ends it early
)


def wait_until(condition: Callable[[], object], seconds: float = DEADLINE, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it is true (True) or ``seconds`` have passed (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
