"""The ``blockdns`` typer app: registers each sub-app; commands live in their own modules."""

from __future__ import annotations

import sys

import typer

from blockdns import __version__
from blockdns.cli import check_cmd, config_cmd, lists_cmd, log_cmd, serve_cmd
from blockdns.cli.common import printable

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


# Every bad argument, option or command name raises click's UsageError. typer exports only its subclass
# BadParameter (newer typer vendors click privately), so the base class is taken from there.
UsageError: type[Exception] = typer.BadParameter.__base__  # type: ignore[assignment]


def main() -> None:
    """Run the CLI; a usage error is one line on stderr and exit 2, like every other error of blockdns."""
    try:
        code = app(standalone_mode=False)
    except UsageError as err:
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())  # a bare group (``blockdns lists``) shows its help
            sys.exit(0)
        where = ctx.command_path if ctx is not None else "blockdns"
        message = " ".join(err.format_message().split())  # type: ignore[attr-defined]
        print(f"{where}: {printable(message)} (see {where} --help)", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
