"""vmdk: streamOptimized VMDK, compressed grains, what vSphere and OVAs import.

qemu-img gives each VMDK a random content id (the descriptor's CID); Crust writes one derived
from the step's id in its place, so the same raw image gives the same bytes.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from crust.digest import digest_text
from crust.errors import BuildError
from crust.formats.kind import ConvertJob, Format
from crust.runner import run

CID_RE = re.compile(rb"\nCID=[0-9a-fA-F]{1,8}\n")
DESCRIPTOR = b"# Disk DescriptorFile"
HEADER = struct.Struct("<4sIIQQQQ")  # magic, version, flags, capacity, grain size, descriptor offset and size (sectors)
SECTOR = 512


def write_vmdk(raw: Path, out: Path, seed: str) -> None:
    run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized,adapter_type=lsilogic", str(raw), str(out)])
    pin_cid(out, digest_text(f"vmdk-cid/{seed}")[:8])


def pin_cid(vmdk: Path, cid: str) -> None:
    """Rewrite the embedded descriptor with this CID and zero the rest of its sectors.

    qemu-img writes a random CID, unpadded (1 to 8 digits), when it creates the file, and another
    when it writes the first data: that second write leaves the tail of the longer text behind the
    NUL that ends the shorter one. The header says where the descriptor's sectors are; all of them
    are rewritten, so nothing of either random CID is left."""
    with open(vmdk, "r+b") as fh:
        head = fh.read(HEADER.size)
        if len(head) < HEADER.size:
            raise BuildError(f"{vmdk}: too short for a VMDK header")
        magic, _version, _flags, _capacity, _grain, desc_offset, desc_size = HEADER.unpack(head)
        if magic != b"KDMV" or not 0 < desc_offset or not 0 < desc_size <= 128:
            raise BuildError(f"{vmdk}: no sparse VMDK header with an embedded descriptor")
        fh.seek(desc_offset * SECTOR)
        area = fh.read(desc_size * SECTOR)
        end = area.find(b"\0")
        text = area[: end if end >= 0 else len(area)]
        new = CID_RE.sub(b"\nCID=" + cid.encode("ascii") + b"\n", text, count=1)
        if not text.startswith(DESCRIPTOR) or CID_RE.search(text) is None or len(new) >= len(area):
            raise BuildError(f"{vmdk}: no VMDK descriptor with a CID where qemu-img writes it")
        fh.seek(desc_offset * SECTOR)
        fh.write(new + bytes(len(area) - len(new)))


def convert(job: ConvertJob) -> None:
    write_vmdk(job.raw, job.out, job.seed)


FORMAT = Format(name="vmdk", help="vmdk (streamOptimized)", order=20, convert=convert)
