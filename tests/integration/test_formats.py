"""vmdk, vhd, ova and gce from the same build, each checked with qemu-img (info, check, compare) or,
for gce, untarred and compared with the raw image."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_py, need_tool

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]
MIB = 1 << 20
OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)


def info(fmt: str, path: Path) -> dict[str, Any]:
    out = qemu_img("info", "--output=json", "-f", fmt, str(path))
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def same_content(raw: Path, fmt: str, other: Path) -> None:
    out = qemu_img("compare", "-f", "raw", "-F", fmt, str(raw), str(other))
    assert out.returncode == 0, out.stdout + out.stderr


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def formats(built: Built, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    need_tool("qemu-img")
    built("wsgi")
    out_dir = tmp_path_factory.mktemp("formats")
    out = build_py("--output", str(out_dir), "build", "wsgi", "--format", "vmdk", "--format", "vhd", "--format", "ova", "--format", "gce")
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((out_dir / "wsgi" / "manifest.json").read_text())
    return out_dir, {a["format"]: a for a in manifest["artifacts"]}


def test_the_manifest_lists_every_format(formats: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    _, artifacts = formats
    assert sorted(artifacts) == ["gce", "ova", "qcow2", "raw", "vhd", "vmdk"]
    for artifact in artifacts.values():
        assert sha256(Path(artifact["path"])) == artifact["sha256"]


def test_vmdk_is_stream_optimized_and_holds_the_image(formats: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    _, artifacts = formats
    raw, vmdk = Path(artifacts["raw"]["path"]), Path(artifacts["vmdk"]["path"])
    data = info("vmdk", vmdk)
    assert data["format"] == "vmdk" and data["virtual-size"] == raw.stat().st_size
    assert data["format-specific"]["data"]["create-type"] == "streamOptimized"
    check = qemu_img("check", "-f", "vmdk", str(vmdk))
    assert check.returncode == 0 and "No errors were found" in check.stdout, check.stdout + check.stderr
    same_content(raw, "vmdk", vmdk)


def vhd_footer_checksum(footer: bytes) -> int:
    """One's complement of the byte sum of the footer with its checksum field (64..68) zeroed."""
    return ~sum(footer[:64] + b"\0\0\0\0" + footer[68:]) & 0xFFFFFFFF


def test_vhd_is_fixed_aligned_and_holds_the_image(formats: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    _, artifacts = formats
    raw, vhd = Path(artifacts["raw"]["path"]), Path(artifacts["vhd"]["path"])
    size = raw.stat().st_size
    assert size % MIB == 0, "Azure wants the virtual size a whole number of MiB"
    assert vhd.stat().st_size == size + 512, "a fixed VHD is the data plus a 512-byte footer"
    data = info("vpc", vhd)
    assert data["format"] == "vpc" and data["virtual-size"] == size
    # qemu-img check has no checker for vpc: it says so, and the footer is checked here instead.
    check = qemu_img("check", "-f", "vpc", str(vhd))
    assert check.returncode == 63 and "does not support checks" in check.stderr, check.stdout + check.stderr
    with vhd.open("rb") as f:
        f.seek(-512, 2)
        footer = f.read(512)
    assert footer[:8] == b"conectix"
    assert int.from_bytes(footer[60:64], "big") == 2, "disk type 2 = fixed"
    assert int.from_bytes(footer[48:56], "big") == size, "current size"
    assert int.from_bytes(footer[64:68], "big") == vhd_footer_checksum(footer)
    same_content(raw, "vpc", vhd)


def test_ova_is_an_ovf_package_around_the_vmdk(formats: tuple[Path, dict[str, dict[str, Any]]], tmp_path: Path) -> None:
    _, artifacts = formats
    raw, ova = Path(artifacts["raw"]["path"]), Path(artifacts["ova"]["path"])
    with tarfile.open(ova) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["wsgi.ovf", "wsgi.mf", "wsgi-disk1.vmdk"], "the descriptor comes first"
        assert all(m.isfile() for m in members)
        tar.extractall(tmp_path, filter="data")
    digests = dict(re.findall(r"SHA256\((.+)\)= ([0-9a-f]{64})", (tmp_path / "wsgi.mf").read_text()))
    assert digests == {name: sha256(tmp_path / name) for name in ("wsgi.ovf", "wsgi-disk1.vmdk")}
    root = ET.parse(tmp_path / "wsgi.ovf").getroot()
    ref = root.find(f"{OVF}References/{OVF}File")
    disk = root.find(f"{OVF}DiskSection/{OVF}Disk")
    assert ref is not None and disk is not None
    vmdk = tmp_path / "wsgi-disk1.vmdk"
    assert ref.get(f"{OVF}href") == vmdk.name and ref.get(f"{OVF}size") == str(vmdk.stat().st_size)
    assert disk.get(f"{OVF}capacity") == str(raw.stat().st_size)
    assert sha256(vmdk) == artifacts["vmdk"]["sha256"], "the ova packs the vmdk step's disk"
    check = qemu_img("check", "-f", "vmdk", str(vmdk))
    assert check.returncode == 0, check.stdout + check.stderr


def test_gce_is_disk_raw_in_a_sparse_tar_gz_holding_the_image(formats: tuple[Path, dict[str, dict[str, Any]]], tmp_path: Path) -> None:
    _, artifacts = formats
    raw, gce = Path(artifacts["raw"]["path"]), Path(artifacts["gce"]["path"])
    with gce.open("rb") as fh:
        assert gce.name == "wsgi.gce" and fh.read(2) == b"\x1f\x8b"
    with tarfile.open(gce) as tar:
        [member] = tar.getmembers()
    assert (member.name, member.type, member.uid, member.gid) == ("disk.raw", tarfile.GNUTYPE_SPARSE, 0, 0)
    size = raw.stat().st_size
    assert member.size == -(-size // (1 << 30)) * (1 << 30), "Compute Engine wants a whole number of GiB"
    subprocess.run(["tar", "--extract", "--sparse", f"--file={gce}", f"--directory={tmp_path}"], check=True)
    disk = tmp_path / "disk.raw"
    check = subprocess.run(["sfdisk", "--verify", str(disk)], capture_output=True, text=True, check=False)
    assert check.returncode == 0 and "No errors detected" in check.stdout, check.stdout + check.stderr
    # The same bytes past the primary GPT and up to where the raw image's backup GPT was (it moved
    # to the grown disk's end), zeros after.
    with raw.open("rb") as a, disk.open("rb") as b:
        a.seek(34 * 512)
        b.seek(34 * 512)
        left = size - 67 * 512
        while left > 0:
            n = min(left, 4 * MIB)
            assert a.read(n) == b.read(n)
            left -= n
    same_partitions = subprocess.run(["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True).stdout
    original = subprocess.run(["sfdisk", "--dump", str(raw)], capture_output=True, text=True, check=True).stdout

    def partitions(dump: str) -> list[str]:  # each line without its device path, which names the file
        return [line.split(":", 1)[1] for line in dump.splitlines() if "start=" in line]

    assert partitions(same_partitions) == partitions(original)


def test_a_build_without_them_removes_them(formats: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    out_dir, _ = formats
    out = build_py("--output", str(out_dir), "build", "wsgi")
    assert out.returncode == 0, out.stderr[-3000:]
    published = {p.suffix for p in (out_dir / "wsgi").glob("wsgi.*")}
    assert not published & {".vmdk", ".vhd", ".ova", ".gce"} and {".raw", ".qcow2"} <= published, published
