"""Appliance definitions: appliances/NAME.toml -> ApplianceSpec.

One table (SETTINGS, CHECK_SETTINGS) drives parsing, defaults, validation and the reference
printed by ``build.py help-settings``. Unknown keys, wrong types and missing files are errors
that name the file, the line, the key and the fix.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.define.tomlfile import find_line, load_toml
from crust.errors import UserError

FORMATS = ("raw", "qcow2", "vmdk", "vhd", "ova")
CHECK_TYPES = ("tcp", "http", "unit", "command", "no_failed_units", "python")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")


class Invalid(ValueError):
    """A value failed its setting's parser: the message says what is expected."""


def parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {type(value).__name__}")
    return value


def parse_name(value: Any) -> str:
    text = parse_str(value)
    if not NAME_RE.fullmatch(text):  # fullmatch: `$` would let a trailing newline through
        raise Invalid(f"{text!r} is not a valid name: use 2-40 lower-case letters, digits and '-'")
    return text


def parse_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected an integer, got {type(value).__name__}")
    return value


def parse_port(value: Any) -> int:
    port = parse_int(value)
    if not 1 <= port <= 65535:
        raise Invalid(f"{port} is not a port number (1-65535)")
    return port


def parse_seconds(value: Any) -> float:
    try:
        seconds = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer too large for a float
        seconds = math.nan
    if not 0 < seconds < math.inf:  # nan and inf too
        raise Invalid("expected a positive number of seconds")
    return seconds


def parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {type(value).__name__}")
    return value


def parse_str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid("expected a list of strings")
    return tuple(value)


def parse_port_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise Invalid("expected a list of port numbers")
    return tuple(parse_port(v) for v in value)


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(MiB|M|GiB|G)?\s*$")


def parse_size_mib(value: Any) -> int:
    """'2GiB', '512MiB', '2G' or an integer number of MiB."""
    if isinstance(value, int) and not isinstance(value, bool):
        mib = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
        mib = int(m.group(1)) * (1024 if (m.group(2) or "M").startswith("G") else 1)
    else:
        raise Invalid(f'{value!r} is not a size: write e.g. "2GiB" or "512MiB"')
    if not 64 <= mib <= 1024 * 1024:
        raise Invalid(f"{value!r} is out of range (64MiB to 1TiB)")
    return mib


def parse_formats(value: Any) -> tuple[str, ...]:
    formats = parse_str_list(value)
    for fmt in formats:
        if fmt not in FORMATS:
            raise Invalid(f"{fmt!r} is not a known format: use {', '.join(FORMATS)}")
    if "raw" not in formats:
        formats = ("raw", *formats)
    return tuple(dict.fromkeys(formats))


def parse_table(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Invalid("expected a table")
    return MappingProxyType(dict(value))


def parse_regex(value: Any) -> str:
    text = parse_str(value)
    try:
        re.compile(text)
    except re.error as exc:
        raise Invalid(f"not a valid regular expression: {exc}") from None
    return text


def parse_headers(value: Any) -> Mapping[str, str]:
    table = parse_table(value)
    for name, pattern in table.items():
        parse_regex(pattern)
        if not re.fullmatch(r"[A-Za-z0-9-]+", name):
            raise Invalid(f"{name!r} is not an HTTP header name")
    return table


def parse_http_path(value: Any) -> str:
    path = parse_str(value)
    if not path.startswith("/"):
        raise Invalid(f"{path!r} must start with '/'")
    return path


REQUIRED = object()


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("name", parse_name, REQUIRED, "Appliance name; must match the file name."),
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
        "Output formats: raw (always), qcow2, vmdk (streamOptimized), vhd (fixed, 1 MiB aligned), ova (OVF + vmdk).",
    ),
    Setting("image.root_size", parse_size_mib, 2048, 'Root partition size, e.g. "2GiB".'),
    Setting("image.grow", parse_bool, True, "Grow the root partition and filesystem to the disk at first boot."),
    Setting("image.esp_size", parse_size_mib, 64, "EFI system partition size."),
    Setting("image.compress", parse_bool, False, "Compress qcow2 output (zstd)."),
    Setting("security.allow_plaintext_passwords", parse_bool, False, "Allow `rootpw --plaintext` / `user --password` in clear."),
    Setting("targets", parse_table, MappingProxyType({}), "Cloud targets for upload/launch: [targets.aws] (keys listed below; crust/targets.py)."),
    Setting("test.ports", parse_port_list, (), "Guest TCP ports to forward to the host for checks."),
    Setting("test.boot_timeout", parse_seconds, 180.0, "Seconds for the whole smoke test."),
    Setting("test.module", parse_str, "", "Python check module beside the appliance file (optional)."),
    Setting("test.checks", lambda v: v, (), "Smoke checks, run in order ([[test.checks]] tables)."),
)

CHECK_SETTINGS: Mapping[str, tuple[Setting, ...]] = {
    "*": (
        Setting("type", parse_str, REQUIRED, "One of " + ", ".join(CHECK_TYPES) + "."),
        Setting("name", parse_str, "", "Shown in reports; defaults to a description of the check."),
        Setting("timeout", parse_seconds, 60.0, "Seconds this check may retry before it fails."),
    ),
    "tcp": (Setting("port", parse_port, REQUIRED, "Guest port that must accept a connection."),),
    "http": (
        Setting("port", parse_port, 80, "Guest port."),
        Setting("path", parse_http_path, "/", "Request path."),
        Setting("status", parse_int, 200, "Expected status."),
        Setting("body", parse_str, "", "Substring the body must contain."),
        Setting("body_regex", parse_regex, "", "Regex the body must match."),
        Setting("headers", parse_headers, MappingProxyType({}), "Header name -> regex its value must match."),
    ),
    "unit": (Setting("unit", parse_str, REQUIRED, "systemd unit that must be active."),),
    "command": (
        Setting("argv", parse_str_list, REQUIRED, "Command run in the guest through the guest agent."),
        Setting("status", parse_int, 0, "Expected exit status."),
        Setting("output", parse_regex, "", "Regex the output must match."),
    ),
    "no_failed_units": (),
    "python": (Setting("function", parse_str, REQUIRED, "Function in test.module: f(ctx) raises on failure."),),
}


@dataclass(frozen=True)
class CheckSpec:
    type: str
    name: str
    timeout: float
    options: Mapping[str, Any]


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
    test: TestSpec
    source: Path


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]!r}?" if close else "remove it; known keys: " + ", ".join(known)


def _flatten(data: Mapping[str, Any], known_tables: set[str], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted in known_tables:
            flat.update(_flatten(value, known_tables, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _apply(table: tuple[Setting, ...], data: Mapping[str, Any], where: str, path: Path, text: str) -> dict[str, Any]:
    tables = {s.key.rsplit(".", 1)[0] for s in table if "." in s.key}
    flat = _flatten(data, tables)
    known = [s.key for s in table]
    values: dict[str, Any] = {}
    for key in flat:
        if key in tables:
            full = where + key
            raise UserError(f"{full} must be a table", file=path, line=find_line(text, full), hint=f"write [{full}] with its keys below it")
        if key not in known:
            full = where + key
            raise UserError(f"unknown key {full!r}", file=path, line=find_line(text, full), hint=_suggest(key, known))
    for setting in table:
        full = where + setting.key
        if setting.key not in flat:
            if setting.default is REQUIRED:
                raise UserError(
                    f"missing key {full!r}",
                    file=path,
                    line=find_line(text, where.rstrip(".")) if where else None,
                    hint=f"add it: {setting.help}",
                )
            values[setting.key] = setting.default
            continue
        try:
            values[setting.key] = setting.parse(flat[setting.key])
        except Invalid as exc:
            raise UserError(f"{full}: {exc}", file=path, line=find_line(text, full), hint=setting.help) from None
    return values


def _parse_check(raw: Any, index: int, path: Path, text: str) -> CheckSpec:
    where = f"test.checks[{index}]."
    if not isinstance(raw, dict):
        raise UserError(f"{where[:-1]} must be a table", file=path, line=find_line(text, "test.checks"), hint="write [[test.checks]] tables")
    kind = raw.get("type")
    if kind not in CHECK_TYPES:
        raise UserError(
            f"{where}type: {kind!r} is not a check type",
            file=path,
            line=find_line(text, where + "type") or find_line(text, where[:-1]),
            hint="use one of " + ", ".join(CHECK_TYPES),
        )
    values = _apply(CHECK_SETTINGS["*"] + CHECK_SETTINGS[kind], raw, where, path, text)
    options = {k: v for k, v in values.items() if k not in ("type", "name", "timeout")}
    name = values["name"] or _describe_check(kind, options)
    return CheckSpec(kind, name, values["timeout"], MappingProxyType(options))


def _describe_check(kind: str, options: Mapping[str, Any]) -> str:
    if kind == "http":
        return f"http {options['port']}{options['path']} -> {options['status']}"
    if kind == "tcp":
        return f"tcp {options['port']} open"
    if kind == "unit":
        return f"unit {options['unit']} active"
    if kind == "command":
        return "command " + " ".join(options["argv"])
    if kind == "python":
        return f"python {options['function']}"
    return "no failed units"


def load_appliance(path: Path, project_root: Path) -> ApplianceSpec:
    """Parse and check one appliance file. Raises UserError naming the file, line and fix."""
    data, text = load_toml(path)
    values = _apply(SETTINGS, data, "", path, text)
    if values["name"] != path.stem:
        raise UserError(
            f"name {values['name']!r} does not match the file name",
            file=path,
            line=find_line(text, "name"),
            hint=f'set name = "{path.stem}" or rename the file',
        )
    kickstart = project_root / "kickstarts" / values["kickstart"]
    if not kickstart.is_file() or "/" in values["kickstart"]:
        raise UserError(
            f"kickstart: template {values['kickstart']!r} not found in kickstarts/",
            file=path,
            line=find_line(text, "kickstart"),
            hint='name a file in kickstarts/, e.g. "' + path.stem + '.ks.j2"',
        )
    roles = roles_dir(project_root)
    shown = "roles/" if roles == project_root / "roles" else f"{roles}/"
    for index, role in enumerate(values["roles"]):
        if "/" in role or not (roles / role / "tasks" / "main.yml").is_file():
            raise UserError(
                f"roles[{index}]: role {role!r} not found (no {shown}{role}/tasks/main.yml)",
                file=path,
                line=find_line(text, "roles"),
                hint=f"name a directory in {shown}",
            )
    if "/" in values["distribution"] or not (project_root / "distributions" / f"{values['distribution']}.toml").is_file():
        known = sorted(p.stem for p in (project_root / "distributions").glob("*.toml"))
        raise UserError(
            f"distribution {values['distribution']!r} is not defined",
            file=path,
            line=find_line(text, "distribution"),
            hint="use one of " + ", ".join(known),
        )
    raw_checks = values["test.checks"]
    if not isinstance(raw_checks, (list, tuple)):
        raise UserError("test.checks must be an array of tables", file=path, line=find_line(text, "test.checks"), hint="write [[test.checks]] tables")
    checks = tuple(_parse_check(raw, i, path, text) for i, raw in enumerate(raw_checks))
    module: Path | None = None
    if values["test.module"]:
        module = path.parent / values["test.module"]
        if "/" in values["test.module"] or not module.is_file():
            raise UserError(
                f"test.module: {values['test.module']!r} not found beside the appliance file",
                file=path,
                line=find_line(text, "test.module"),
                hint=f'name a file beside it, e.g. "{path.stem}_checks.py"' if "/" in values["test.module"] else f"create {module} or remove the key",
            )
    if any(c.type == "python" for c in checks) and module is None:
        raise UserError("a python check needs test.module", file=path, line=find_line(text, "test.checks"), hint='set test.module = "NAME_checks.py"')
    for i, check in enumerate(checks):
        port = check.options.get("port")
        if port is not None and port not in values["test.ports"]:
            raise UserError(
                f"test.checks[{i}].port: guest port {port} is not forwarded",
                file=path,
                line=find_line(text, f"test.checks[{i}].port") or find_line(text, f"test.checks[{i}]"),
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
        test=TestSpec(
            ports=values["test.ports"],
            boot_timeout=values["test.boot_timeout"],
            module=module,
            checks=checks,
        ),
        source=path,
    )


def appliances_dir(project_root: Path) -> Path:
    """Where appliance files are read from: appliances/, or $CRUST_APPLIANCES (a site's own)."""
    override = os.environ.get("CRUST_APPLIANCES")
    return Path(override) if override else project_root / "appliances"


def roles_dir(project_root: Path) -> Path:
    """Where roles are read from: roles/, or $CRUST_ROLES (a site's own, set by --roles)."""
    override = os.environ.get("CRUST_ROLES")
    return Path(override) if override else project_root / "roles"


def appliance_path(project_root: Path, name: str) -> Path:
    path = appliances_dir(project_root) / f"{name}.toml"
    if "/" in name or name.startswith(".") or not path.is_file():  # a name, never a path to a file elsewhere
        known = ", ".join(list_appliance_names(project_root)) or "none"
        raise UserError(f"no appliance named {name!r}", hint=f"use one of: {known} (files in {appliances_dir(project_root)})")
    return path


def list_appliance_names(project_root: Path) -> list[str]:
    return sorted(p.stem for p in appliances_dir(project_root).glob("*.toml"))


def settings_reference() -> str:
    """The appliance file reference, generated from the settings tables."""
    lines = ["Appliance file keys (appliances/NAME.toml):"]
    for s in SETTINGS:
        default = "required" if s.default is REQUIRED else f"default {s.default!r}"
        lines.append(f"  {s.key:40} {s.help} ({default})")
    for kind, table in CHECK_SETTINGS.items():
        title = "every check" if kind == "*" else f"type = {kind!r}"
        lines.append(f"[[test.checks]], {title}:")
        for s in table:
            default = "required" if s.default is REQUIRED else f"default {s.default!r}"
            lines.append(f"  {s.key:40} {s.help} ({default})")
    return "\n".join(lines)
