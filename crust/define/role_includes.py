"""The roles whose files shape what an appliance's roles make: their meta dependencies (as
role_closure follows them) and the roles their tasks and handlers include or import by name."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

from crust.define.roles import role_closure
from crust.errors import UserError

INCLUDES = frozenset(f"{prefix}{action}" for prefix in ("", "ansible.builtin.", "ansible.legacy.") for action in ("include_role", "import_role"))


ROLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


class _AnyTagLoader(yaml.SafeLoader):
    """YAML with Ansible's tags (!unsafe, !vault...) read as the plain values they tag."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_AnyTagLoader.add_multi_constructor("!", _any_tag)


@functools.cache
def _included_by_file(path: Path) -> tuple[str, ...]:
    """The roles a tasks file includes or imports by a fixed name (include_role, import_role)."""
    try:
        text = path.read_text(encoding="utf-8")
        if "include_role" not in text and "import_role" not in text:
            return ()  # the key must be written out: no need to parse (a no-op build plans every appliance)
        data = yaml.load(text, Loader=_AnyTagLoader)  # a SafeLoader
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read it as YAML: {exc}".splitlines()[0], file=path, hint="correct the YAML syntax") from None
    found: list[str] = []
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in INCLUDES and isinstance(value, dict) and isinstance(value.get("name"), str) and "{" not in value["name"]:
                    found.append(value["name"])
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return tuple(sorted(set(found)))


def roles_shaping(roles_dir: Path, roles: tuple[str, ...]) -> tuple[str, ...]:
    """Every role whose files shape what ROLES (and their dependencies) make: the closure over
    meta dependencies and over the roles their tasks and handlers include or import by name
    (wsgi includes python_app), in the order first met."""
    ordered: list[str] = []
    todo = list(role_closure(roles_dir, roles))
    while todo:
        role = todo.pop(0)
        if role in ordered:
            continue
        ordered.append(role)
        for folder in ("tasks", "handlers"):
            for path in sorted((roles_dir / role / folder).rglob("*.y*ml")):
                for name in _included_by_file(path):
                    # Only a plain role name: the name is data from a pull request, and a path
                    # ("../..") would make the build read (and hash) files outside roles/.
                    if ROLE_NAME.fullmatch(name) and name not in ordered and (roles_dir / name / "tasks/main.yml").is_file():
                        todo.extend(role_closure(roles_dir, (name,)))
    return tuple(ordered)
