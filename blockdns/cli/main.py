"""The ``blockdns`` typer app: registers each sub-app; commands live in their own modules."""

from __future__ import annotations

import typer

from blockdns import __version__
from blockdns.cli import check_cmd, config_cmd, lists_cmd, log_cmd, serve_cmd

app = typer.Typer(
    name="blockdns",
    help="A recursive, caching DNS resolver that blocks AI services by policy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve_cmd.serve)
app.command("check")(check_cmd.check)
app.add_typer(config_cmd.app, name="config")
app.add_typer(lists_cmd.app, name="lists")
log_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"blockdns {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """blockdns: block AI services by vendor, category or jurisdiction, per client group."""


def main() -> None:
    app()
