"""vmdk: streamOptimized VMDK, compressed grains, what vSphere and OVAs import.

qemu-img gives each VMDK a random content id (the descriptor's CID); Crust writes one derived
from the step's id in its place, so the same raw image gives the same bytes.
"""

from __future__ import annotations

import re
from pathlib import Path

from crust.digest import digest_text
from crust.errors import BuildError
from crust.formats.kind import ConvertJob, Format
from crust.runner import run

CID_RE = re.compile(rb"\nCID=[0-9a-fA-F]{1,8}\n")
DESCRIPTOR = b"# Disk DescriptorFile"


def write_vmdk(raw: Path, out: Path, seed: str) -> None:
    run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized,adapter_type=lsilogic", str(raw), str(out)])
    pin_cid(out, digest_text(f"vmdk-cid/{seed}")[:8])


def pin_cid(vmdk: Path, cid: str) -> None:
    """Rewrite the embedded descriptor with this CID (qemu-img writes its random one unpadded,
    1 to 8 digits): the text may grow by up to 7 bytes into the NUL padding of its sector."""
    with open(vmdk, "r+b") as fh:
        head = fh.read(64 * 1024)  # the descriptor sits in the first sectors
        start = head.find(DESCRIPTOR)
        end = head.find(b"\0", start) if start >= 0 else -1
        room = (end + 511) // 512 * 512 if end >= 0 else -1  # the descriptor's sectors end there
        text = head[start:end]
        new = CID_RE.sub(b"\nCID=" + cid.encode("ascii") + b"\n", text, count=1)
        if start < 0 or end < 0 or (new == text and CID_RE.search(text) is None) or start + len(new) > room or head[end:room].strip(b"\0"):
            raise BuildError(f"{vmdk}: no VMDK descriptor with a CID where qemu-img writes it")
        fh.seek(start)
        fh.write(new + bytes(max(len(text) - len(new), 0)))


def convert(job: ConvertJob) -> None:
    write_vmdk(job.raw, job.out, job.seed)


FORMAT = Format(name="vmdk", help="vmdk (streamOptimized)", order=20, convert=convert)
