"""Disk formats, a registry: each module of this package defines one (``FORMAT = Format(...)``).

A new format is one module: `image.formats`, `build --format`, the convert step, the manifest
and publishing pick it up from here. Every format but raw is written by the convert step from
the raw image; see kind.py for what a format declares.
"""

from __future__ import annotations

from collections.abc import Mapping

from crust.formats.kind import ConvertJob, Format, Machine
from crust.registry import discover

REGISTRY: Mapping[str, Format] = discover(__name__, __path__, "FORMAT", Format, lambda v: (v.order, v.name), lambda v: v.name)
FORMATS: tuple[str, ...] = tuple(REGISTRY)  # in build order: a format after the one it packs


def describe() -> str:
    return ", ".join(f.help for f in REGISTRY.values())


__all__ = ["FORMATS", "REGISTRY", "ConvertJob", "Format", "Machine", "describe"]
