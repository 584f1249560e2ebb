"""Reading the TOML files people write (config, vendor files, feed definitions, guard list), and turning
pydantic's validation errors into the one-line messages the CLI prints."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from blockdns.errors import ConfigError

_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def read_text(path: Path, error: type[ConfigError] = ConfigError, kind: str = "file") -> str:
    """The text of a file a person wrote; a missing, unreadable or non-UTF-8 file is one ``error`` naming it
    (``kind`` says what it was meant to be: "no such hosts file")."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"no such {kind}", file=str(path)) from None
    except OSError as err:
        raise error(f"cannot read: {err.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise error("not UTF-8 text", file=str(path)) from None


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """Parse a TOML file; every failure is ``error`` naming the file (and, for syntax, the line)."""
    text = read_text(path, error)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        found = _TOML_LINE.search(str(err))
        key = f"line {found.group(1)}" if found else None
        raise error(f"not valid TOML: {err}", file=str(path), key=key) from None


def schema_problems(err: ValidationError) -> list[tuple[str, str]]:
    """Every problem pydantic found, as ``(dotted key, one-line message)``, in document order."""
    return [(".".join(str(part) for part in e["loc"]) or "(top level)", _explain(e)) for e in err.errors()]


def _explain(error: Any) -> str:
    kind, field = error["type"], str(error["loc"][-1]) if error["loc"] else ""
    if kind == "extra_forbidden":
        return "unknown key"
    if field == "evidence" and kind in ("missing", "string_too_short"):
        return "evidence is missing: cite a vendor document URL or an 'owner/repo path' list reference"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in error:
        message = f"{message} (got {error['input']!r})"
    return message
