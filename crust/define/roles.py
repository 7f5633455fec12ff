"""Ansible roles as build inputs: dependency closure, files, and argument specs.

Appliance variables are checked against the ``meta/argument_specs.yml`` of the roles an
appliance uses before anything runs (unknown names and wrong types are errors naming the
appliance file and key). Variables of type ``path`` name files on the host: their content is
part of the configured tree's id, so editing the app a variable points at rebuilds the tree.

An option with ``crust_secret: ID`` is a build secret (crust/trust/secrets.py): Crust sets it to the
secret's path inside the tree during the run; the appliance cannot set it, the build must be
given the secret (``--secret ID=...``), and its content is no part of any id.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crust.define.inherit import Origins
from crust.define.settings import IMAGE_PATH_RE
from crust.define.tomlfile import find_line
from crust.errors import UserError
from crust.trust.secrets import ID_RE, SECRETS_DIR

# Set by Crust for every build (plan.py, ansible.py): a role may require them.
CRUST_VARS = (
    "crust_appliance",
    "crust_version",
    "crust_distribution",
    "crust_description",
    "crust_roles_dir",
    "crust_wheel_cache",
    "crust_wheel_dir",
)


@dataclass(frozen=True)
class Option:
    role: str
    name: str
    type: str
    elements: str
    required: bool = False  # and no default: the appliance must set it
    choices: tuple[Any, ...] = ()
    secret: str = ""  # crust_secret: the ID of the build secret whose path this variable holds
    host_path: bool = False  # crust_host_path: a file or directory on the build host (an input), not in the image


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it


@functools.cache
def _load_yaml(path: Path) -> Any:
    """Parsed YAML (cached for the process: role metadata is read once per run)."""
    data = path.read_bytes()
    try:
        return yaml.load(data.decode("utf-8"), Loader=_LOADER)
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text: {exc.reason}", file=path, line=data[: exc.start].count(b"\n") + 1, hint="save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(
            f"invalid YAML: {getattr(exc, 'problem', exc)}", file=path, line=mark.line + 1 if mark else None, hint="correct the YAML syntax"
        ) from None


def _mapping(value: Any, path: Path, what: str) -> dict[str, Any]:
    """A YAML mapping (None is an empty one); anything else is an error naming the file."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{what}: expected a mapping, got {type(value).__name__}", file=path, hint="see Ansible's documentation of role metadata")
    return value


def _dependencies(meta: Path) -> list[dict[str, Any]]:
    """meta/main.yml's dependencies, each as a mapping with its role name under "role"."""
    deps = _mapping(_load_yaml(meta), meta, "meta/main.yml").get("dependencies") or []
    if not isinstance(deps, list):
        raise UserError("dependencies: expected a list", file=meta, hint="write `dependencies: [role, ...]`")
    found = []
    for dep in deps:
        entry = {"role": dep} if isinstance(dep, str) else _mapping(dep, meta, "a dependency")
        if not isinstance(entry.get("role") or entry.get("name"), str):
            raise UserError(f"dependency {dep!r} names no role", file=meta, hint="write `- role: NAME`")
        found.append({**entry, "role": entry.get("role") or entry.get("name")})
    return found


def dependencies(roles_dir: Path, role: str) -> list[dict[str, Any]]:
    """The role's meta dependencies (each a mapping, its role's name under "role")."""
    meta = roles_dir / role / "meta/main.yml"
    return _dependencies(meta) if meta.is_file() else []


PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")  # Debian Policy 5.6.1


def role_closure(roles_dir: Path, roles: tuple[str, ...]) -> tuple[str, ...]:
    """The roles and, depth first, every role they depend on (meta/main.yml), each once."""
    ordered: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in chain:
            raise UserError(
                f"role dependency cycle: {' -> '.join((*chain, name))}",
                file=roles_dir / name / "meta/main.yml",
                hint="remove one of these dependencies",
            )
        if name in ordered:
            return
        if not (roles_dir / name / "tasks/main.yml").is_file():
            raise UserError(
                f"role {name!r} not found",
                file=roles_dir / (chain[-1] if chain else name) / "meta/main.yml",
                hint=f"create roles/{name}/tasks/main.yml",
            )
        meta = roles_dir / name / "meta/main.yml"
        for dep in _dependencies(meta) if meta.is_file() else []:
            visit(dep["role"], (*chain, name))
        ordered.append(name)

    for role in roles:
        visit(role, ())
    return tuple(ordered)


def role_files(roles_dir: Path, role: str) -> list[Path]:
    base = roles_dir / role
    return sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc"))


def crust_meta(roles_dir: Path, role: str) -> dict[str, Any]:
    """meta/crust.yml: what Crust needs to know of a role beyond Ansible's argument specs, kept
    apart so that the specs stay as ansible-lint's schema wants them. ``host_paths`` lists the
    variables that name files on the build host (inputs of the build); ``packages`` the
    distribution's packages the role needs (the packages step installs them with %packages)."""
    path = roles_dir / role / "meta" / "crust.yml"
    if not path.is_file():
        return {}
    data = _mapping(_load_yaml(path), path, "meta/crust.yml")
    unknown = sorted(set(data) - {"host_paths", "packages"})
    if unknown:
        raise UserError(f"meta/crust.yml: unknown key {unknown[0]!r}", file=path, hint="known keys: host_paths, packages")
    paths = data.get("host_paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise UserError("meta/crust.yml: host_paths must be a list of variable names", file=path, hint="write host_paths: [ROLE_app_path]")
    packages = data.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) and PACKAGE_RE.fullmatch(p) for p in packages):
        raise UserError(
            "meta/crust.yml: packages must be a list of package names",
            file=path,
            hint="write packages: [nginx] (lower-case letters, digits and + - .)",
        )
    return data


def role_packages(roles_dir: Path, roles: tuple[str, ...]) -> dict[str, str]:
    """The packages the roles (and those they depend on) declare in meta/crust.yml: package ->
    the first role that needs it, in the roles' order."""
    found: dict[str, str] = {}
    for role in role_closure(roles_dir, roles):
        for package in crust_meta(roles_dir, role).get("packages", []):
            found.setdefault(package, role)
    return found


def role_options(roles_dir: Path, role: str) -> dict[str, Option]:
    spec_file = roles_dir / role / "meta/argument_specs.yml"
    if not spec_file.is_file():
        return {}
    data = _mapping(_load_yaml(spec_file), spec_file, "argument_specs.yml")
    options: dict[str, Option] = {}
    for entry_point, entry in _mapping(data.get("argument_specs"), spec_file, "argument_specs").items():
        where = f"argument_specs.{entry_point}"
        for name, raw in _mapping(_mapping(entry, spec_file, where).get("options"), spec_file, where + ".options").items():
            opt = _mapping(raw, spec_file, f"{where}.options.{name}")
            if not isinstance(opt.get("choices") or [], list):
                raise UserError(f"{where}.options.{name}.choices: expected a list", file=spec_file, hint="list the allowed values")
            secret = opt.get("crust_secret", "")
            if "crust_secret" in opt and (not isinstance(secret, str) or not ID_RE.fullmatch(secret)):
                raise UserError(
                    f"{where}.options.{name}.crust_secret: {secret!r} is not a secret ID",
                    file=spec_file,
                    hint="use 1-64 letters, digits, '_', '.' and '-', starting with a letter or digit",
                )
            if secret and ("default" in opt or str(opt.get("type", "str")) not in ("str", "path")):
                raise UserError(
                    f"{where}.options.{name}: a build secret's variable holds its path: it takes no default and is of type path",
                    file=spec_file,
                    hint="write `type: path` and no default",
                )
            host_path = opt.get("crust_host_path", name in crust_meta(roles_dir, role).get("host_paths", ()))
            if not isinstance(host_path, bool) or (host_path and str(opt.get("type", "str")) != "path"):
                raise UserError(
                    f"{where}.options.{name}.crust_host_path: expected true or false, on an option of type path",
                    file=spec_file,
                    hint="write `type: path` and `crust_host_path: true` for a file on the build host",
                )
            options[name] = Option(
                role,
                name,
                str(opt.get("type", "str")),
                str(opt.get("elements", "")),
                bool(opt.get("required")) and "default" not in opt,
                tuple(opt.get("choices") or ()),
                secret,
                host_path,
            )
    return options


def secret_options(roles_dir: Path, roles: tuple[str, ...]) -> list[Option]:
    """The build-secret variables of the roles and the roles they depend on."""
    return [opt for role in role_closure(roles_dir, roles) for opt in role_options(roles_dir, role).values() if opt.secret]


def needed_secrets(roles_dir: Path, roles: tuple[str, ...]) -> dict[str, str]:
    """Secret ID -> the (first) role that needs it."""
    needed: dict[str, str] = {}
    for opt in secret_options(roles_dir, roles):
        needed.setdefault(opt.secret, opt.role)
    return needed


def secret_variables(roles_dir: Path, roles: tuple[str, ...]) -> dict[str, str]:
    """Variable -> the path of its secret inside the tree, as the Ansible run sees it."""
    return {opt.name: f"{SECRETS_DIR}/{opt.secret}" for opt in secret_options(roles_dir, roles)}


def dependency_vars(roles_dir: Path, roles: tuple[str, ...]) -> set[str]:
    """Variables that roles pass to the roles they depend on (meta/main.yml dependencies)."""
    names: set[str] = set()
    for role in roles:
        meta = roles_dir / role / "meta/main.yml"
        for dep in _dependencies(meta) if meta.is_file() else []:
            names.update(k for k in dep if k not in ("role", "name", "vars"))
            names.update(_mapping(dep.get("vars"), meta, f"dependency {dep['role']}: vars"))
    return names


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


def check_vars(
    roles_dir: Path, roles: tuple[str, ...], values: Mapping[str, Any], source: Path | Origins, allowed: Sequence[Path] = ()
) -> dict[str, Option]:
    """Every appliance variable must be declared by a role in use, with a matching type. A host
    path (crust_host_path) must lie in one of the allowed directories (the project, the
    appliance file's directory, --allow-path ones), links in it too; any other path is one
    inside the image: absolute and plain. source: the appliance file, or where each of its
    values was set (Origins: an appliance that extends another); errors name that file."""
    origins = source if isinstance(source, Origins) else Origins(source, {}, {source: source.read_text(encoding="utf-8")})
    options: dict[str, Option] = {}
    closure = role_closure(roles_dir, roles)
    by_role = {role: role_options(roles_dir, role) for role in closure}
    for role_opts in by_role.values():
        options.update(role_opts)
    for name, value in values.items():
        file, line = origins.locate(f"vars.{name}")
        if name not in options:
            close = difflib.get_close_matches(name, list(options), n=1)
            raise UserError(
                f"vars.{name}: no role of this appliance declares this variable",
                file=file,
                line=line,
                hint=f"did you mean {close[0]!r}?" if close else "declare it in the role's meta/argument_specs.yml or remove it",
            )
        opt = options[name]
        if opt.secret:
            raise UserError(
                f"vars.{name}: role {opt.role} takes this from the build secret {opt.secret!r}, not from the appliance file",
                file=file,
                line=line,
                hint=f"remove it, and give the secret at build time: --secret {opt.secret}=PATH",
            )
        accepted = _TYPES.get(opt.type, (object,))
        if not isinstance(value, accepted) or (opt.type == "int" and isinstance(value, bool)):
            raise UserError(
                f"vars.{name}: expected {opt.type} (role {opt.role}), got {type(value).__name__}",
                file=file,
                line=line,
                hint=f"see roles/{opt.role}/meta/argument_specs.yml",
            )
        items: list[Any] = value if opt.type == "list" and isinstance(value, list) else [value]
        if opt.type == "list" and opt.elements in _TYPES:
            accepted = _TYPES[opt.elements]
            for i, item in enumerate(items):
                if not isinstance(item, accepted) or (opt.elements == "int" and isinstance(item, bool)):
                    raise UserError(
                        f"vars.{name}[{i}]: expected {opt.elements} elements (role {opt.role}), got {type(item).__name__}",
                        file=file,
                        line=line,
                        hint=f"see roles/{opt.role}/meta/argument_specs.yml",
                    )
        if opt.choices:
            for item in items:
                if item not in opt.choices:
                    raise UserError(
                        f"vars.{name}: {item!r} is not a choice of role {opt.role}",
                        file=file,
                        line=line,
                        hint="use one of " + ", ".join(repr(c) for c in opt.choices),
                    )
        if opt.type == "path" and value and opt.host_path:
            check_host_path(name, str(value), file, origins.texts.get(file, ""), (*allowed, *{p.parent for p in (origins.own, file)}))
        elif opt.type == "path" and value and not IMAGE_PATH_RE.fullmatch(str(value)):
            raise UserError(
                f"vars.{name}: {value!r} is not a plain absolute path in the image",
                file=file,
                line=line,
                hint="write e.g. /etc/NAME (no '..', no spaces)",
            )
    given = {*values, *CRUST_VARS, *dependency_vars(roles_dir, closure), *(o.name for o in options.values() if o.secret)}
    for role, role_opts in by_role.items():
        for opt in role_opts.values():
            if opt.required and opt.name not in given:
                raise UserError(
                    f"vars.{opt.name}: role {role} requires this variable",
                    file=origins.own,
                    line=origins.locate("vars")[1] or origins.locate("roles")[1],
                    hint=f"set it in [vars] (see roles/{role}/meta/argument_specs.yml)",
                )
    return options


def check_host_path(name: str, value: str, source: Path, text: str, allowed: Sequence[Path]) -> None:
    """A host path exists, and it and every link under it stay in an allowed directory."""
    line = find_line(text, f"vars.{name}")
    path = Path(value)
    if not path.is_absolute():
        raise UserError(f"vars.{name}: path {value!r} must be absolute", file=source, line=line, hint="write the full path on the build host")
    roots = [Path(os.path.realpath(a)) for a in allowed]
    shown = ", ".join(str(r) for r in roots)

    def check(item: Path) -> None:
        real = Path(os.path.realpath(item))
        if not any(real == r or real.is_relative_to(r) for r in roots):
            raise UserError(
                f"vars.{name}: {item} is outside the directories a build may read ({shown})",
                file=source,
                line=line,
                hint="keep the files in the project or beside the appliance file, or allow their directory: --allow-path DIR",
            )

    check(path)  # the path itself first: never walk, nor tell whether there is, anything outside
    if not path.exists():
        raise UserError(f"vars.{name}: {value} does not exist", file=source, line=line, hint="point it at a file or directory on the build host")
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):  # a real directory inside: only its links can lead out
            for entry in (*dirnames, *filenames):
                if os.path.islink(os.path.join(dirpath, entry)):
                    check(Path(dirpath, entry))


def path_inputs(options: Mapping[str, Option], values: Mapping[str, Any]) -> list[Path]:
    """Host files named by host-path variables (files, or every file under a directory)."""
    found: list[Path] = []
    for name, value in sorted(values.items()):
        opt = options.get(name)
        if opt is None or not opt.host_path or not value:
            continue
        path = Path(value)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        else:
            found.append(path)
    return found
