"""One settings table drives parsing, defaults, validation and the reference (as mkosi's SETTINGS).

A table is a tuple of Setting (dotted key, parser, default, help). apply_settings() checks a
parsed TOML table against it: unknown keys (with a suggestion), missing required keys and
values a parser refuses are one-line errors naming the file, the line and the fix. Appliance
files, distributions, check tables and cloud targets all use it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.define.tomlfile import find_line
from crust.errors import UserError

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
# A path inside an image: absolute, no empty, "." or ".." component, only these characters.
IMAGE_PATH_RE = re.compile(r"^(/[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*)+$")


class Invalid(ValueError):
    """A value failed its setting's parser: the message says what is expected."""


def parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {type(value).__name__}")
    return value


def parse_name(value: Any) -> str:
    text = parse_str(value)
    if not NAME_RE.fullmatch(text):  # fullmatch: `$` would let a trailing newline through
        raise Invalid(f"{text!r} is not a valid name: use 2-40 lower-case letters, digits and '-'")
    return text


def parse_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected an integer, got {type(value).__name__}")
    return value


def parse_port(value: Any) -> int:
    port = parse_int(value)
    if not 1 <= port <= 65535:
        raise Invalid(f"{port} is not a port number (1-65535)")
    return port


def parse_seconds(value: Any) -> float:
    try:
        seconds = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer too large for a float
        seconds = math.nan
    if not 0 < seconds < math.inf:  # nan and inf too
        raise Invalid("expected a positive number of seconds")
    return seconds


def parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {type(value).__name__}")
    return value


def parse_str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid("expected a list of strings")
    return tuple(value)


def parse_port_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise Invalid("expected a list of port numbers")
    return tuple(parse_port(v) for v in value)


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(MiB|M|GiB|G)?\s*$")


def parse_memory_mib(value: Any) -> int:
    """A guest's memory: a size (parse_size_mib) from 256 MiB to 16 GiB (a smoke test's domain
    runs on the build host: an appliance file does not get to ask for all of it)."""
    mib = parse_size_mib(value)
    if not 256 <= mib <= 16 * 1024:
        raise Invalid(f"{value!r} is out of range (256MiB to 16GiB)")
    return mib


def parse_size_mib(value: Any) -> int:
    """'2GiB', '512MiB', '2G' or an integer number of MiB."""
    if isinstance(value, int) and not isinstance(value, bool):
        mib = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
        mib = int(m.group(1)) * (1024 if (m.group(2) or "M").startswith("G") else 1)
    else:
        raise Invalid(f'{value!r} is not a size: write e.g. "2GiB" or "512MiB"')
    if not 64 <= mib <= 1024 * 1024:
        raise Invalid(f"{value!r} is out of range (64MiB to 1TiB)")
    return mib


def parse_table(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Invalid("expected a table")
    return MappingProxyType(dict(value))


def parse_regex(value: Any) -> str:
    text = parse_str(value)
    try:
        re.compile(text)
    except re.error as exc:
        raise Invalid(f"not a valid regular expression: {exc}") from None
    return text


def parse_headers(value: Any) -> Mapping[str, str]:
    table = parse_table(value)
    for name, pattern in table.items():
        parse_regex(pattern)
        if not re.fullmatch(r"[A-Za-z0-9-]+", name):
            raise Invalid(f"{name!r} is not an HTTP header name")
    return table


def parse_http_path(value: Any) -> str:
    path = parse_str(value)
    if not path.startswith("/"):
        raise Invalid(f"{path!r} must start with '/'")
    return path


REQUIRED = object()


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str


def suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]!r}?" if close else "remove it; known keys: " + ", ".join(known)


def flatten(data: Mapping[str, Any], known_tables: set[str], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted in known_tables:
            flat.update(flatten(value, known_tables, dotted + "."))
        else:
            flat[dotted] = value
    return flat


Locate = Callable[[str], tuple[Path, int | None]]


def apply_settings(
    table: tuple[Setting, ...], data: Mapping[str, Any], where: str, path: Path, text: str, locate: Locate | None = None, required: bool = True
) -> dict[str, Any]:
    """Check data against the table: every key known, every value parsed, the required ones there
    (unless required is false: a file another extends), defaults filled in. locate(key) gives the
    file and line that set a key (data merged from several files); by default this file's."""
    at: Locate = locate or (lambda key: (path, find_line(text, key)))
    tables = {s.key.rsplit(".", 1)[0] for s in table if "." in s.key}
    flat = flatten(data, tables)
    known = [s.key for s in table]
    values: dict[str, Any] = {}
    for key in flat:
        if key in tables:
            full = where + key
            file, line = at(full)
            raise UserError(f"{full} must be a table", file=file, line=line, hint=f"write [{full}] with its keys below it")
        if key not in known:
            full = where + key
            file, line = at(full)
            raise UserError(f"unknown key {full!r}", file=file, line=line, hint=suggest(key, known))
    for setting in table:
        full = where + setting.key
        if setting.key not in flat:
            if setting.default is REQUIRED and required:
                file, line = at(where.rstrip(".")) if where else (at("")[0], None)
                raise UserError(f"missing key {full!r}", file=file, line=line, hint=f"add it: {setting.help}")
            values[setting.key] = None if setting.default is REQUIRED else setting.default
            continue
        try:
            values[setting.key] = setting.parse(flat[setting.key])
        except Invalid as exc:
            file, line = at(full)
            raise UserError(f"{full}: {exc}", file=file, line=line, hint=setting.help) from None
    return values


def describe_default(setting: Setting) -> str:
    if setting.default is REQUIRED:
        return "required"
    default = dict(setting.default) if isinstance(setting.default, Mapping) else setting.default
    return f"default {default!r}"


def reference_lines(table: tuple[Setting, ...], width: int = 40) -> list[str]:
    """The reference of a table: one line per key, with its help and default."""
    return [f"  {s.key:{width}} {s.help} ({describe_default(s)})" for s in table]
