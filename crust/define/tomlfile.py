"""Reading TOML files with errors that name the file, the line and the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from crust.errors import UserError

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-.])+)\s*=""")  # bare, dotted or quoted keys


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; a syntax error becomes a UserError with its line."""
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise UserError("file not found", file=path, hint="create it or fix the name that points at it") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text: {exc.reason}", file=path, line=data[: exc.start].count(b"\n") + 1, hint="save the file as UTF-8") from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", file=path, hint="make it a readable file") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        if line is None and "end of document" in str(exc):  # an unterminated string, say: the last line
            line = len(text.splitlines()) or None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise UserError(f"invalid TOML: {msg}", file=path, line=line, hint="correct the TOML syntax") from None


def _split(dotted: str) -> list[tuple[str, int | None]]:
    parts: list[tuple[str, int | None]] = []
    for piece in dotted.split("."):
        m = re.fullmatch(r"(.+?)\[(\d+)\]", piece)
        parts.append((m.group(1), int(m.group(2))) if m else (piece, None))
    return parts


def find_line(text: str, dotted: str) -> int | None:
    """Best-effort line number of a dotted key (``test.checks[1].port``) in TOML text."""
    want = _split(dotted)
    want_names = [n for n, _ in want]
    table: list[str] = []
    counters: dict[str, int] = {}
    index_of: dict[str, int] = {}
    fallback = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = [p.strip().strip("\"'") for p in header.group(2).split(".")]
            name = ".".join(table)
            if header.group(1) == "[[":
                counters[name] = counters.get(name, -1) + 1
                index_of[name] = counters[name]
            if table == want_names and fallback is None:
                fallback = lineno
            if table == want_names and _indices_match(want, table, index_of):
                return lineno
            continue
        key = _KEY.match(line)
        if not key:
            continue
        full = table + [p.strip("\"'") for p in key.group(1).split(".")]
        if full == want_names[: len(full)] and len(full) == len(want_names):
            if _indices_match(want, table, index_of):
                return lineno
            fallback = fallback or lineno
        elif full == want_names[: len(full)] and fallback is None:
            fallback = lineno
    return fallback


def _indices_match(want: list[tuple[str, int | None]], table: list[str], index_of: dict[str, int]) -> bool:
    for depth, (_, idx) in enumerate(want[: len(table)]):
        if idx is None:
            continue
        if index_of.get(".".join(table[: depth + 1])) != idx:
            return False
    return True
