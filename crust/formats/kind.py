"""What a disk format is: one module of crust/formats/ defining ``FORMAT = Format(...)``.

A format is written by the convert step from the raw image (the image step's own output);
one may pack another format's file when that one is built too (an OVA packs the VMDK).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class Machine:
    """What a format that describes a virtual machine (OVF) says besides its disk."""

    name: str
    version: str
    description: str
    memory_mib: int = 1024
    vcpus: int = 2


@dataclass(frozen=True)
class ConvertJob:
    raw: Path  # the raw image (read only)
    out: Path  # the file to write; its directory is the step's private temporary directory
    compress: bool  # image.compress
    machine: Machine
    uses: Path | None = None  # the file of the format this one packs, when that one is built too
    seed: str = ""  # the step's id: what ids a format must carry derive from it (never chance)
    epoch: int = 0  # SOURCE_DATE_EPOCH: the time a format records (never the clock)


@dataclass(frozen=True)
class Format:
    name: str
    help: str
    order: int  # formats are listed and built in this order (a format after the one it uses)
    convert: Callable[[ConvertJob], None] | None  # None: the image step's own output (raw)
    uses: str | None = None  # the format whose file this one packs, when built in the same run
    inputs: Callable[[Machine], Mapping[str, str]] = lambda machine: {}  # more inputs of its step id: what else shapes its bytes
