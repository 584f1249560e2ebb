"""``blockdns lists vendors`` and ``blockdns lists lint``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the catalogue commands to the ``lists`` sub-app."""
