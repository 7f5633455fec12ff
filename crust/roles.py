"""Ansible roles as build inputs: dependency closure, files, and argument specs.

Appliance variables are checked against the ``meta/argument_specs.yml`` of the roles an
appliance uses before anything runs (unknown names and wrong types are errors naming the
appliance file and key). Variables of type ``path`` name files on the host: their content is
part of the configured tree's id, so editing the app a variable points at rebuilds the tree.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crust.errors import UserError
from crust.tomlfile import find_line

CRUST_VARS = ("crust_appliance", "crust_version", "crust_build_id", "crust_distribution", "crust_description")


@dataclass(frozen=True)
class Option:
    role: str
    name: str
    type: str
    elements: str


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it


@functools.cache
def _load_yaml(path: Path) -> Any:
    """Parsed YAML (cached for the process: role metadata is read once per run)."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=path, line=mark.line + 1 if mark else None) from None


def role_closure(roles_dir: Path, roles: tuple[str, ...]) -> tuple[str, ...]:
    """The roles and, depth first, every role they depend on (meta/main.yml), each once."""
    ordered: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in chain:
            raise UserError(f"role dependency cycle: {' -> '.join((*chain, name))}", file=roles_dir / name / "meta/main.yml")
        if name in ordered:
            return
        if not (roles_dir / name / "tasks/main.yml").is_file():
            raise UserError(
                f"role {name!r} not found",
                file=roles_dir / (chain[-1] if chain else name) / "meta/main.yml",
                hint=f"create roles/{name}/tasks/main.yml",
            )
        meta = roles_dir / name / "meta/main.yml"
        data = _load_yaml(meta) if meta.is_file() else None
        for dep in (data or {}).get("dependencies", []) or []:
            dep_name = dep if isinstance(dep, str) else (dep.get("role") or dep.get("name"))
            visit(str(dep_name), (*chain, name))
        ordered.append(name)

    for role in roles:
        visit(role, ())
    return tuple(ordered)


def role_files(roles_dir: Path, role: str) -> list[Path]:
    base = roles_dir / role
    return sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc"))


def role_options(roles_dir: Path, role: str) -> dict[str, Option]:
    spec_file = roles_dir / role / "meta/argument_specs.yml"
    if not spec_file.is_file():
        return {}
    data = _load_yaml(spec_file) or {}
    options: dict[str, Option] = {}
    for entry in (data.get("argument_specs") or {}).values():
        for name, raw in ((entry or {}).get("options") or {}).items():
            opt = raw or {}
            options[name] = Option(role, name, str(opt.get("type", "str")), str(opt.get("elements", "")))
    return options


_TYPES: Mapping[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "float": (int, float),
    "raw": (object,),
}


def check_vars(roles_dir: Path, roles: tuple[str, ...], values: Mapping[str, Any], source: Path) -> dict[str, Option]:
    """Every appliance variable must be declared by a role in use, with a matching type."""
    options: dict[str, Option] = {}
    for role in role_closure(roles_dir, roles):
        options.update(role_options(roles_dir, role))
    text = source.read_text(encoding="utf-8")
    for name, value in values.items():
        if name not in options:
            close = difflib.get_close_matches(name, list(options), n=1)
            raise UserError(
                f"vars.{name}: no role of this appliance declares this variable",
                file=source,
                line=find_line(text, f"vars.{name}"),
                hint=f"did you mean {close[0]!r}?" if close else "declare it in the role's meta/argument_specs.yml or remove it",
            )
        opt = options[name]
        accepted = _TYPES.get(opt.type, (object,))
        if not isinstance(value, accepted) or (opt.type == "int" and isinstance(value, bool)):
            raise UserError(
                f"vars.{name}: expected {opt.type} (role {opt.role}), got {type(value).__name__}",
                file=source,
                line=find_line(text, f"vars.{name}"),
                hint=f"see roles/{opt.role}/meta/argument_specs.yml",
            )
        if opt.type == "path" and value:
            path = Path(str(value))
            if not path.is_absolute():
                raise UserError(
                    f"vars.{name}: path {value!r} must be absolute",
                    file=source,
                    line=find_line(text, f"vars.{name}"),
                    hint="write the full path on the build host",
                )
            if not path.exists():
                raise UserError(
                    f"vars.{name}: {value} does not exist",
                    file=source,
                    line=find_line(text, f"vars.{name}"),
                    hint="point it at a file or directory on the build host",
                )
    return options


def path_inputs(options: Mapping[str, Option], values: Mapping[str, Any]) -> list[Path]:
    """Host files named by path-typed variables (files, or every file under a directory)."""
    found: list[Path] = []
    for name, value in sorted(values.items()):
        opt = options.get(name)
        if opt is None or opt.type != "path" or not value:
            continue
        path = Path(value)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        else:
            found.append(path)
    return found
