"""``blockdns lists update`` and ``blockdns lists export``.

The update path (httpx) is imported inside the command, so every other command starts without it.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from blockdns.cli.common import ConfigOption, load_settings, printable, user_errors
from blockdns.errors import ConfigError


class ExportFormat(StrEnum):
    domains = "domains"
    hosts = "hosts"
    adblock = "adblock"
    dnsmasq = "dnsmasq"
    unbound = "unbound"
    rpz = "rpz"


@user_errors
def update(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Fetch, parse and report; write nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Accept a feed that shrank by more than half (never HTML or empty)."),
    ] = False,
) -> None:
    """Fetch every enabled feed, normalise it, write the results atomically, print a per-feed diff."""
    from blockdns.feeds.report import render_report
    from blockdns.feeds.update import run_update
    from blockdns.runtime import data_dir, load_feed_definitions, load_settings_catalog

    settings = load_settings(config)
    catalog = load_settings_catalog(settings)
    definitions = load_feed_definitions(settings, catalog)
    report = run_update(definitions, data_dir(settings), catalog=catalog, force=force, dry_run=dry_run)
    # One line per report line, each made printable: feed errors quote what remote servers sent.
    print("\n".join(printable(line) for line in render_report(report).split("\n")))
    raise typer.Exit(report.exit_code)


@user_errors
def export(
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="The target's syntax.")],
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select", "-s", help="A policy selector; repeat for a union (default: the config's policy)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to FILE atomically (default: standard output)."),
    ] = None,
    zone: Annotated[
        str | None, typer.Option("--zone", help="RPZ zone name (default: rpz.blockdns.).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write the selected domains for another DNS server (Pi-hole, AdGuard Home, Unbound, BIND, dnsmasq)."""
    from blockdns.feeds.export import export_text
    from blockdns.feeds.model import write_atomic

    settings = load_settings(config)
    text = export_text(settings, format.value, select or (), zone)
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        write_atomic(output, text)
    except OSError as err:
        raise ConfigError(f"cannot write: {err.strerror or err}", file=str(output)) from None


def register(app: typer.Typer) -> None:
    """Add the feed commands to the ``lists`` sub-app."""
    app.command("update")(update)
    app.command("export")(export)
