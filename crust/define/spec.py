"""Appliance definitions: appliances/NAME.toml -> ApplianceSpec.

One table (SETTINGS here, each check type's in crust/checks/) drives parsing, defaults,
validation and the reference printed by ``build.py list --settings``. Unknown keys, wrong types and missing files are errors
that name the file, the line, the key and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.checks import CHECK_TYPES, CheckSpec, parse_check
from crust.checks import reference as checks_reference
from crust.define.inherit import Origins, describe_origin, load_chain, merge_layers
from crust.define.project import Project
from crust.define.settings import (
    REQUIRED,
    Invalid,
    Setting,
    apply_settings,
    parse_bool,
    parse_memory_mib,
    parse_name,
    parse_port_list,
    parse_seconds,
    parse_size_mib,
    parse_str,
    parse_str_list,
    parse_table,
    reference_lines,
)
from crust.define.tomlfile import find_line
from crust.errors import UserError
from crust.formats import FORMATS
from crust.formats import describe as describe_formats


def parse_formats(value: Any) -> tuple[str, ...]:
    formats = parse_str_list(value)
    for fmt in formats:
        if fmt not in FORMATS:
            raise Invalid(f"{fmt!r} is not a known format: use {', '.join(FORMATS)}")
    if "raw" not in formats:
        formats = ("raw", *formats)
    return tuple(dict.fromkeys(formats))


SETTINGS: tuple[Setting, ...] = (
    Setting("name", parse_name, REQUIRED, "Appliance name; must match the file name."),
    Setting("extends", parse_name, "", 'Another appliance in this directory whose keys this file inherits and overrides, e.g. "wsgi" (see README).'),
    Setting("version", parse_str, REQUIRED, 'Appliance version, e.g. "1.0.0".'),
    Setting("description", parse_str, REQUIRED, "One line shown by `build.py list`."),
    Setting("distribution", parse_str, "debian-13", "A file in distributions/ (debian-13, debian-12)."),
    Setting("kickstart", parse_str, REQUIRED, 'Kickstart template in kickstarts/, e.g. "wsgi.ks.j2".'),
    Setting("roles", parse_str_list, (), "Ansible roles from roles/, applied in order."),
    Setting("vars", parse_table, MappingProxyType({}), "Role variables (checked against each role's argument spec)."),
    Setting(
        "image.formats",
        parse_formats,
        ("raw", "qcow2"),
        "Output formats: " + describe_formats() + ".",
    ),
    Setting("image.root_size", parse_size_mib, 2048, 'Root partition size, e.g. "2GiB".'),
    Setting("image.grow", parse_bool, True, "Grow the root partition and filesystem to the disk at first boot."),
    Setting("image.esp_size", parse_size_mib, 64, "EFI system partition size."),
    Setting("image.compress", parse_bool, False, "Compress qcow2 output (zstd)."),
    Setting("security.allow_plaintext_passwords", parse_bool, False, "Allow `rootpw --plaintext` / `user --password` in clear."),
    Setting(
        "security.allow_host_scripts",
        parse_bool,
        False,
        "Allow `%post --nochroot`: a root shell on the build host, not in the image (review such an appliance as code).",
    ),
    Setting(
        "targets", parse_table, MappingProxyType({}), "Cloud targets for upload/launch: [targets.aws] (keys listed below; crust/cloud/targets.py)."
    ),
    Setting("test.ports", parse_port_list, (), "Guest TCP ports to forward to the host for checks."),
    Setting("test.boot_timeout", parse_seconds, 180.0, "Seconds for the whole smoke test."),
    Setting("test.memory", parse_memory_mib, 1024, 'Guest memory for the smoke test, e.g. "2GiB" (256MiB to 16GiB).'),
    Setting(
        "test.boot_analysis",
        parse_bool,
        True,
        "Record systemd-analyze's times, critical chain and blame in the result (about 12 s more per boot under emulation).",
    ),
    Setting("test.module", parse_str, "", "Python check module beside the appliance file (optional)."),
    Setting("test.checks", lambda v: v, (), "Smoke checks, run in order ([[test.checks]] tables)."),
)


@dataclass(frozen=True)
class ImageSpec:
    formats: tuple[str, ...]
    root_size_mib: int
    esp_size_mib: int
    grow: bool
    compress: bool


@dataclass(frozen=True)
class TestSpec:
    ports: tuple[int, ...]
    boot_timeout: float
    module: Path | None
    checks: tuple[CheckSpec, ...]
    memory_mib: int = 1024
    boot_analysis: bool = True


@dataclass(frozen=True)
class ApplianceSpec:
    name: str
    version: str
    description: str
    distribution: str
    kickstart: Path
    roles: tuple[str, ...]
    vars: Mapping[str, Any]
    image: ImageSpec
    allow_plaintext_passwords: bool
    allow_host_scripts: bool
    test: TestSpec
    source: Path
    origins: Origins  # the file and key that set each value (the file itself, or one it extends)
    chain: tuple[Path, ...]  # the files it extends, root first, then itself
    merged: Mapping[str, Any]  # the appliance's keys as merged from the chain (before parsing)


def load_appliance(path: Path, project: Project) -> ApplianceSpec:
    """Parse and check one appliance file (and those it extends). Raises UserError naming the
    file, line and fix: the file that set the value."""
    chain = load_chain(path)
    names: list[list[str]] = []
    for layer in chain:  # each file on its own: its keys known, its values well-formed
        apply_settings(SETTINGS, layer.data, "", layer.path, layer.text, required=False)
        names.append([parse_check(raw, i, layer.path, layer.text).name for i, raw in enumerate(_checks_of(layer.data, layer.path, layer.text))])
    data, origins = merge_layers(chain, names)
    locate = origins.locate
    values = apply_settings(SETTINGS, data, "", path, chain[-1].text, locate)
    if values["name"] != path.stem:
        raise UserError(
            f"name {values['name']!r} does not match the file name", **at(locate, "name"), hint=f'set name = "{path.stem}" or rename the file'
        )
    kickstart = project.kickstarts / values["kickstart"]
    if not kickstart.is_file() or "/" in values["kickstart"]:
        raise UserError(
            f"kickstart: template {values['kickstart']!r} not found in kickstarts/",
            **at(locate, "kickstart"),
            hint='name a file in kickstarts/, e.g. "' + path.stem + '.ks.j2"',
        )
    roles = project.roles
    shown = project.roles_shown()
    for index, role in enumerate(values["roles"]):
        if "/" in role or not (roles / role / "tasks" / "main.yml").is_file():
            raise UserError(
                f"roles[{index}]: role {role!r} not found (no {shown}{role}/tasks/main.yml)",
                **at(locate, f"roles[{index}]"),
                hint=f"name a directory in {shown}",
            )
    if "/" in values["distribution"] or not (project.distributions / f"{values['distribution']}.toml").is_file():
        known = sorted(p.stem for p in project.distributions.glob("*.toml"))
        raise UserError(
            f"distribution {values['distribution']!r} is not defined", **at(locate, "distribution"), hint="use one of " + ", ".join(known)
        )
    raw_checks = _checks_of(data, path, chain[-1].text)
    checks = tuple(
        parse_check(raw, int(there[there.rindex("[") + 1 : -1]), file, origins.texts[file])
        for raw, (file, there) in _check_origins(raw_checks, origins)
    )
    module: Path | None = None
    if values["test.module"]:
        module_file = origins.file("test.module")
        module = module_file.parent / values["test.module"]
        if "/" in values["test.module"] or not module.is_file():
            raise UserError(
                f"test.module: {values['test.module']!r} not found beside the appliance file",
                **at(locate, "test.module"),
                hint=f'name a file beside it, e.g. "{path.stem}_checks.py"' if "/" in values["test.module"] else f"create {module} or remove the key",
            )
    for i, check in enumerate(checks):
        if CHECK_TYPES[check.type].needs_module and module is None:
            raise UserError(f"a {check.type} check needs test.module", **at(locate, f"test.checks[{i}]"), hint='set test.module = "NAME_checks.py"')
    for i, check in enumerate(checks):
        port = check.options.get("port")
        if port is not None and port not in values["test.ports"]:
            file, line = locate(f"test.checks[{i}].port")
            raise UserError(
                f"test.checks[{i}].port: guest port {port} is not forwarded",
                file=file,
                line=line or locate(f"test.checks[{i}]")[1],
                hint=f"add {port} to test.ports",
            )
    return ApplianceSpec(
        name=values["name"],
        version=values["version"],
        description=values["description"],
        distribution=values["distribution"],
        kickstart=kickstart,
        roles=values["roles"],
        vars=values["vars"],
        image=ImageSpec(
            formats=values["image.formats"],
            root_size_mib=values["image.root_size"],
            esp_size_mib=values["image.esp_size"],
            grow=values["image.grow"],
            compress=values["image.compress"],
        ),
        allow_plaintext_passwords=values["security.allow_plaintext_passwords"],
        allow_host_scripts=values["security.allow_host_scripts"],
        test=TestSpec(
            ports=values["test.ports"],
            boot_timeout=values["test.boot_timeout"],
            module=module,
            checks=checks,
            memory_mib=values["test.memory"],
            boot_analysis=values["test.boot_analysis"],
        ),
        source=path,
        origins=origins,
        chain=tuple(layer.path for layer in chain),
        merged=MappingProxyType(data),
    )


def at(locate: Callable[[str], tuple[Path, int | None]], key: str) -> dict[str, Any]:
    """file= and line= of a UserError about this key."""
    file, line = locate(key)
    return {"file": file, "line": line}


def _checks_of(data: Mapping[str, Any], path: Path, text: str) -> list[Any]:
    test = data.get("test", {})
    raw = test.get("checks", []) if isinstance(test, Mapping) else []
    if not isinstance(raw, list):
        raise UserError("test.checks must be an array of tables", file=path, line=find_line(text, "test.checks"), hint="write [[test.checks]] tables")
    return raw


def _check_origins(raw_checks: list[Any], origins: Origins) -> list[tuple[Any, tuple[Path, str]]]:
    return [(raw, origins.keys.get(f"test.checks[{i}]", (origins.own, f"test.checks[{i}]"))) for i, raw in enumerate(raw_checks)]


def explain_settings(spec: ApplianceSpec) -> list[str]:
    """Each key of the appliance as merged, its value and the file:line that set it."""
    rows: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and prefix not in ("targets",) and not prefix.startswith("test.checks["):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, list) and prefix == "test.checks":
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        else:
            rows.append((prefix, value))

    walk("", spec.merged)
    width = max((len(k) for k, _ in rows), default=0)
    return [f"  {key:{width}}  {value!r}  ({describe_origin(spec.origins, key)})" for key, value in rows]


def settings_reference() -> str:
    """The appliance file reference, generated from the settings tables."""
    return "\n".join(["Appliance file keys (appliances/NAME.toml):", *reference_lines(SETTINGS), *EXTENDS_RULES, *checks_reference()])


EXTENDS_RULES = [
    "",
    'A file with extends = "PARENT" inherits PARENT.toml (beside it) and overrides keys:',
    "  name is never inherited; vars merge variable by variable (the file's value wins);",
    "  roles are the parent's, then the file's own that the parent lacks; a [[test.checks]] table",
    "  replaces the parent's check of the same name (its name, or the one Crust gives it), the others",
    "  follow the parent's; [targets.*] merge key by key; every other key: the file's value wins.",
    "  `validate NAME --explain` prints each key's value and the file and line that set it.",
]
