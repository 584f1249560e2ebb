"""``blockdns lists ...``: vendors, lint, update, export."""

from __future__ import annotations

import typer

app = typer.Typer(help="Inspect, lint, update and export the lists.", no_args_is_help=True)
