"""vhd: fixed VHD whose virtual size is exactly the raw size, a whole number of MiB (Azure's rule)."""

from __future__ import annotations

from crust.errors import BuildError
from crust.formats.kind import MIB, ConvertJob, Format
from crust.runner import run


def convert(job: ConvertJob) -> None:
    size = job.raw.stat().st_size
    if size % MIB:
        raise BuildError(f"{job.raw} is {size} bytes, not a whole number of MiB")
    # force_size keeps the size exact instead of rounding it to a CHS geometry.
    run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", str(job.raw), str(job.out)])


FORMAT = Format(name="vhd", help="vhd (fixed, 1 MiB aligned)", order=30, convert=convert)
