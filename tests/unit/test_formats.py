"""The OVF descriptor of an OVA (pure: no disk is written)."""

from __future__ import annotations

import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from crust.formats import FORMATS, REGISTRY, Machine
from crust.formats.gce import GIB, copy_sparse, gib_size, write_gce
from crust.formats.kind import MIB
from crust.formats.ova import NAMESPACES, ovf_descriptor

NS = dict(NAMESPACES)
OVF = "{" + NAMESPACES["ovf"] + "}"
WSGI = Machine("wsgi", "1.2.3", "A <WSGI> & more")


def parse(machine: Machine = WSGI, size: int = 4096, capacity: int = 1 << 30) -> ET.Element:
    return ET.fromstring(ovf_descriptor(machine, "wsgi-disk1.vmdk", size, capacity))


def test_references_the_disk_file_with_its_size() -> None:
    root = parse(size=123456)
    (ref,) = root.findall("ovf:References/ovf:File", NS)
    assert ref.get(OVF + "href") == "wsgi-disk1.vmdk" and ref.get(OVF + "size") == "123456"
    (disk,) = root.findall("ovf:DiskSection/ovf:Disk", NS)
    assert disk.get(OVF + "fileRef") == ref.get(OVF + "id")
    assert disk.get(OVF + "capacity") == str(1 << 30) and disk.get(OVF + "capacityAllocationUnits") == "byte"
    assert disk.get(OVF + "format", "").endswith("#streamOptimized")


def test_hardware_names_cpu_memory_disk_nic_and_uefi() -> None:
    root = parse(Machine("ids", "2.0", "IDS", memory_mib=2048, vcpus=4))
    items = root.findall("ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:Item", NS)
    by_type = {i.findtext("rasd:ResourceType", namespaces=NS): i for i in items}
    assert by_type["3"].findtext("rasd:VirtualQuantity", namespaces=NS) == "4"
    assert by_type["4"].findtext("rasd:VirtualQuantity", namespaces=NS) == "2048"
    disk = by_type["17"]
    assert disk.findtext("rasd:HostResource", namespaces=NS) == "ovf:/disk/vmdisk1"
    controller = disk.findtext("rasd:Parent", namespaces=NS)
    assert by_type["6"].findtext("rasd:InstanceID", namespaces=NS) == controller
    assert by_type["10"].findtext("rasd:Connection", namespaces=NS) == "default"
    (firmware,) = root.findall("ovf:VirtualSystem/ovf:VirtualHardwareSection/vmw:Config", NS)
    assert firmware.get("{" + NAMESPACES["vmw"] + "}value") == "efi"


def test_rasd_fields_are_in_schema_order() -> None:
    for item in parse().iter(OVF + "Item"):
        names = [child.tag for child in item]
        assert names == sorted(names)


def test_text_is_escaped_not_pasted() -> None:
    root = parse()
    assert root.findtext("ovf:VirtualSystem/ovf:Info", namespaces=NS) == "A <WSGI> & more"
    product = root.find("ovf:VirtualSystem/ovf:ProductSection", NS)
    assert product is not None and product.findtext("ovf:Version", namespaces=NS) == "1.2.3"


# gce: Compute Engine's disk.raw in a sparse tar.gz


@pytest.mark.parametrize(
    ("size", "grown"),
    [(1, GIB), (GIB, GIB), (GIB + 1, 2 * GIB), (1142947840, 2 * GIB), (10 * GIB, 10 * GIB)],
)
def test_gce_disk_is_a_whole_number_of_gib(size: int, grown: int) -> None:
    assert gib_size(size) == grown


def test_gce_copy_keeps_holes_and_bytes(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    with src.open("wb") as fh:
        fh.truncate(64 * MIB)
        fh.seek(10 * MIB)
        fh.write(b"crust" * 1000)
    copy_sparse(src, dest)
    assert dest.read_bytes() == src.read_bytes()
    assert dest.stat().st_blocks * 512 < 2 * MIB


def test_gce_tar_holds_disk_raw_only_pinned_and_reproducible(tmp_path: Path) -> None:
    raw = tmp_path / "in.raw"
    with raw.open("wb") as fh:
        fh.truncate(GIB)  # already whole: no GPT to move
        fh.seek(MIB)
        fh.write(b"\x5a" * 4096)
    first, second = tmp_path / "a.gce", tmp_path / "b.gce"
    write_gce(raw, first, 1_700_000_000)
    write_gce(raw, second, 1_700_000_000)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gce", "b.gce", "in.raw"], "nothing left beside it"
    data = first.read_bytes()
    assert data[:2] == b"\x1f\x8b" and data[4:8] == bytes(4), "gzip with no time stamp"
    with tarfile.open(first) as tar:
        [member] = tar.getmembers()
    assert (member.name, member.size, member.uid, member.gid, member.mtime, member.mode) == ("disk.raw", GIB, 0, 0, 1_700_000_000, 0o644)
    assert member.type == tarfile.GNUTYPE_SPARSE


def test_gce_builds_after_the_formats_it_does_not_pack() -> None:
    assert FORMATS[-1] == "gce" and REGISTRY["gce"].uses is None


def test_gce_grows_a_gpt_disk_to_a_whole_gib_and_moves_its_backup_header(tmp_path: Path) -> None:
    raw = tmp_path / "in.raw"
    with raw.open("wb") as fh:
        fh.truncate(GIB + 3 * MIB)
    subprocess.run(["sfdisk", "--quiet", str(raw)], input="label: gpt\nsize=64M, type=U\ntype=L\n", text=True, check=True)
    first, second = tmp_path / "a.gce", tmp_path / "b.gce"
    write_gce(raw, first, 1_700_000_000)
    write_gce(raw, second, 1_700_000_000)
    assert first.read_bytes() == second.read_bytes(), "sfdisk's relocation is deterministic"
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "--extract", "--sparse", f"--file={first}", f"--directory={out}"], check=True)
    disk = out / "disk.raw"
    assert disk.stat().st_size == 2 * GIB
    check = subprocess.run(["sfdisk", "--verify", str(disk)], capture_output=True, text=True, check=False)
    assert check.returncode == 0 and "No errors detected" in check.stdout, check.stdout + check.stderr
