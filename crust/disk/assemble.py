"""Assemble a GPT disk image from a sealed tree, in regular files: no loop devices, no mounts.

ESP: a FAT32 image made with mkfs.vfat and filled with mtools, holding a unified kernel image
(UKI) at \\EFI\\BOOT\\BOOTX64.EFI, so UEFI firmware boots it with no loader and no NVRAM entry.
Root: ext4 written straight into the disk file at its offset by ``mkfs.ext4 -d``.

Same tree, same epoch, same bytes: the GPT and file system ids derive from the step id, mke2fs
runs at the epoch (E2FSPROGS_FAKE_TIME) with a fixed hash seed and sorted directories, and the
two inode times it copies from the host (change and access times, which nobody can set on the
host) are pinned with debugfs; mkfs.vfat --invariant and mtools (SOURCE_DATE_EPOCH) make the
ESP's times and ids constant.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from crust.errors import UserError
from crust.runner import run
from crust.tree.files import CHROOT_ENV
from crust.tree.paths import inside
from crust.tree.sandbox import in_sandbox

MIB = 1024 * 1024
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
NAMESPACE = uuid.UUID("6f1b2c4e-7d0a-4b8e-9c57-3a2d1e0f9b11")


@dataclass(frozen=True)
class Layout:
    esp_size_mib: int
    root_size_mib: int
    root_uuid: str
    cmdline: str
    uki: str  # "ukify" or "objcopy"

    @property
    def esp_offset(self) -> int:
        return 1 * MIB

    @property
    def root_offset(self) -> int:
        return (1 + self.esp_size_mib) * MIB

    @property
    def disk_size(self) -> int:
        return (1 + self.esp_size_mib + self.root_size_mib + 1) * MIB


def derived_uuid(*parts: str) -> str:
    """Stable UUIDs from step ids: the same inputs give the same disk."""
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def kernel_files(tree: Path) -> tuple[Path, Path]:
    boot = inside(tree, "/boot", follow=True)
    kernels = sorted(inside(tree, f"/boot/{k.name}", follow=True) for k in boot.glob("vmlinuz-*"))
    if not kernels:
        raise UserError("no kernel in the tree (/boot/vmlinuz-*)", hint="add the kernel package to the distribution's base_packages")
    kernel = kernels[-1]
    initrd = inside(tree, "/boot/" + kernel.name.replace("vmlinuz-", "initrd.img-"), follow=True)
    if not initrd.exists():
        raise UserError(f"no initrd for {kernel.name} in the tree", hint="install initramfs-tools in the base")
    return kernel, initrd


def tree_size_mib(tree: Path) -> int:
    """Apparent size of the tree plus inodes, counting hard links once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    count = 0
    for dirpath, dirs, files in os.walk(tree):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            count += 1
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += (st.st_size + 4095) // 4096 * 4096
    return (total + count * 256) // MIB + 1


def build_uki(tree: Path, layout: Layout, out: Path, epoch: int) -> None:
    kernel, initrd = kernel_files(tree)
    if layout.uki == "ukify":
        # ukify from the tree itself, run chrooted; the output directory is bind-mounted
        # at /mnt in the sandbox's private mount namespace (invisible outside it).
        run(
            in_sandbox(
                tree,
                [
                    "ukify",
                    "build",
                    f"--linux=/boot/{kernel.name}",
                    f"--initrd=/boot/{initrd.name}",
                    f"--cmdline={layout.cmdline}",
                    "--output=/mnt/uki.efi",
                ],
                binds=[(out.parent, "/mnt")],
                read_only=True,  # the store's sealed tree: ukify's temporary files must not touch it
            ),
            env=CHROOT_ENV,
        )
        (out.parent / "uki.efi").rename(out)
        return
    stub = inside(tree, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub", follow=True)
    if not stub.exists():
        raise UserError("the tree has no systemd-boot EFI stub", hint="add systemd-boot-efi to base_packages")
    osrel = inside(tree, "/usr/lib/os-release", follow=True)
    cmdline = out.parent / "cmdline.txt"
    cmdline.write_text(layout.cmdline + "\0", encoding="utf-8")
    run(
        [
            "objcopy",
            "--add-section",
            f".osrel={osrel}",
            "--change-section-vma",
            ".osrel=0x20000",
            "--add-section",
            f".cmdline={cmdline}",
            "--change-section-vma",
            ".cmdline=0x30000",
            "--add-section",
            f".linux={kernel}",
            "--change-section-vma",
            ".linux=0x2000000",
            "--add-section",
            f".initrd={initrd}",
            "--change-section-vma",
            ".initrd=0x3000000",
            str(stub),
            str(out),
        ]
    )
    pin_pe_timestamp(out, epoch)  # objcopy stamps a PE file with the clock, SOURCE_DATE_EPOCH or not


def pin_pe_timestamp(path: Path, epoch: int) -> None:
    """Set a PE file's COFF TimeDateStamp to the epoch and its optional header's CheckSum again
    (the one's-complement sum of its 16-bit words, the CheckSum field as zero, plus its length)."""
    data = bytearray(path.read_bytes())
    pe = int.from_bytes(data[0x3C:0x40], "little")
    if data[:2] != b"MZ" or data[pe : pe + 4] != b"PE\0\0":
        raise UserError(f"{path}: objcopy wrote no PE file", hint="check binutils and the tree's systemd-boot EFI stub")
    data[pe + 8 : pe + 12] = (epoch & 0xFFFFFFFF).to_bytes(4, "little")
    checksum = pe + 24 + 64  # the CheckSum field of the optional header (PE32 and PE32+ alike)
    data[checksum : checksum + 4] = bytes(4)
    words = memoryview(data + (b"\0" if len(data) % 2 else b"")).cast("H")
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    data[checksum : checksum + 4] = ((total + len(data)) & 0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def make_esp(uki: Path, layout: Layout, out: Path, volume_id: str, epoch: int) -> None:
    esp_kib = layout.esp_size_mib * 1024
    needed = uki.stat().st_size // 1024 + 2048
    if needed > esp_kib:
        raise UserError(
            f"the UKI ({uki.stat().st_size // MIB} MiB) does not fit the {layout.esp_size_mib} MiB ESP",
            hint=f"raise image.esp_size (or part /boot/efi --size) to at least {needed // 1024 + 8}",
        )
    env = {"SOURCE_DATE_EPOCH": str(epoch)}
    run(["mkfs.vfat", "--invariant", "-F", "32", "-n", "ESP", "-i", volume_id, "-C", str(out), str(esp_kib)])
    run(["mmd", "-i", str(out), "::/EFI", "::/EFI/BOOT"], env=env)
    os.utime(uki, (epoch, epoch))
    run(["mcopy", "-m", "-i", str(out), str(uki), "::/EFI/BOOT/BOOTX64.EFI"], env=env)


def partition(disk: Path, layout: Layout, disk_guid: str, esp_guid: str, root_guid: str) -> None:
    with open(disk, "wb") as fh:
        fh.truncate(layout.disk_size)
    sectors = MIB // 512
    script = (
        "label: gpt\n"
        f"label-id: {disk_guid}\n"
        "unit: sectors\n"
        f'start={sectors}, size={layout.esp_size_mib * sectors}, type={ESP_TYPE}, uuid={esp_guid}, name="esp"\n'
        f'start={layout.root_offset // 512}, size={layout.root_size_mib * sectors}, type={ROOT_TYPE_X86_64}, uuid={root_guid}, name="root"\n'
    )
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)], input_text=script)


def make_root_fs(tree: Path, disk: Path, layout: Layout, epoch: int) -> None:
    need = tree_size_mib(tree)
    if need * 11 // 10 + 32 > layout.root_size_mib:
        raise UserError(
            f"the tree needs about {need} MiB but the root partition is {layout.root_size_mib} MiB",
            hint=f"raise image.root_size (or part / --size) to at least {need * 11 // 10 + 64}",
        )
    run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "root",
            "-U",
            layout.root_uuid,
            "-E",
            f"offset={layout.root_offset},root_owner=0:0,hash_seed={layout.root_uuid}",
            "-d",
            str(tree),
            str(disk),
            f"{layout.root_size_mib}M",
        ],
        env={"E2FSPROGS_FAKE_TIME": str(epoch)},
    )
    pin_inode_times(f"{disk}?offset={layout.root_offset}", epoch, disk.parent)


def used_inodes(source: str) -> list[int]:
    """The root inode and every inode in use past the reserved ones, from dumpe2fs's per-group
    free ranges."""
    out = run(["dumpe2fs", source], capture=True).stdout
    per_group = next(int(line.split(":")[1]) for line in out.splitlines() if line.startswith("Inodes per group:"))
    first = next((int(line.split(":")[1]) for line in out.splitlines() if line.startswith("First inode:")), 11)
    used: list[int] = [2]
    group = -1
    for line in out.splitlines():
        if re.match(r"Group \d+:", line):
            group = int(line.split()[1].rstrip(":"))
        elif line.strip().startswith("Free inodes:") and group >= 0:
            free: set[int] = set()
            for part in line.split(":", 1)[1].split(","):
                lo, _, hi = part.strip().partition("-")
                if lo.isdigit():
                    free.update(range(int(lo), int(hi or lo) + 1))
            start = group * per_group + 1
            used += [i for i in range(max(start, first), start + per_group) if i not in free]
    return used


def pin_inode_times(source: str, epoch: int, workdir: Path) -> None:
    """Set the change and access time of every inode in use to the epoch (mke2fs -d copies
    them from the host's files: the moment the tree was written, the last time it was read)."""
    script = workdir / "pin-times.debugfs"
    script.write_text("".join(f"sif <{i}> ctime @{epoch}\nsif <{i}> atime @{epoch}\n" for i in used_inodes(source)), encoding="utf-8")
    try:
        run(["debugfs", "-w", "-f", str(script), source], env={"E2FSPROGS_FAKE_TIME": str(epoch)}, capture=True)
    finally:
        script.unlink()


def place(src: Path, disk: Path, offset: int) -> None:
    run(["dd", f"if={src}", f"of={disk}", "bs=1M", f"seek={offset // MIB}", "conv=notrunc,sparse", "status=none"])


def assemble(tree: Path, layout: Layout, workdir: Path, disk: Path, image_id: str, epoch: int) -> None:
    """Write disk (raw, sparse): GPT + ESP with the UKI + ext4 root from tree. image_id seeds the
    GPT and ESP ids: the tree's (canonical) id, not the image step's, so that an image step that
    reruns with the same tree (new code that changes nothing) writes the same bytes."""
    uki = workdir / "BOOTX64.EFI"
    build_uki(tree, layout, uki, epoch)
    esp = workdir / "esp.img"
    make_esp(uki, layout, esp, volume_id=image_id[:8], epoch=epoch)
    partition(disk, layout, derived_uuid(image_id, "disk"), derived_uuid(image_id, "esp"), derived_uuid(image_id, "root-part"))
    make_root_fs(tree, disk, layout, epoch)
    place(esp, disk, layout.esp_offset)
    esp.unlink()
