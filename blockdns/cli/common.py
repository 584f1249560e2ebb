"""What every command shares: the --config option, loading settings, and turning user errors into one line."""

from __future__ import annotations

import functools
import re
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


# Characters a terminal acts on instead of showing: C0 and C1 controls (ESC, CR, LF, ...), DEL, and the
# invisible direction marks and overrides that can make a line read differently from what it holds.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on escaped (``\\x1b``, ``\\u202e``): names in the
    query log, reasons and feed errors come from clients and remote servers, and reach the terminal."""
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub(lambda match: _escape(match.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    print(f"blockdns: {printable(message)}", file=sys.stderr)
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
