"""The AWS target's settings: [targets.aws] in an appliance file, [aws] in targets.toml.

Credentials never appear here: boto3 finds them (profiles, environment, roles).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.build.manifest import Manifest
from crust.cloud.naming import NAME_FIELDS, format_name, parse_name_pattern
from crust.define.settings import Invalid, Setting, parse_int, parse_seconds, parse_str, parse_str_list, parse_table
from crust.errors import UserError

METHODS = ("ebs", "s3-import")
DEFAULT_NAME = "{appliance}-{version}-{digest12}"
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
AMI_NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./'@_-]{3,128}$")
RESERVED_TAG_PREFIXES = ("aws:", "crust:")


def parse_region(value: Any) -> str:
    region = parse_str(value)
    if not REGION_RE.fullmatch(region):  # fullmatch: `$` would let a trailing newline through
        raise Invalid(f"{region!r} is not an AWS region name (e.g. eu-west-1)")
    return region


def parse_regions(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid("expected a list of region names")
    return tuple(dict.fromkeys(parse_region(v) for v in value))


def parse_accounts(value: Any) -> tuple[str, ...]:
    accounts = parse_str_list(value)
    for account in accounts:
        if not ACCOUNT_RE.fullmatch(account):
            raise Invalid(f"{account!r} is not an AWS account id (12 digits, as a string)")
    return tuple(dict.fromkeys(accounts))


def parse_tags(value: Any) -> Mapping[str, str]:
    table = parse_table(value)
    for key, tag in table.items():
        if not isinstance(tag, str):
            raise Invalid(f"tag {key!r}: expected a string value, got {type(tag).__name__}")
        if key.lower().startswith(RESERVED_TAG_PREFIXES):
            raise Invalid(f"tag {key!r}: keys starting with {' or '.join(RESERVED_TAG_PREFIXES)} are reserved")
        if not 1 <= len(key) <= 128 or len(tag) > 256:
            raise Invalid(f"tag {key!r}: keys are 1-128 characters, values at most 256")
    return table


def parse_prefixed(prefix: str) -> Any:
    def parse(value: Any) -> str:
        text = parse_str(value)
        if not re.fullmatch(rf"{prefix}-[0-9a-f]{{8,17}}", text):
            raise Invalid(f"{text!r} is not a {prefix} id ({prefix}-0123456789abcdef0)")
        return text

    return parse


def parse_security_groups(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid("expected a list of security group ids")
    return tuple(parse_prefixed("sg")(v) for v in value)


def parse_method(value: Any) -> str:
    method = parse_str(value)
    if method not in METHODS:
        raise Invalid(f"{method!r} is not an upload method: use {' or '.join(METHODS)}")
    return method


def parse_workers(value: Any) -> int:
    workers = parse_int(value)
    if not 1 <= workers <= 64:
        raise Invalid(f"{workers} workers: use 1 to 64")
    return workers


def parse_attempts(value: Any) -> int:
    attempts = parse_int(value)
    if not 1 <= attempts <= 20:
        raise Invalid(f"{attempts} attempts: use 1 to 20")
    return attempts


def parse_volume_gib(value: Any) -> int:
    size = parse_int(value)
    if not 0 <= size <= 16384:
        raise Invalid(f"{size} GiB: use 1 to 16384 (0: the image's size)")
    return size


def parse_instance_type(value: Any) -> str:
    text = parse_str(value)
    if not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9]+", text):
        raise Invalid(f"{text!r} is not an instance type (e.g. t3.small)")
    return text


AWS_SETTINGS: tuple[Setting, ...] = (
    Setting("region", parse_region, "", "Region the image is uploaded to (default: --region, then boto3's default region)."),
    Setting("copy_to", parse_regions, (), "Extra regions the AMI is copied to (copy_image)."),
    Setting("share_with", parse_accounts, (), "Account ids the AMIs (and their snapshots) are shared with."),
    Setting("name", parse_name_pattern, DEFAULT_NAME, "AMI name pattern; fields: " + ", ".join(f"{{{f}}}" for f in NAME_FIELDS) + "."),
    Setting("tags", parse_tags, MappingProxyType({}), "Extra tags for snapshots, AMIs and instances (crust:* tags are added)."),
    Setting("method", parse_method, "ebs", "Upload method: ebs (EBS direct APIs, no bucket) or s3-import (S3 + import-snapshot)."),
    Setting("bucket", parse_str, "", "S3 bucket for --method s3-import (the object is deleted after the import)."),
    Setting("import_role", parse_str, "vmimport", "IAM role import-snapshot uses to read the bucket."),
    Setting("workers", parse_workers, 8, "Parallel upload workers."),
    Setting("root_volume_size", parse_volume_gib, 0, "Root volume size of the AMI in GiB (0: the image's size, rounded up)."),
    Setting("connect_timeout", parse_seconds, 10.0, "Seconds to connect to an AWS endpoint."),
    Setting("read_timeout", parse_seconds, 60.0, "Seconds to wait for an AWS response."),
    Setting("max_attempts", parse_attempts, 5, "Attempts per AWS call (botocore standard retry mode, bounded by its retry quota)."),
    Setting("wait_timeout", parse_seconds, 3600.0, "Seconds to wait for an AMI, a copy, an import or an instance to be ready."),
    Setting("instance_type", parse_instance_type, "t3.small", "Instance type for `launch`."),
    Setting("subnet", parse_prefixed("subnet"), "", "Subnet id for `launch` (default: the default VPC)."),
    Setting("security_groups", parse_security_groups, (), "Security group ids for `launch`."),
    Setting("ssh_key", parse_str, "", "Public key file put in the user data by `launch` (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub)."),
    Setting("cloud_config", parse_table, MappingProxyType({}), "cloud-init configuration (a table) merged into `launch`'s #cloud-config user data."),
)


@dataclass(frozen=True)
class AwsTarget:
    region: str
    copy_to: tuple[str, ...]
    share_with: tuple[str, ...]
    name: str
    tags: Mapping[str, str]
    method: str
    bucket: str
    import_role: str
    workers: int
    root_volume_size: int
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    wait_timeout: float
    instance_type: str
    subnet: str
    security_groups: tuple[str, ...]
    ssh_key: Path | None
    cloud_config: Mapping[str, Any]
    source: Path | None  # the file that declared it (for error messages), None for defaults

    def replace(self, **changes: Any) -> AwsTarget:
        """A copy with command-line overrides (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def regions(self) -> tuple[str, ...]:
        return (self.region, *[r for r in self.copy_to if r != self.region])


def where_declared(target: AwsTarget) -> str:
    if target.source is None:
        return "[targets.aws] in the appliance file or [aws] in targets.toml"
    return str(target.source)


def image_name(target: AwsTarget, manifest: Manifest, digest: str) -> str:
    """The AMI name from the target's pattern; an invalid result is a UserError naming the key."""
    name = format_name(target.name, manifest, digest)
    if not AMI_NAME_RE.fullmatch(name):
        raise UserError(
            f"AMI name {name!r} (from name = {target.name!r}) is not valid: 3-128 letters, digits, spaces and ()[]./-'@_",
            file=target.source,
            hint="change the name pattern in " + where_declared(target),
        )
    return name


def check_for_upload(target: AwsTarget) -> None:
    """Checks that need the merged target and the chosen method (before any AWS call)."""
    if target.method == "s3-import" and not target.bucket:
        raise UserError("--method s3-import needs a bucket", file=target.source, hint='set bucket = "NAME" in ' + where_declared(target))
