"""Distributions are data: distributions/NAME.toml (suites, sources, keyring, package names).

Adding a distribution means adding a file, not code. Source URIs are rewritten to the host's
configured apt mirror for the same archive (matched by the last path component, e.g.
``debian`` or ``debian-security``), so builds use whatever mirror the host uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crust.define.project import Project
from crust.define.settings import REQUIRED, Invalid, Setting, apply_settings, parse_str, parse_str_list
from crust.define.tomlfile import find_line, load_toml
from crust.errors import UserError

UKI_METHODS = ("ukify", "objcopy")
HOST_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))


def parse_uki(value: Any) -> str:
    text = parse_str(value)
    if text not in UKI_METHODS:
        raise Invalid(f"{text!r} is not a UKI method: use {', '.join(UKI_METHODS)}")
    return text


def names_matching(pattern: str, what: str, fix: str) -> Callable[[Any], tuple[str, ...]]:
    """A parser of a list of names, each of which must match pattern (they reach file names
    and shell scripts in the tree)."""
    compiled = re.compile(pattern)

    def parse(value: Any) -> tuple[str, ...]:
        names = parse_str_list(value)
        for name in names:
            if not compiled.match(name):
                raise Invalid(f"{name!r} is not {what}: {fix}")
        return names

    return parse


parse_unit_list = names_matching(
    r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|timer|mount|automount|path|swap|target)$",
    "a systemd unit name",
    "use NAME.service, NAME@INSTANCE.service, NAME.mount ...",
)
parse_module_list = names_matching(r"^[A-Za-z0-9_-]+$", "a kernel module name", "letters, digits, '_' and '-' only")


def parse_backend(value: Any) -> str:
    from crust.distros import backends

    text = parse_str(value)
    if text not in backends():
        raise Invalid(f"{text!r} is not a package manager backend: use {', '.join(backends())}")
    return text


DISTRO_SETTINGS: tuple[Setting, ...] = (
    Setting("name", parse_str, REQUIRED, "Distribution name; matches the file name."),
    Setting("backend", parse_backend, "apt", "Package manager backend (crust/distros/): apt."),
    Setting("description", parse_str, REQUIRED, 'Human name, e.g. "Debian 13 (trixie)".'),
    Setting("suite", parse_str, REQUIRED, "Main suite passed to mmdebstrap."),
    Setting("keyring", parse_str, "/usr/share/keyrings/debian-archive-keyring.gpg", "Keyring that signs the suites."),
    Setting("uki", parse_uki, "ukify", "How the UKI is built: ukify (inside the tree) or objcopy (host)."),
    Setting("base_packages", parse_str_list, REQUIRED, "Packages of the shared base tree."),
    Setting("grow_packages", parse_str_list, (), "Extra packages that grow the root at first boot."),
    Setting("masked_generators", parse_str_list, (), "systemd generators masked in every image (boot time)."),
    Setting("masked_units", parse_unit_list, (), "systemd units masked in every image: boot work no appliance needs."),
    Setting("initramfs_modules", parse_module_list, (), "Kernel modules in the initramfs (MODULES=list); empty keeps Debian's MODULES=most."),
    Setting("sources", lambda v: v, REQUIRED, "[[sources]] tables: uri, suites, components."),
)


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


@dataclass(frozen=True)
class Distribution:
    name: str
    description: str
    suite: str
    backend: str
    keyring: str
    uki: str
    base_packages: tuple[str, ...]
    grow_packages: tuple[str, ...]
    initramfs_modules: tuple[str, ...]
    masked_generators: tuple[str, ...]
    masked_units: tuple[str, ...]
    sources: tuple[Source, ...]

    @property
    def mirror(self) -> str:
        """URI of the main archive (the first source), for templates and extra repos."""
        return self.sources[0].uri

    def deb822(self) -> str:
        """The apt sources of this distribution, in deb822 format."""
        stanzas = []
        for src in self.sources:
            stanzas.append(
                f"Types: deb\nURIs: {src.uri}\nSuites: {' '.join(src.suites)}\nComponents: {' '.join(src.components)}\nSigned-By: {self.keyring}\n"
            )
        return "\n".join(stanzas)


def host_mirrors(paths: tuple[Path, ...] = HOST_SOURCES) -> dict[str, str]:
    """Archive name (last URI path component) -> URI, from the host's apt configuration."""
    found: dict[str, str] = {}
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.glob("*.sources")) + sorted(path.glob("*.list"))
        elif path.is_file():
            files.append(path)
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        uris = re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
        uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M)
        for uri in uris:
            archive = uri.rstrip("/").rsplit("/", 1)[-1]
            found.setdefault(archive, uri.rstrip("/"))
    return found


def load_distribution(project: Project, name: str, mirrors: dict[str, str] | None = None) -> Distribution:
    path = project.distributions / f"{name}.toml"
    data, text = load_toml(path)
    values = apply_settings(DISTRO_SETTINGS, data, "", path, text)
    if values["name"] != name:
        raise UserError(f"name {values['name']!r} does not match the file name", file=path, line=find_line(text, "name"), hint=f'set name = "{name}"')
    mirrors = host_mirrors() if mirrors is None else mirrors
    sources = []
    raw_sources = values["sources"]
    if not isinstance(raw_sources, list) or not raw_sources:
        raise UserError(
            "sources must be a non-empty array of tables",
            file=path,
            line=find_line(text, "sources"),
            hint="add [[sources]] tables with uri, suites, components",
        )
    for i, raw in enumerate(raw_sources):
        table = (
            Setting("uri", parse_str, REQUIRED, "Archive URI; replaced by the host's mirror for the same archive."),
            Setting("suites", parse_str_list, REQUIRED, "Suites of this archive."),
            Setting("components", parse_str_list, ("main",), "Components."),
        )
        if not isinstance(raw, dict):
            raise UserError(f"sources[{i}] must be a table", file=path, hint="write [[sources]] tables")
        src = apply_settings(table, raw, f"sources[{i}].", path, text)
        archive = src["uri"].rstrip("/").rsplit("/", 1)[-1]
        sources.append(Source(mirrors.get(archive, src["uri"].rstrip("/")), src["suites"], src["components"]))
    return Distribution(
        name=name,
        description=values["description"],
        suite=values["suite"],
        backend=values["backend"],
        keyring=values["keyring"],
        uki=values["uki"],
        base_packages=values["base_packages"],
        grow_packages=values["grow_packages"],
        initramfs_modules=values["initramfs_modules"],
        masked_generators=values["masked_generators"],
        masked_units=values["masked_units"],
        sources=tuple(sources),
    )
