"""Disk layout arithmetic and GPT writing, on small files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from crust.disk.assemble import ESP_TYPE, ROOT_TYPE_X86_64, Layout, derived_uuid, make_esp, make_root_fs, partition, tree_size_mib
from tests.conftest import need_tool


def test_layout_offsets() -> None:
    layout = Layout(64, 1024, "u", "c", "ukify")
    assert layout.esp_offset == 1 << 20
    assert layout.root_offset == 65 << 20
    assert layout.disk_size == (1 + 64 + 1024 + 1) << 20


def test_derived_uuid_is_stable() -> None:
    assert derived_uuid("a", "b") == derived_uuid("a", "b") != derived_uuid("a", "c")


def test_gpt(tmp_path: Path) -> None:
    need_tool("sfdisk")
    disk = tmp_path / "disk.raw"
    layout = Layout(40, 300, "u", "c", "ukify")
    partition(disk, layout, derived_uuid("d"), derived_uuid("e"), derived_uuid("r"))
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    esp, root = table["partitions"]
    assert (esp["start"], esp["size"], esp["type"]) == (2048, 40 * 2048, ESP_TYPE)
    assert (root["start"] * 512, root["size"] * 512, root["type"]) == (layout.root_offset, 300 << 20, ROOT_TYPE_X86_64)
    assert disk.stat().st_size == layout.disk_size
    assert disk.stat().st_blocks * 512 < 1 << 20  # sparse


def test_esp_holds_the_uki(tmp_path: Path) -> None:
    need_tool("mkfs.vfat")
    need_tool("mcopy")
    uki = tmp_path / "BOOTX64.EFI"
    uki.write_bytes(b"MZ" + b"\0" * 4096)
    esp = tmp_path / "esp.img"
    make_esp(uki, Layout(40, 300, "u", "c", "ukify"), esp, "abcd1234", 1762595483)
    out = subprocess.run(["mdir", "-i", str(esp), "-b", "::/EFI/BOOT"], capture_output=True, text=True, check=True).stdout
    assert "BOOTX64.EFI" in out
    copy = tmp_path / "back.efi"
    subprocess.run(["mcopy", "-i", str(esp), "::/EFI/BOOT/BOOTX64.EFI", str(copy)], check=True)
    assert copy.read_bytes() == uki.read_bytes()


def test_tree_size_counts_hardlinks_once(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a").write_bytes(b"x" * (3 << 20))
    (tree / "b").hardlink_to(tree / "a")
    assert 3 <= tree_size_mib(tree) <= 4


EPOCH = 1762595483  # 2025-11-08 09:51:23 UTC, a mirror's date


def test_esp_times_are_the_epoch_not_the_clock(tmp_path: Path) -> None:
    need_tool("mkfs.vfat")
    need_tool("mdir")
    uki = tmp_path / "BOOTX64.EFI"
    uki.write_bytes(b"MZ" + b"\1" * 4096)
    images = []
    for n in (1, 2):
        os.utime(uki, (1_000_000_000 * n, 1_000_000_000 * n))  # a time of its own, which -m would copy
        esp = tmp_path / f"esp{n}.img"
        make_esp(uki, Layout(40, 300, "u", "c", "ukify"), esp, "abcd1234", EPOCH)
        images.append(esp.read_bytes())
    listing = subprocess.run(["mdir", "-i", str(esp), "::/EFI/BOOT"], capture_output=True, text=True, check=True).stdout
    assert "2025-11-08" in listing, listing
    assert images[0] == images[1]


def inode_times(disk: Path, layout: Layout, path: str) -> dict[str, int]:
    out = subprocess.run(["debugfs", "-R", f"stat {path}", f"{disk}?offset={layout.root_offset}"], capture_output=True, text=True, check=True).stdout
    times = {}
    for line in out.splitlines():
        name, _, value = line.strip().partition(":")
        if name in ("ctime", "atime", "mtime", "crtime"):
            times[name] = int(value.split(":")[0].strip(), 16)
    return times


def test_root_fs_has_no_host_times(tmp_path: Path) -> None:
    """mke2fs -d copies change and access times from the host's files: they are pinned, so two
    trees with the same content and mtimes, written and read at other moments, give one file system."""
    need_tool("mkfs.ext4")
    need_tool("debugfs")
    layout = Layout(1, 64, "6f1b2c4e-7d0a-4b8e-9c57-3a2d1e0f9b12", "c", "ukify")
    disks = []
    for n in (1, 2):
        tree = tmp_path / f"tree{n}"
        (tree / "etc").mkdir(parents=True)
        (tree / "etc/hostname").write_text("appliance\n")
        os.chmod(tree / "etc/hostname", 0o600 + n)  # a change time of its own (ctime), then back
        os.chmod(tree / "etc/hostname", 0o644)
        for path in (tree / "etc/hostname", tree / "etc", tree):
            os.utime(path, (EPOCH - 100 * n, EPOCH - 50))  # another access time, the same mtime
        disk = tmp_path / f"disk{n}.raw"
        with open(disk, "wb") as fh:
            fh.truncate(layout.disk_size)
        make_root_fs(tree, disk, layout, EPOCH)
        disks.append(disk)
    times = inode_times(disks[0], layout, "/etc/hostname")
    assert times == {"ctime": EPOCH, "atime": EPOCH, "mtime": EPOCH - 50, "crtime": EPOCH}
    assert inode_times(disks[0], layout, "/")["ctime"] == EPOCH
    assert disks[0].read_bytes() == disks[1].read_bytes()
    fsck = subprocess.run(["e2fsck", "-fn", f"{disks[0]}?offset={layout.root_offset}"], check=False, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_a_pe_file_gets_the_epoch_and_a_valid_checksum(tmp_path: Path) -> None:
    """objcopy stamps UKIs (Debian 12 trees) with the clock: the stamp becomes the epoch."""
    from crust.disk.assemble import pin_pe_timestamp

    pe = 0x80
    data = bytearray(b"MZ" + bytes(pe - 2))
    data[0x3C:0x40] = pe.to_bytes(4, "little")
    data += b"PE\0\0" + bytes(20) + bytes(240) + bytes(range(256)) * 7 + b"\x07"  # an odd length
    data[pe + 8 : pe + 12] = (1_999_999_999).to_bytes(4, "little")
    path = tmp_path / "uki.efi"
    path.write_bytes(bytes(data))
    pin_pe_timestamp(path, EPOCH)
    out = path.read_bytes()
    assert int.from_bytes(out[pe + 8 : pe + 12], "little") == EPOCH
    field = pe + 24 + 64
    # CheckSumMappedFile's algorithm, word by word, folding as it goes
    padded, total = out[:field] + bytes(4) + out[field + 4 :] + b"\0", 0
    for i in range(0, len(out), 2):
        total += int.from_bytes(padded[i : i + 2], "little")
        total = (total & 0xFFFF) + (total >> 16)
    assert int.from_bytes(out[field : field + 4], "little") == total + len(out)
