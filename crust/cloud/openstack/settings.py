"""The OpenStack target's settings: [targets.openstack] in an appliance file, [openstack] in
targets.toml. Credentials are never here: openstacksdk reads clouds.yaml (the cloud named by
`cloud`, else OS_CLOUD) and the OS_* environment, as the openstack CLI does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.build.manifest import Manifest
from crust.cloud.naming import NAME_FIELDS, format_name, parse_name_pattern
from crust.define.settings import Invalid, Setting, parse_int, parse_seconds, parse_size_mib, parse_str, parse_str_list, parse_table
from crust.errors import UserError

DEFAULT_NAME = "crust-{appliance}-{version}-{digest12}"
VISIBILITIES = ("private", "shared", "community", "public")
CLOUD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
PROPERTY_RE = re.compile(r"^[a-z][a-z0-9_:.-]{0,254}$")
RESERVED_PROPERTIES = (
    "crust_",
    "hw_firmware_type",
    "hw_machine_type",
    "hw_disk_bus",
    "hw_vif_model",
    "os_distro",
    "os_type",
    "os_hash",
    "os_hidden",
    "owner_specified",
)
# Glance's own image fields: set by Crust or by Glance, never through properties.
CORE_FIELDS = frozenset(
    {"name", "visibility", "disk_format", "container_format", "min_disk", "min_ram", "id", "owner", "status", "protected", "tags"}
    | {"checksum", "size", "virtual_size", "locations", "direct_url", "self", "file", "schema", "created_at", "updated_at", "stores"}
)


def parse_cloud(value: Any) -> str:
    name = parse_str(value)
    if name and not CLOUD_RE.fullmatch(name):
        raise Invalid(f"{name!r} is not a clouds.yaml cloud name")
    return name


def parse_region(value: Any) -> str:
    region = parse_str(value)
    if region and not CLOUD_RE.fullmatch(region):
        raise Invalid(f"{region!r} is not a region name (e.g. RegionOne)")
    return region


def parse_visibility(value: Any) -> str:
    visibility = parse_str(value)
    if visibility not in VISIBILITIES:
        raise Invalid(f"{visibility!r}: use {', '.join(VISIBILITIES)}")
    return visibility


def parse_projects(value: Any) -> tuple[str, ...]:
    projects = parse_str_list(value)
    for project in projects:
        if not PROJECT_RE.fullmatch(project):
            raise Invalid(f"{project!r} is not a project id")
    return tuple(dict.fromkeys(projects))


def parse_min_ram(value: Any) -> int:
    mib = parse_size_mib(value)
    if not 0 <= mib <= 1024 * 1024:
        raise Invalid(f"{value!r} is out of range (0 to 1TiB)")
    return mib


def parse_min_disk(value: Any) -> int:
    gib = parse_int(value)
    if not 0 <= gib <= 65536:
        raise Invalid(f"{gib} GiB: use 0 (the image's size) to 65536")
    return gib


def parse_properties(value: Any) -> Mapping[str, str]:
    table = parse_table(value)
    for key, prop in table.items():
        if not isinstance(prop, str):
            raise Invalid(f"property {key!r}: expected a string value, got {type(prop).__name__}")
        if not PROPERTY_RE.fullmatch(key):
            raise Invalid(f"property {key!r}: lower-case letters, digits and _ : . -")
        if key.startswith(RESERVED_PROPERTIES) or key in CORE_FIELDS:
            raise Invalid(f"property {key!r} is set by Crust or Glance (use the target's own keys: visibility, min_ram, min_disk, name)")
        if len(prop) > 255:
            raise Invalid(f"property {key!r}: at most 255 characters")
    return table


OPENSTACK_SETTINGS: tuple[Setting, ...] = (
    Setting("cloud", parse_cloud, "", "Cloud name in clouds.yaml (default: OS_CLOUD, else the OS_* environment)."),
    Setting("region", parse_region, "", "Region (default: the cloud's region_name)."),
    Setting("name", parse_name_pattern, DEFAULT_NAME, "Image name pattern; fields: " + ", ".join(f"{{{f}}}" for f in NAME_FIELDS) + "."),
    Setting("visibility", parse_visibility, "private", "Image visibility: private, shared (with members), community, public (an admin's)."),
    Setting("members", parse_projects, (), "Project ids the image is shared with (visibility shared)."),
    Setting("min_ram", parse_min_ram, 512, 'Smallest RAM a server of the image needs ("1GiB", "512MiB").'),
    Setting("min_disk", parse_min_disk, 0, "Smallest root disk in GiB (0: the image's size, rounded up)."),
    Setting(
        "properties",
        parse_properties,
        MappingProxyType({}),
        "Extra image properties (crust_*, hw_firmware_type, hw_machine_type, os_* are set by Crust).",
    ),
    Setting("flavor", parse_str, "", "Flavor name or id for `launch`."),
    Setting("network", parse_str, "", "Network name or id for `launch` (default: the project's only network)."),
    Setting("security_groups", parse_str_list, (), "Security groups for `launch`."),
    Setting("wait_timeout", parse_seconds, 1800.0, "Seconds to wait for an image to become active or a server to become ACTIVE."),
    Setting("ssh_key", parse_str, "", "Public key file put in the user data by `launch` (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub)."),
    Setting("cloud_config", parse_table, MappingProxyType({}), "cloud-init configuration (a table) merged into `launch`'s #cloud-config user data."),
)


@dataclass(frozen=True)
class OpenStackTarget:
    cloud: str
    region: str
    name: str
    visibility: str
    members: tuple[str, ...]
    min_ram: int
    min_disk: int
    properties: Mapping[str, str]
    flavor: str
    network: str
    security_groups: tuple[str, ...]
    wait_timeout: float
    ssh_key: Path | None
    cloud_config: Mapping[str, Any]
    source: Path | None


def image_name(target: OpenStackTarget, manifest: Manifest, digest: str) -> str:
    name = format_name(target.name, manifest, digest)
    if not 1 <= len(name) <= 255 or "\n" in name:
        raise UserError(
            f"image name {name!r} (from name = {target.name!r}) is not valid: 1-255 characters",
            file=target.source,
            hint="change name in [targets.openstack]",
        )
    return name


def check_for_upload(target: OpenStackTarget) -> None:
    if target.members and target.visibility != "shared":
        raise UserError(
            f"members are given but visibility is {target.visibility!r}: Glance shares an image with members only when it is shared",
            file=target.source,
            hint='set visibility = "shared" in [targets.openstack]',
        )
