"""``blockdns lists update`` and ``blockdns lists export``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the feed commands to the ``lists`` sub-app."""
