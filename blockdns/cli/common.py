"""What every command shares: the --config option, loading settings, and turning user errors into one line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from blockdns import config
from blockdns.errors import BlockdnsError, UserError

P = ParamSpec("P")
R = TypeVar("R")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: ./blockdns.toml if present, else built-ins)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    print(f"blockdns: {message}", file=sys.stderr)
    return typer.Exit(code)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`UserError` (exit 2) or any other :class:`BlockdnsError` (exit 1) into one line."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UserError as err:
            raise fail(str(err), err.exit_code) from None
        except BlockdnsError as err:
            raise fail(str(err), 1) from None

    return wrapper


def load_settings(path: Path | None) -> config.Settings:
    return config.load(path)
