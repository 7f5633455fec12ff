"""vhd: fixed VHD whose virtual size is exactly the raw size, a whole number of MiB (Azure's rule).

qemu-img stamps the footer with the clock and a random UUID; Crust writes the build's epoch and
a UUID derived from the step's id there, and the footer's checksum again.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from crust.errors import BuildError
from crust.formats.kind import MIB, ConvertJob, Format
from crust.runner import run

VHD_EPOCH = 946684800  # the footer counts seconds from 2000-01-01 UTC
NAMESPACE = uuid.UUID("0b7a4f1e-9d3c-4e55-8a61-2c9f0e4d7b30")


def pin_footer(vhd: Path, epoch: int, seed: str) -> None:
    """Set the footer's time stamp and unique id, and its checksum (one's complement of the
    byte sum with the checksum field zero)."""
    with open(vhd, "r+b") as fh:
        fh.seek(-512, 2)
        where = fh.tell()
        footer = bytearray(fh.read(512))
        if footer[:8] != b"conectix":
            raise BuildError(f"{vhd}: no VHD footer where qemu-img writes it")
        footer[24:28] = max(epoch - VHD_EPOCH, 0).to_bytes(4, "big")
        footer[68:84] = uuid.uuid5(NAMESPACE, seed).bytes
        footer[64:68] = bytes(4)
        footer[64:68] = (~sum(footer) & 0xFFFFFFFF).to_bytes(4, "big")
        fh.seek(where)
        fh.write(footer)


def convert(job: ConvertJob) -> None:
    size = job.raw.stat().st_size
    if size % MIB:
        raise BuildError(f"{job.raw} is {size} bytes, not a whole number of MiB")
    # force_size keeps the size exact instead of rounding it to a CHS geometry.
    run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", str(job.raw), str(job.out)])
    pin_footer(job.out, job.epoch, job.seed)


FORMAT = Format(name="vhd", help="vhd (fixed, 1 MiB aligned)", order=30, convert=convert)
