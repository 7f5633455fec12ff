"""qcow2: qemu's format (zstd-compressed with image.compress); what the smoke test boots."""

from __future__ import annotations

from crust.formats.kind import ConvertJob, Format
from crust.runner import run


def convert(job: ConvertJob) -> None:
    argv = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2"]
    if job.compress:
        argv += ["-c", "-o", "compression_type=zstd"]
    run([*argv, str(job.raw), str(job.out)])


FORMAT = Format(name="qcow2", help="qcow2 (zstd with image.compress)", order=10, convert=convert)
