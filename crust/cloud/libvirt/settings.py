"""The libvirt target's settings: [targets.libvirt] in an appliance file, [libvirt] in
targets.toml. The host is a libvirt URI (qemu:///system here, qemu+ssh://HOST/system for
another machine: libvirt's own SSH transport and its keys); no credential is stored here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.build.manifest import Manifest
from crust.cloud.naming import NAME_FIELDS, format_name, parse_name_pattern
from crust.define.settings import Invalid, Setting, parse_int, parse_seconds, parse_size_mib, parse_str, parse_table
from crust.errors import UserError

DEFAULT_NAME = "crust-{appliance}-{version}-{digest12}"
URI_RE = re.compile(r"^qemu(\+[a-z]+)?://[A-Za-z0-9.@:_\[\]-]*/(system|session)(\?[A-Za-z0-9=&_./-]*)?$")
OBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
VOLUME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}$")
DOMAIN_TYPES = ("auto", "kvm", "qemu")


def parse_uri(value: Any) -> str:
    uri = parse_str(value)
    if not URI_RE.fullmatch(uri):
        raise Invalid(f"{uri!r} is not a qemu libvirt URI (qemu:///system, qemu+ssh://HOST/system)")
    return uri


def parse_object_name(value: Any) -> str:
    name = parse_str(value)
    if not OBJECT_RE.fullmatch(name):
        raise Invalid(f"{name!r} is not a libvirt object name (letters, digits, _ . + -; at most 64)")
    return name


def parse_memory(value: Any) -> int:
    mib = parse_size_mib(value)
    if not 256 <= mib <= 1024 * 1024:
        raise Invalid(f"{value!r} is out of range (256MiB to 1TiB)")
    return mib


def parse_vcpus(value: Any) -> int:
    count = parse_int(value)
    if not 1 <= count <= 256:
        raise Invalid(f"{count} vCPUs: use 1 to 256")
    return count


def parse_domain_type(value: Any) -> str:
    kind = parse_str(value)
    if kind not in DOMAIN_TYPES:
        raise Invalid(f"{kind!r}: use {', '.join(DOMAIN_TYPES)}")
    return kind


LIBVIRT_SETTINGS: tuple[Setting, ...] = (
    Setting("uri", parse_uri, "qemu:///system", "libvirt URI of the host (qemu:///system, qemu+ssh://HOST/system)."),
    Setting("pool", parse_object_name, "default", "Storage pool the image is uploaded into and machines' volumes are made in."),
    Setting(
        "network",
        parse_object_name,
        "auto",
        'libvirt network of launched machines; "user": qemu user-mode networking (no host setup); "auto": "default" when the host has it active, else "user".',
    ),
    Setting("memory", parse_memory, 1024, 'Memory of a launched machine ("2GiB", "512MiB").'),
    Setting("vcpus", parse_vcpus, 2, "vCPUs of a launched machine."),
    Setting("domain_type", parse_domain_type, "auto", "auto (kvm when the host offers it, else qemu), kvm, or qemu (emulation)."),
    Setting("name", parse_name_pattern, DEFAULT_NAME, "Image volume name pattern; fields: " + ", ".join(f"{{{f}}}" for f in NAME_FIELDS) + "."),
    Setting("wait_timeout", parse_seconds, 900.0, "Seconds to wait for a launched machine's guest agent (a machine without KVM boots slowly)."),
    Setting("ssh_key", parse_str, "", "Public key file put in the user data by `launch` (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub)."),
    Setting("cloud_config", parse_table, MappingProxyType({}), "cloud-init configuration (a table) merged into `launch`'s #cloud-config user data."),
)


@dataclass(frozen=True)
class LibvirtTarget:
    uri: str
    pool: str
    network: str
    memory: int
    vcpus: int
    domain_type: str
    name: str
    wait_timeout: float
    ssh_key: Path | None
    cloud_config: Mapping[str, Any]
    source: Path | None  # the file that declared it, None for defaults


def volume_name(target: LibvirtTarget, manifest: Manifest, digest: str) -> str:
    """The image volume's name (the pattern, then .qcow2); an invalid one names the key."""
    name = format_name(target.name, manifest, digest)
    if not VOLUME_RE.fullmatch(name):
        raise UserError(
            f"volume name {name!r} (from name = {target.name!r}) is not valid: letters, digits, _ . + -",
            file=target.source,
            hint="change name in [targets.libvirt] (or [libvirt] in targets.toml)",
        )
    return f"{name}.qcow2"
