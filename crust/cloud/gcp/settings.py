"""The Google Cloud target's settings: [targets.gcp] in an appliance file, [gcp] in targets.toml.

Credentials are never here: google-auth finds them (Application Default Credentials:
GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login, the metadata server). An
endpoint (storage_endpoint, or STORAGE_EMULATOR_HOST for Cloud Storage; compute_endpoint) points
a service at an emulator or a stand-in, which is spoken to with anonymous credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.build.manifest import Manifest
from crust.cloud.naming import NAME_FIELDS, format_name, parse_name_pattern
from crust.define.settings import Invalid, Setting, parse_int, parse_seconds, parse_str, parse_table
from crust.errors import UserError

DEFAULT_NAME = "crust-{appliance}-{version}-{digest12}"
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")
RESOURCE_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1035: images, families, instances
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
PREFIX_RE = re.compile(r"^([A-Za-z0-9._-]+/)*$")
URL_RE = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._/-]*)?$")
MAX_PARTS = 32  # one compose takes at most 32 sources


def parse_project(value: Any) -> str:
    project = parse_str(value)
    if project and not PROJECT_RE.fullmatch(project):
        raise Invalid(f"{project!r} is not a project id (6-30 lower-case letters, digits, hyphens)")
    return project


def parse_bucket(value: Any) -> str:
    bucket = parse_str(value)
    if bucket and (not BUCKET_RE.fullmatch(bucket) or ".." in bucket):
        raise Invalid(f"{bucket!r} is not a bucket name (3-222 lower-case letters, digits, . _ -)")
    return bucket


def parse_prefix(value: Any) -> str:
    prefix = parse_str(value)
    if not PREFIX_RE.fullmatch(prefix) or "/../" in f"/{prefix}" or "/./" in f"/{prefix}":
        raise Invalid(f"{prefix!r}: folders ending in / (e.g. crust/images/) or empty")
    return prefix


def parse_zone(value: Any) -> str:
    zone = parse_str(value)
    if zone and not ZONE_RE.fullmatch(zone):
        raise Invalid(f"{zone!r} is not a zone (e.g. europe-west1-b)")
    return zone


def parse_resource_name(value: Any) -> str:
    name = parse_str(value)
    if name and not RESOURCE_RE.fullmatch(name):
        raise Invalid(f"{name!r}: 1-63 lower-case letters, digits and hyphens, starting with a letter")
    return name


def parse_path_or_name(value: Any) -> str:
    """A network, subnetwork or machine type: its name, or a path (projects/P/...)."""
    text = parse_str(value)
    if text and not re.fullmatch(r"[a-z0-9][a-z0-9/_-]*", text):
        raise Invalid(f"{text!r} is not a name or resource path (e.g. default, projects/P/global/networks/N)")
    return text


def parse_endpoint(value: Any) -> str:
    url = parse_str(value)
    if url and not URL_RE.fullmatch(url):
        raise Invalid(f"{url!r} is not an http(s) URL (e.g. http://localhost:9023)")
    return url.rstrip("/")


def parse_labels(value: Any) -> Mapping[str, str]:
    table = parse_table(value)
    for key, label in table.items():
        if not isinstance(label, str):
            raise Invalid(f"label {key!r}: expected a string value, got {type(label).__name__}")
        if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(label):
            raise Invalid(f"label {key}={label!r}: keys and values are lower-case letters, digits, _ and -, at most 63")
        if key.startswith("crust"):
            raise Invalid(f"label {key!r}: crust* labels are set by Crust")
    if len(table) > 60:
        raise Invalid("at most 60 labels (Crust sets 4 of the 64)")
    return table


SIZE_RE = re.compile(r"^(\d{1,7})\s*(MiB|GiB|M|G)?$")


def parse_threshold(value: Any) -> int:
    """0 (never compose), or a size in MiB: an integer, "150MiB", "2GiB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        mib = value
    elif isinstance(value, str) and (m := SIZE_RE.match(value)):
        mib = int(m.group(1)) * (1024 if (m.group(2) or "M").startswith("G") else 1)
    else:
        raise Invalid(f'{value!r} is not a size: write e.g. "256MiB", or 0 (never compose)')
    if not 0 <= mib <= 5 * 1024 * 1024:
        raise Invalid(f"{value!r} is out of range (0 to 5TiB, an object's limit)")
    return mib


def parse_parts(value: Any) -> int:
    parts = parse_int(value)
    if not 2 <= parts <= MAX_PARTS:
        raise Invalid(f"{parts}: 2 to {MAX_PARTS} (a compose takes at most {MAX_PARTS} objects)")
    return parts


GCP_SETTINGS: tuple[Setting, ...] = (
    Setting("project", parse_project, "", "Project id (default: the one Application Default Credentials name)."),
    Setting("bucket", parse_bucket, "", "Cloud Storage bucket the image's tar.gz goes to (required for `upload`)."),
    Setting("prefix", parse_prefix, "crust/", "Folder of the bucket for the objects (named DIGEST.tar.gz)."),
    Setting("name", parse_name_pattern, DEFAULT_NAME, "Image name pattern; fields: " + ", ".join(f"{{{f}}}" for f in NAME_FIELDS) + "."),
    Setting("family", parse_resource_name, "", "Image family the image joins (default: none)."),
    Setting("labels", parse_labels, MappingProxyType({}), "Extra labels of images and instances (crust* labels are set by Crust)."),
    Setting("composite_threshold", parse_threshold, 256, 'Objects from this size up are sent as parallel parts then composed ("256MiB"; 0: never).'),
    Setting("composite_parts", parse_parts, 8, "How many parts a composite upload sends at once (2-32)."),
    Setting("zone", parse_zone, "", "Zone for `launch` (e.g. europe-west1-b)."),
    Setting("machine_type", parse_path_or_name, "e2-small", "Machine type for `launch`."),
    Setting("network", parse_path_or_name, "", "Network for `launch` (default: the project's default network)."),
    Setting("subnetwork", parse_path_or_name, "", "Subnetwork for `launch` (a custom-mode network needs one)."),
    Setting("wait_timeout", parse_seconds, 1800.0, "Seconds to wait for an image to be READY or an instance RUNNING."),
    Setting(
        "ssh_key", parse_str, "", "Public key put in the instance's ssh-keys metadata (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub)."
    ),
    Setting("ssh_user", parse_resource_name, "admin", "User of the ssh-keys metadata entry."),
    Setting("cloud_config", parse_table, MappingProxyType({}), "cloud-init configuration (a table) merged into `launch`'s #cloud-config user-data."),
    Setting("storage_endpoint", parse_endpoint, "", "Cloud Storage endpoint (an emulator; default: STORAGE_EMULATOR_HOST, else Google's)."),
    Setting("compute_endpoint", parse_endpoint, "", "Compute Engine endpoint (a stand-in; default: Google's)."),
)


@dataclass(frozen=True)
class GcpTarget:
    project: str
    bucket: str
    prefix: str
    name: str
    family: str
    labels: Mapping[str, str]
    composite_threshold: int  # MiB
    composite_parts: int
    zone: str
    machine_type: str
    network: str
    subnetwork: str
    wait_timeout: float
    ssh_key: Path | None
    ssh_user: str
    cloud_config: Mapping[str, Any]
    storage_endpoint: str
    compute_endpoint: str
    source: Path | None


def image_name(target: GcpTarget, manifest: Manifest, digest: str) -> str:
    """The image's name: the pattern filled in, lower-cased and with . and _ as - (the only
    characters Compute Engine allows are lower-case letters, digits and hyphens)."""
    name = re.sub(r"[._]", "-", format_name(target.name, manifest, digest).lower())
    if not RESOURCE_RE.fullmatch(name):
        raise UserError(
            f"image name {name!r} (from name = {target.name!r}) is not valid: 1-63 lower-case letters, digits and hyphens, starting with a letter",
            file=target.source,
            hint="change name in [targets.gcp] (e.g. crust-{appliance}-{digest12})",
        )
    return name


def check_for_upload(target: GcpTarget) -> None:
    if not target.bucket:
        raise UserError("no bucket for the image", file=target.source, hint='set bucket = "NAME" in [targets.gcp] (a bucket of the project)')


def check_for_launch(target: GcpTarget) -> None:
    if not target.zone:
        raise UserError("no zone for the instance", file=target.source, hint='set zone = "europe-west1-b" (for example) in [targets.gcp]')
