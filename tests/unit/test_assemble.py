"""Disk layout arithmetic and GPT writing, on small files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from crust.disk.assemble import ESP_TYPE, ROOT_TYPE_X86_64, Layout, derived_uuid, make_esp, partition, tree_size_mib
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
    make_esp(uki, Layout(40, 300, "u", "c", "ukify"), esp, "abcd1234")
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
