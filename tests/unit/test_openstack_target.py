"""The OpenStack target's settings and the image record it asks Glance for (no cloud needed):
every bad input is one line with file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from crust.build.manifest import Manifest
from crust.cloud.openstack.settings import DEFAULT_NAME, check_for_upload
from crust.cloud.openstack.upload import image_body
from crust.cloud.targets import load_target
from crust.define.project import Project
from crust.errors import UserError
from tests.unit.test_targets import write


def openstack_target(project: Path):  # type: ignore[no-untyped-def]
    return load_target(Project.at(project), "demo", "openstack")


def test_defaults(project: Path) -> None:
    write(project, "")
    target = openstack_target(project)
    assert (target.cloud, target.region, target.visibility, target.members, target.min_ram, target.min_disk) == ("", "", "private", (), 512, 0)
    assert target.name == DEFAULT_NAME


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('visibility = "everyone"', "use private, shared, community, public"),
        ('members = ["a b"]', "is not a project id"),
        ("members = 3", "expected a list of strings"),
        ('properties = { hw_firmware_type = "bios" }', "is set by Crust"),
        ('properties = { crust_appliance = "x" }', "is set by Crust"),
        ('properties = { visibility = "public" }', "is set by Crust or Glance"),
        ('properties = { disk_format = "raw" }', "is set by Crust or Glance"),
        ('properties = { "Team" = "x" }', "lower-case letters"),
        ("properties = { team = 1 }", "expected a string value"),
        ('min_ram = "2000GiB"', "out of range"),
        ("min_disk = -1", "use 0"),
        ('cloud = "my cloud"', "is not a clouds.yaml cloud name"),
        ('name = "{appliance}-{date}"', "unknown field {date}"),
        ('password = "x"', "unknown key 'targets.openstack.password'"),
    ],
)
def test_bad_settings(project: Path, text: str, words: str) -> None:
    write(project, f"\n[targets.openstack]\n{text}\n")
    with pytest.raises(UserError) as err:
        openstack_target(project)
    assert words in err.value.one_line()
    assert err.value.file == str(project / "appliances" / "demo.toml") and err.value.line == 8
    assert "(fix: " in err.value.one_line()


def test_members_need_shared_visibility(project: Path) -> None:
    write(project, '\n[targets.openstack]\nmembers = ["project-b"]\n')
    with pytest.raises(UserError, match='visibility = "shared"'):
        check_for_upload(openstack_target(project))


def test_image_record_for_nova(project: Path) -> None:
    write(project, '\n[targets.openstack]\nmin_ram = "1GiB"\nproperties = { team = "web" }\n')
    manifest = Manifest("demo", version="1.0", build_id="fe6262b53ca7", distribution="debian-13")
    body = image_body(openstack_target(project), manifest, "ab" * 32, "cd" * 32, 2 * 1024**3 + 1)
    assert body["name"] == "crust-demo-1.0-abababababab"
    assert (body["disk_format"], body["container_format"], body["visibility"]) == ("qcow2", "bare", "private")
    assert (body["hw_firmware_type"], body["hw_machine_type"], body["os_type"], body["os_distro"]) == ("uefi", "q35", "linux", "debian")
    assert (body["min_disk"], body["min_ram"], body["team"]) == (3, 1024, "web")
    assert (body["crust_appliance"], body["crust_image_digest"], body["crust_qcow2_sha256"]) == ("demo", "ab" * 32, "cd" * 32)
