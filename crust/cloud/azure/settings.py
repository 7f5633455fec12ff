"""The Azure target's settings: [targets.azure] in an appliance file, [azure] in targets.toml.

Credentials are never here. The management side (images, VMs, NICs) signs in as the Azure SDK
does by default (DefaultAzureCredential: AZURE_CLIENT_ID/..., a managed identity, `az login`);
the blob side takes AZURE_STORAGE_CONNECTION_STRING, else AZURE_STORAGE_KEY for the
storage_account, else the same DefaultAzureCredential."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from crust.build.manifest import Manifest
from crust.cloud.naming import NAME_FIELDS, format_name, parse_name_pattern
from crust.define.settings import Invalid, Setting, parse_bool, parse_int, parse_seconds, parse_str, parse_table
from crust.errors import UserError

DEFAULT_NAME = "crust-{appliance}-{version}-{digest12}"
PUBLIC_ARM = "https://management.azure.com"
SUBSCRIPTION_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
GROUP_RE = re.compile(r"^[-\w._()]{1,89}[-\w_()]$")
LOCATION_RE = re.compile(r"^[a-z][a-z0-9]{1,39}$")
ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
CONTAINER_RE = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
VM_SIZE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{1,63}$")
GALLERY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SUBNET_RE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+$", re.IGNORECASE)
RESERVED_USERS = ("root", "admin", "administrator", "adm", "bin", "daemon", "sys", "sync", "games", "guest", "user", "test")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def matching(pattern: re.Pattern[str], what: str) -> Any:
    def parse(value: Any) -> str:
        text = parse_str(value)
        if text and not pattern.fullmatch(text):
            raise Invalid(f"{text!r} is not {what}")
        return text

    return parse


def parse_user(value: Any) -> str:
    user = matching(USER_RE, "a Linux user name (lower-case, up to 32)")(value)
    if user in RESERVED_USERS:
        raise Invalid(f"{user!r} is a name Azure refuses for the admin user")
    return str(user)


def parse_endpoint(value: Any) -> str:
    """https://..., or http:// on loopback only (a stand-in): a token is never sent in clear."""
    url = parse_str(value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return url
    raise Invalid(f"{url!r}: use an https:// URL (http:// only on 127.0.0.1 or localhost)")


def parse_workers(value: Any) -> int:
    workers = parse_int(value)
    if not 1 <= workers <= 32:
        raise Invalid(f"{workers}: use 1 to 32")
    return workers


AZURE_SETTINGS: tuple[Setting, ...] = (
    Setting("subscription", matching(SUBSCRIPTION_RE, "a subscription id (a UUID)"), "", "Subscription id (default: AZURE_SUBSCRIPTION_ID)."),
    Setting("resource_group", matching(GROUP_RE, "a resource group name"), "", "Resource group of the images, VMs, NICs and public IPs."),
    Setting(
        "location", matching(LOCATION_RE, "an Azure location (e.g. westeurope)"), "", "Azure location (region) of what Crust makes, e.g. westeurope."
    ),
    Setting(
        "storage_account",
        matching(ACCOUNT_RE, "a storage account name (3-24 lower-case letters and digits)"),
        "",
        "Storage account of the VHD blobs (not needed with AZURE_STORAGE_CONNECTION_STRING).",
    ),
    Setting("container", matching(CONTAINER_RE, "a blob container name"), "crust-images", "Blob container of the VHDs (made if missing)."),
    Setting("name", parse_name_pattern, DEFAULT_NAME, "Managed image name pattern; fields: " + ", ".join(f"{{{f}}}" for f in NAME_FIELDS) + "."),
    Setting(
        "gallery",
        matching(GALLERY_RE, "a gallery name (letters, digits, _ and .)"),
        "",
        "Azure compute gallery (in resource_group): upload adds an image version there instead of making a managed image.",
    ),
    Setting(
        "gallery_image",
        matching(GALLERY_RE, "an image definition name"),
        "",
        "Image definition in the gallery, Linux, generalized, V2 (default: the appliance's name).",
    ),
    Setting("workers", parse_workers, 4, "Pages sent at once (each at most 4 MiB, with its MD5)."),
    Setting("vm_size", matching(VM_SIZE_RE, "a VM size (e.g. Standard_B2s)"), "Standard_B2s", "VM size for `launch`."),
    Setting(
        "subnet",
        matching(SUBNET_RE, "a subnet resource id (/subscriptions/.../subnets/NAME)"),
        "",
        "Subnet resource id of the VM's NIC for `launch`.",
    ),
    Setting("public_ip", parse_bool, False, "Give the VM a static public IP address (Standard SKU)."),
    Setting("admin_user", parse_user, "crust", "The VM's admin user, who gets the SSH key."),
    Setting("ssh_key", parse_str, "", "Public key file of the admin user (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub)."),
    Setting(
        "cloud_config", parse_table, MappingProxyType({}), "cloud-init configuration (a table) merged into `launch`'s #cloud-config custom data."
    ),
    Setting("wait_timeout", parse_seconds, 1800.0, "Seconds to wait for an image or a VM to be provisioned."),
    Setting("management_endpoint", parse_endpoint, PUBLIC_ARM, "Azure Resource Manager endpoint (another cloud, or a stand-in)."),
)


@dataclass(frozen=True)
class AzureTarget:
    subscription: str
    resource_group: str
    location: str
    storage_account: str
    container: str
    name: str
    gallery: str
    gallery_image: str
    workers: int
    vm_size: str
    subnet: str
    public_ip: bool
    admin_user: str
    ssh_key: Path | None
    cloud_config: Mapping[str, Any]
    wait_timeout: float
    management_endpoint: str
    source: Path | None


def image_name(target: AzureTarget, manifest: Manifest, digest: str) -> str:
    name = format_name(target.name, manifest, digest)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]", name):
        raise UserError(
            f"image name {name!r} (from name = {target.name!r}) is not valid: 2-80 letters, digits, _ . -, ending in a letter, digit or _",
            file=target.source,
            hint="change name in [targets.azure]",
        )
    return name


def require(target: AzureTarget, *keys: str) -> None:
    """Each key is set, or a one-line error naming it."""
    for key in keys:
        if not getattr(target, key):
            raise UserError(
                f"no {key} for the Azure target", file=target.source, hint=f'set {key} = "..." in [targets.azure] (or [azure] of targets.toml)'
            )
