"""vmdk: streamOptimized VMDK, compressed grains, what vSphere and OVAs import."""

from __future__ import annotations

from pathlib import Path

from crust.formats.kind import ConvertJob, Format
from crust.runner import run


def write_vmdk(raw: Path, out: Path) -> None:
    run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized,adapter_type=lsilogic", str(raw), str(out)])


def convert(job: ConvertJob) -> None:
    write_vmdk(job.raw, job.out)


FORMAT = Format(name="vmdk", help="vmdk (streamOptimized)", order=20, convert=convert)
