"""What every target's settings share: the name pattern of what an upload makes."""

from __future__ import annotations

import string
from typing import Any

from crust.build.manifest import Manifest
from crust.define.settings import Invalid, parse_str

NAME_FIELDS = ("appliance", "version", "digest", "digest12", "build_id")


def parse_name_pattern(value: Any) -> str:
    """A str.format pattern using only NAME_FIELDS."""
    pattern = parse_str(value)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as exc:
        raise Invalid(f"{pattern!r} is not a valid pattern: {exc}") from None
    for name in fields:
        if name not in NAME_FIELDS:
            raise Invalid(f"unknown field {{{name}}} in {pattern!r}: use " + ", ".join(f"{{{f}}}" for f in NAME_FIELDS))
    return pattern


def format_name(pattern: str, manifest: Manifest, digest: str) -> str:
    """The pattern filled in for this build and image digest."""
    return pattern.format(appliance=manifest.appliance, version=manifest.version, digest=digest, digest12=digest[:12], build_id=manifest.build_id)
