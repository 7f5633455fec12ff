"""The Azure target's settings and the request bodies it builds (no cloud needed): every bad
input is one line with file, line and fix."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from crust.build.manifest import Manifest
from crust.cloud.azure.image import image_body
from crust.cloud.azure.launch import nic_body, vm_body
from crust.cloud.azure.pageblob import chunks
from crust.cloud.azure.settings import DEFAULT_NAME, PUBLIC_ARM, image_name, require
from crust.cloud.targets import load_target
from crust.define.project import Project
from crust.errors import UserError
from tests.unit.test_targets import write

SUBNET = "/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default"


def azure_target(project: Path):  # type: ignore[no-untyped-def]
    return load_target(Project.at(project), "demo", "azure")


def test_defaults(project: Path) -> None:
    write(project, "")
    target = azure_target(project)
    assert (target.subscription, target.resource_group, target.location, target.storage_account) == ("", "", "", "")
    assert (target.container, target.workers, target.vm_size, target.admin_user, target.public_ip) == (
        "crust-images",
        4,
        "Standard_B2s",
        "crust",
        False,
    )
    assert target.name == DEFAULT_NAME and target.management_endpoint == PUBLIC_ARM and target.ssh_key is None


def test_settings(project: Path) -> None:
    write(project, f'\n[targets.azure]\nresource_group = "rg-crust"\nlocation = "westeurope"\nsubnet = "{SUBNET}"\npublic_ip = true\nworkers = 8\n')
    target = azure_target(project)
    assert (target.resource_group, target.location, target.subnet, target.public_ip, target.workers) == ("rg-crust", "westeurope", SUBNET, True, 8)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('subscription = "abc"', "is not a subscription id"),
        ('location = "West Europe"', "is not an Azure location"),
        ('storage_account = "My_Account"', "is not a storage account name"),
        ('container = "A"', "is not a blob container name"),
        ('container = "a--b"', "is not a blob container name"),
        ('subnet = "default"', "is not a subnet resource id"),
        ('vm_size = "B2 s"', "is not a VM size"),
        ('admin_user = "root"', "a name Azure refuses"),
        ('admin_user = "Bob"', "is not a Linux user name"),
        ("workers = 0", "use 1 to 32"),
        ('gallery = "my gallery"', "is not a gallery name"),
        ('public_ip = "yes"', "expected true or false"),
        ('management_endpoint = "http://arm.example.com"', "use an https:// URL"),
        ('name = "{appliance}-{date}"', "unknown field {date}"),
        ('account_key = "x"', "unknown key 'targets.azure.account_key'"),
    ],
)
def test_bad_settings(project: Path, text: str, words: str) -> None:
    write(project, f"\n[targets.azure]\n{text}\n")
    with pytest.raises(UserError) as err:
        azure_target(project)
    assert words in err.value.one_line()
    assert err.value.file == str(project / "appliances" / "demo.toml") and err.value.line == 8
    assert "(fix: " in err.value.one_line()


def test_loopback_endpoint_is_allowed_for_a_stand_in(project: Path) -> None:
    write(project, '\n[targets.azure]\nmanagement_endpoint = "http://127.0.0.1:8080/"\n')
    assert azure_target(project).management_endpoint == "http://127.0.0.1:8080"


def test_missing_keys_are_one_line_naming_them(project: Path) -> None:
    write(project, "")
    with pytest.raises(UserError, match=r"no resource_group for the Azure target \(fix: set resource_group"):
        require(azure_target(project), "resource_group", "location")


def test_image_record(project: Path) -> None:
    write(project, '\n[targets.azure]\nlocation = "westeurope"\n')
    target = azure_target(project)
    manifest = Manifest("demo", version="1.0", build_id="fe6262b53ca7", distribution="debian-13")
    assert image_name(target, manifest, "ab" * 32) == "crust-demo-1.0-abababababab"
    body = image_body(target, manifest, "ab" * 32, "https://acct.blob.core.windows.net/crust-images/x.vhd")
    assert body["location"] == "westeurope" and body["tags"]["crust_image_digest"] == "ab" * 32
    assert body["properties"]["hyperVGeneration"] == "V2"
    disk = body["properties"]["storageProfile"]["osDisk"]
    assert (disk["osType"], disk["osState"], disk["blobUri"]) == ("Linux", "Generalized", "https://acct.blob.core.windows.net/crust-images/x.vhd")


def test_vm_and_nic_bodies(project: Path) -> None:
    write(project, f'\n[targets.azure]\nlocation = "westeurope"\nsubnet = "{SUBNET}"\nadmin_user = "ops"\n')
    target = azure_target(project)
    vm = vm_body(target, "demo-1", "/images/x", "/nics/y", "ssh-ed25519 AAAA k", "#cloud-config\n", {"crust_appliance": "demo"})
    os_profile = vm["properties"]["osProfile"]
    assert os_profile["adminUsername"] == "ops" and base64.b64decode(os_profile["customData"]) == b"#cloud-config\n"
    assert os_profile["linuxConfiguration"]["ssh"]["publicKeys"] == [{"path": "/home/ops/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA k"}]
    assert os_profile["linuxConfiguration"]["disablePasswordAuthentication"] is True
    assert vm["properties"]["storageProfile"]["imageReference"] == {"id": "/images/x"}
    nic = nic_body(target, {}, None)
    assert nic["properties"]["ipConfigurations"][0]["properties"]["subnet"] == {"id": SUBNET}
    assert "publicIPAddress" not in nic["properties"]["ipConfigurations"][0]["properties"]


def test_gallery_versions_are_named_by_time_in_order() -> None:
    import datetime as dt

    from crust.cloud.azure.gallery import version_name

    earlier, later = dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(2026, 11, 30, 15, 0, 0)
    assert (version_name(earlier), version_name(later)) == ("2026.0102.030405", "2026.1130.150000")
    assert all(int(part) < 2**31 for part in version_name(later).split("."))


def test_chunks_are_at_most_4_mib_on_pages() -> None:
    pieces = list(chunks(iter([(0, 512), (8 << 20, (8 << 20) + (9 << 20) + 1024)])))
    assert pieces == [(0, 512), (8 << 20, 4 << 20), (12 << 20, 4 << 20), (16 << 20, (1 << 20) + 1024)]


def test_ranges_without_seek_data_are_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from crust.cloud.azure import pageblob

    path = tmp_path / "f"
    path.write_bytes(b"x" * 4096)
    real = os.lseek

    def lseek(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.EINVAL, "not supported")
        return real(fd, pos, how)

    monkeypatch.setattr(pageblob.os, "lseek", lseek)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert list(pageblob.allocated_ranges(fd, 4096)) == [(0, 4096)]
    finally:
        os.close(fd)
