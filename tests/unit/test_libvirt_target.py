"""The libvirt target's pieces that need no daemon: its settings (every bad input one line with
file, line and fix), the launched domain's XML, volume names, and the sparse stream's map of a
file's data and holes."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from crust.build.manifest import Manifest
from crust.cloud.libvirt.launch import METADATA_NS, launched_xml
from crust.cloud.libvirt.pool import _hole_or_data, volume_xml
from crust.cloud.libvirt.settings import DEFAULT_NAME, volume_name
from crust.cloud.targets import load_target, load_targets, targets_reference
from crust.define.project import Project
from crust.errors import UserError
from tests.unit.test_targets import write


def libvirt_target(project: Path):  # type: ignore[no-untyped-def]
    return load_target(Project.at(project), "demo", "libvirt")


def test_defaults(project: Path) -> None:
    write(project, "")
    target = libvirt_target(project)
    assert (target.uri, target.pool, target.network, target.memory, target.vcpus, target.domain_type) == (
        "qemu:///system",
        "default",
        "auto",
        1024,
        2,
        "auto",
    )
    assert target.name == DEFAULT_NAME and target.ssh_key is None


def test_shared_file_then_appliance(project: Path) -> None:
    write(
        project,
        '\n[targets.libvirt]\nmemory = "2GiB"\nssh_key = "keys/me.pub"\n',
        shared='[libvirt]\nuri = "qemu+ssh://builder@host.example/system"\npool = "images"\nmemory = "512MiB"\n',
    )
    target = libvirt_target(project)
    assert (target.uri, target.pool, target.memory) == ("qemu+ssh://builder@host.example/system", "images", 2048)
    assert target.ssh_key == (project / "appliances" / "keys" / "me.pub").resolve()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('uri = "http://host/system"', "is not a qemu libvirt URI"),
        ('uri = "qemu:///system; rm -rf /"', "is not a qemu libvirt URI"),
        ('pool = "../etc"', "is not a libvirt object name"),
        ('network = "a b"', "is not a libvirt object name"),
        ('memory = "100MiB"', "out of range"),
        ("vcpus = 0", "0 vCPUs: use 1 to 256"),
        ('domain_type = "xen"', "use auto, kvm, qemu"),
        ('name = "{appliance}-{date}"', "unknown field {date}"),
        ('pol = "x"', "unknown key 'targets.libvirt.pol'"),
    ],
)
def test_bad_settings(project: Path, text: str, words: str) -> None:
    write(project, f"\n[targets.libvirt]\n{text}\n")
    with pytest.raises(UserError) as err:
        libvirt_target(project)
    assert words in err.value.one_line()
    assert err.value.file == str(project / "appliances" / "demo.toml") and err.value.line == 8
    assert "(fix: " in err.value.one_line()


def test_validate_parses_every_target(project: Path) -> None:
    write(project, '\n[targets.libvirt]\nvcpus = "two"\n')
    with pytest.raises(UserError, match="vcpus"):
        load_targets(Project.at(project), "demo")


def test_reference_lists_each_target() -> None:
    text = targets_reference()
    assert "Cloud target aws" in text and "Cloud target libvirt" in text and "  pool " in text


def test_volume_name_from_the_pattern(project: Path) -> None:
    write(project, "")
    manifest = Manifest("demo", version="1.0", build_id="fe6262b53ca7")
    assert volume_name(libvirt_target(project), manifest, "ab" * 32) == "crust-demo-1.0-abababababab.qcow2"
    write(project, '\n[targets.libvirt]\nname = "{appliance} {version}"\n')
    with pytest.raises(UserError, match="is not valid"):
        volume_name(libvirt_target(project), manifest, "ab" * 32)


def test_launched_domain(project: Path) -> None:
    write(project, '\n[targets.libvirt]\nnetwork = "user"\nmemory = "2GiB"\nvcpus = 3\npool = "images"\n')
    xml = launched_xml(libvirt_target(project), "demo-0011aabb", "qemu", "demo-0011aabb.qcow2", "demo-0011aabb-seed.img", "demo", "cd" * 32, "user")
    dom = ET.fromstring(xml)
    assert dom.get("type") == "qemu" and dom.findtext("name") == "demo-0011aabb"
    assert dom.find("memory").text == "2048" and dom.findtext("vcpu") == "3"  # type: ignore[union-attr]
    os_el = dom.find("os")
    assert os_el is not None and os_el.get("firmware") == "efi"
    assert os_el.find("firmware/feature[@name='secure-boot']").get("enabled") == "no"  # type: ignore[union-attr]
    disks = [(d.find("source").get("pool"), d.find("source").get("volume"), d.find("readonly") is not None) for d in dom.iter("disk")]  # type: ignore[union-attr]
    assert disks == [("images", "demo-0011aabb.qcow2", False), ("images", "demo-0011aabb-seed.img", True)]
    assert dom.find("devices/interface").get("type") == "user"  # type: ignore[union-attr]
    assert dom.find(f"metadata/{{{METADATA_NS}}}launch/{{{METADATA_NS}}}appliance").text == "demo"  # type: ignore[union-attr]
    assert dom.find("cpu/feature[@name='la57']").get("policy") == "disable"  # type: ignore[union-attr]


def test_copy_on_write_volume_xml() -> None:
    vol = ET.fromstring(volume_xml("m.qcow2", 2**31, "qcow2", backing="/pool/base.qcow2"))
    assert vol.findtext("backingStore/path") == "/pool/base.qcow2"
    assert vol.find("backingStore/format").get("type") == "qcow2"  # type: ignore[union-attr]
    assert vol.findtext("capacity") == str(2**31)


def test_sparse_map_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    with open(path, "wb") as fh:
        fh.truncate(16 * 2**20)
        fh.seek(4 * 2**20)
        fh.write(b"x" * 2**20)
    fd = os.open(path, os.O_RDONLY)
    try:
        sections = []
        while os.lseek(fd, 0, os.SEEK_CUR) < 16 * 2**20:
            in_data, length = _hole_or_data(fd)
            sections.append((in_data, length))
            os.lseek(fd, length, os.SEEK_CUR)
    finally:
        os.close(fd)
    assert sections == [(False, 4 * 2**20), (True, 2**20), (False, 11 * 2**20)]
