"""``blockdns lists ...``: the catalogue commands (vendors, lint) and the feed commands (update, export)."""

from __future__ import annotations

import typer

from blockdns.cli import lists_catalog, lists_feeds

app = typer.Typer(help="Inspect, lint, update and export the lists.", no_args_is_help=True)
lists_catalog.register(app)
lists_feeds.register(app)
