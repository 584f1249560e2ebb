"""``blockdns lists vendors``, ``lint``, ``discover`` and ``accept``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from blockdns.catalog import Catalog, Vendor, default_guard_file
from blockdns.catalog_lint import Finding, lint
from blockdns.cli.common import ConfigOption, JsonOption, load_settings, printable, user_errors
from blockdns.errors import CatalogError
from blockdns.names import normalise
from blockdns.runtime import catalog_dir, guard_file, load_settings_catalog


def register(app: typer.Typer) -> None:
    """Add the catalogue commands to the ``lists`` sub-app."""
    app.command("vendors")(vendors)
    app.command("lint")(lint_command)
    app.command("discover")(discover_command)
    app.command("accept")(accept_command)


@user_errors
def vendors(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """The catalogue as a table: vendor id, name, jurisdiction, categories, domain count."""
    catalog = load_settings_catalog(load_settings(config))
    ordered = sorted(catalog.vendors.values(), key=lambda vendor: vendor.id)
    if json_output:
        print(json.dumps([_vendor_json(vendor) for vendor in ordered], indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a pipe or a log: one row per vendor rather than wrapping at 80 columns
    console.print(_vendor_table(catalog, ordered))


def _vendor_json(vendor: Vendor) -> dict[str, object]:
    return {
        "id": vendor.id,
        "name": vendor.name,
        "jurisdiction": vendor.jurisdiction,
        "categories": list(vendor.categories),
        "homepage": vendor.homepage,
        "reviewed": vendor.reviewed.isoformat(),
        "domain_count": len(vendor.domains),
        "domains": [entry.name for entry in vendor.domains],
        "shared": [entry.name for entry in vendor.shared],
    }


def _vendor_table(catalog: Catalog, ordered: list[Vendor]) -> Table:
    domain_total = sum(len(vendor.domains) for vendor in ordered)
    table = Table(
        title=f"{len(ordered)} vendors, {domain_total} domains",
        caption=f"catalogue: {catalog.directory}",
    )
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("jurisdiction", justify="center")
    table.add_column("categories")
    table.add_column("domains", justify="right")
    for vendor in ordered:
        categories = ", ".join(vendor.categories)
        table.add_row(vendor.id, vendor.name, vendor.jurisdiction, categories, str(len(vendor.domains)))
    return table


@user_errors
def lint_command(config: ConfigOption = None) -> None:
    """Check the curated catalogue: syntax, duplicates, public suffixes, shared infrastructure, evidence.

    Prints one line per problem (file:key: message) and a summary; exits 1 when there is any.
    """
    settings = load_settings(config)
    directory = catalog_dir(settings)
    guard = guard_file(settings)
    findings = lint(directory, guard)
    for finding in findings:
        print(finding.render(_display(finding.file)))
    if findings:
        print(_problem_summary(findings))
        raise typer.Exit(1)
    files = len(list(directory.glob("*.toml")))
    guard_note = _display(guard or default_guard_file(directory))
    print(f"catalogue clean: {files} vendor files in {_display(directory)}, guard list {guard_note}")


def _problem_summary(findings: list[Finding]) -> str:
    errors = sum(1 for finding in findings if finding.severity == "error")
    warnings = len(findings) - errors
    files = len({finding.file for finding in findings})
    problems = _count(len(findings), "problem")
    return f"{problems} ({_count(errors, 'error')}, {_count(warnings, 'warning')}) in {_count(files, 'file')}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _display(path: Path) -> str:
    """A path relative to the working directory when it lies below it, as editors and CI logs show them."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:
        return str(path)


@user_errors
def discover_command(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Names the enabled feeds list and the catalogue lacks, per vendor, each with its accept command.

    Reads the feeds' last fetched data (run ``blockdns lists update`` first); fetches nothing.
    """
    from blockdns.catalog_discover import discover, render
    from blockdns.feeds.store import read_feed_sources
    from blockdns.runtime import data_dir, load_feed_definitions

    settings = load_settings(config)
    catalog = load_settings_catalog(settings)
    definitions = [d for d in load_feed_definitions(settings, catalog) if d.enabled and d.role == "block"]
    urls = {definition.name: definition.url for definition in definitions}
    candidates = discover(catalog, read_feed_sources(definitions, data_dir(settings)), urls)
    if json_output:
        rows = [{**asdict(c), "accept": c.accept_command()} for c in candidates]
        print(json.dumps(rows, indent=2))
        return
    for line in render(candidates):
        print(printable(line))
    count = len(candidates)
    print(f"{count} name{'' if count == 1 else 's'} the feeds list and the catalogue lacks")


@user_errors
def accept_command(
    vendor: Annotated[str, typer.Argument(help="The vendor id (the file's stem).")],
    name: Annotated[str, typer.Argument(help="The name to block, with the names below it unless --exact.")],
    evidence: Annotated[str, typer.Option("--evidence", help="A URL or an 'owner/repo path' reference.")],
    exact: Annotated[bool, typer.Option("--exact", help="Block this name only.")] = False,
    config: ConfigOption = None,
) -> None:
    """Add a name with its evidence to a vendor file, then lint the catalogue."""
    from blockdns.catalog_discover import accept

    settings = load_settings(config)
    directory = catalog_dir(settings)
    path = directory / f"{vendor}.toml"
    if not path.is_file():
        raise CatalogError(f"no vendor {vendor!r} in the catalogue", file=str(path))
    accept(path, normalise(name), evidence, exact=exact)
    findings = [finding for finding in lint(directory, guard_file(settings)) if finding.file == path]
    for finding in findings:
        print(finding.render(_display(finding.file)))
    print(f"added {normalise(name)} to {_display(path)}; set reviewed to today once you have checked it")
    if findings:
        raise typer.Exit(1)
