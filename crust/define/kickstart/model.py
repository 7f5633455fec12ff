"""The kickstart as Crust applies it: plain frozen data (KickstartConfig), and its JSON form
(the cache of checked kickstarts)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    password_hash: str  # "" means locked
    shell: str
    homedir: str
    uid: int | None
    gecos: str


@dataclass(frozen=True)
class SshKey:
    username: str
    key: str


@dataclass(frozen=True)
class Repo:
    suite: str
    uri: str
    components: tuple[str, ...]
    pinned: tuple[str, ...]
    excluded: tuple[str, ...]
    keep: bool  # --install: the source stays configured in the image


@dataclass(frozen=True)
class Script:
    body: str
    interpreter: str
    chroot: bool
    line: int


@dataclass(frozen=True)
class Network:
    hostname: str
    device: str
    dhcp: bool
    address: str  # CIDR when static
    gateway: str
    nameservers: tuple[str, ...]


@dataclass(frozen=True)
class KickstartConfig:
    packages: tuple[str, ...]
    excluded: tuple[str, ...]
    repos: tuple[Repo, ...]
    root_password_hash: str  # "" means locked
    users: tuple[User, ...]
    sshkeys: tuple[SshKey, ...]
    timezone: str
    lang: str
    keymap: str
    network: Network
    services_enabled: tuple[str, ...]
    services_disabled: tuple[str, ...]
    root_size_mib: int
    root_grow: bool
    esp_size_mib: int
    kernel_append: tuple[str, ...]
    scripts: tuple[Script, ...]


@dataclass(frozen=True)
class KickstartProblem(Exception):
    line: int | None
    message: str
    hint: str = ""


def to_json(ks: KickstartConfig) -> dict[str, Any]:
    return dataclasses.asdict(ks)


def from_json(data: dict[str, Any]) -> KickstartConfig:
    """The inverse of to_json (for the cache of checked kickstarts)."""
    values = dict(data)
    values["users"] = tuple(User(**{**u, "groups": tuple(u["groups"])}) for u in data["users"])
    values["sshkeys"] = tuple(SshKey(**k) for k in data["sshkeys"])
    values["repos"] = tuple(
        Repo(**{**r, "components": tuple(r["components"]), "pinned": tuple(r["pinned"]), "excluded": tuple(r["excluded"])}) for r in data["repos"]
    )
    values["scripts"] = tuple(Script(**sc) for sc in data["scripts"])
    values["network"] = Network(**{**data["network"], "nameservers": tuple(data["network"]["nameservers"])})
    for key in ("packages", "excluded", "services_enabled", "services_disabled", "kernel_append"):
        values[key] = tuple(data[key])
    return KickstartConfig(**values)
