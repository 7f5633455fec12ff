"""Appliance files that extend another: `extends = "wsgi"` and the keys that differ.

The chain (the file, its parent, the parent's parent...) is read from the root down. Merge rules:

- `name` is never inherited: each file names itself.
- `vars`: variable by variable; the nearest file's value wins (a table value is replaced whole).
- `roles`: the parent's roles, then the file's own that the parent does not have (in order).
- `test.checks`: the parent's checks in order; a check whose name (its `name`, or the
  description Crust gives it) is a parent check's replaces that one in place; the others follow.
- `targets`: target by target, key by key (crust/cloud/targets.py reads the chain too).
- Every other key: the nearest file that sets it wins.

Every merged value remembers the file and the key in that file that set it (Origins), so that
an error names the file and line the value came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crust.define.settings import NAME_RE
from crust.define.tomlfile import find_line, load_toml
from crust.errors import UserError

MAX_DEPTH = 8


@dataclass(frozen=True)
class Layer:
    """One appliance file of a chain, as parsed."""

    path: Path
    text: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Origins:
    """Where each merged value was set: a dotted key of the merged appliance -> (file, key in it)."""

    own: Path
    keys: Mapping[str, tuple[Path, str]]
    texts: Mapping[Path, str]  # each file's text as it was read

    def file(self, key: str) -> Path:
        return self._resolve(key)[0]

    def locate(self, key: str) -> tuple[Path, int | None]:
        """The file and line that set this key (or the closest table that holds it)."""
        path, key_in_file = self._resolve(key)
        text = self.texts.get(path)
        return path, find_line(text, key_in_file) if text is not None else None

    def _resolve(self, key: str) -> tuple[Path, str]:
        probe = key
        while True:
            if probe in self.keys:
                path, there = self.keys[probe]
                return path, there + key[len(probe) :]
            cut = max(probe.rfind("."), probe.rfind("["))
            if cut <= 0:
                return self.own, key
            probe = probe[:cut]


def load_chain(path: Path) -> list[Layer]:
    """The file and its ancestors, root first. Errors name the file and line of `extends`."""
    chain: list[Layer] = []
    current = path
    while True:
        data, text = load_toml(current)
        chain.append(Layer(current, text, data))
        if "extends" not in data:
            return list(reversed(chain))
        parent = data["extends"]
        line = find_line(text, "extends")
        if not isinstance(parent, str) or not NAME_RE.fullmatch(parent):
            raise UserError(
                f"extends: {parent!r} is not an appliance name",
                file=current,
                line=line,
                hint='name another appliance in this directory, e.g. extends = "wsgi"',
            )
        target = current.parent / f"{parent}.toml"
        if any(layer.path == target for layer in chain):
            names = " -> ".join([*(layer.path.stem for layer in chain), parent])
            raise UserError(
                f"extends: a cycle ({names})", file=current, line=line, hint="an appliance may not extend itself, directly or through another"
            )
        if not target.is_file():
            raise UserError(
                f"extends: no appliance {parent!r} beside this file", file=current, line=line, hint=f"create {target.name} or name an existing one"
            )
        if len(chain) >= MAX_DEPTH:
            raise UserError(f"extends: more than {MAX_DEPTH} files deep", file=current, line=line, hint="extend a file nearer the root")
        current = target


def merge_layers(chain: list[Layer], check_names: list[list[str]]) -> tuple[dict[str, Any], Origins]:
    """One appliance's data from its chain (root first), and where each value was set.

    check_names[i] are the names of chain[i]'s checks (each check's `name` or its default), by
    which a file's check replaces its parent's."""
    merged: dict[str, Any] = {}
    keys: dict[str, tuple[Path, str]] = {}
    checks: list[tuple[str, Any, Path, int]] = []  # name, table, file, index in that file
    if "name" in chain[-1].data:
        merged["name"] = chain[-1].data["name"]
        keys["name"] = (chain[-1].path, "name")
    for depth, layer in enumerate(chain):
        for key, value in layer.data.items():
            if key in ("name", "extends"):
                continue
            if key == "vars" and isinstance(value, dict) and isinstance(merged.get("vars", {}), dict):
                merged["vars"] = {**merged.get("vars", {}), **value}
                keys.update({f"vars.{name}": (layer.path, f"vars.{name}") for name in value})
                keys.setdefault("vars", (layer.path, "vars"))
            elif key == "roles" and isinstance(value, list) and isinstance(merged.get("roles", []), list):
                before = list(merged.get("roles", []))
                added = [role for role in value if role not in before]
                for role in added:
                    keys[f"roles[{len(before)}]"] = (layer.path, f"roles[{value.index(role)}]")
                    before.append(role)
                merged["roles"] = before
                keys["roles"] = (layer.path, "roles")
            elif key == "test" and isinstance(value, dict) and isinstance(merged.get("test", {}), dict):
                table = dict(value)
                own = table.pop("checks", None)
                merged["test"] = {**merged.get("test", {}), **table}
                keys.update({f"test.{name}": (layer.path, f"test.{name}") for name in table})
                if isinstance(own, list):
                    for index, check in enumerate(own):
                        name = check_names[depth][index] if index < len(check_names[depth]) else None
                        # Only an ancestor's check is replaced: two checks of one file both stay.
                        at = next((i for i, c in enumerate(checks) if name is not None and c[0] == name and c[2] != layer.path), None)
                        entry = (name or "", check, layer.path, index)
                        if at is None:
                            checks.append(entry)
                        else:
                            checks[at] = entry
                elif own is not None:
                    merged["test"]["checks"] = own
                    keys["test.checks"] = (layer.path, "test.checks")
            elif key in ("image", "security", "targets") and isinstance(value, dict) and isinstance(merged.get(key, {}), dict):
                merged[key] = _merge_tables(merged.get(key, {}), value)
                keys.update({f"{key}.{name}": (layer.path, f"{key}.{name}") for name in value})
            else:
                merged[key] = value
                keys[key] = (layer.path, key)
    if checks:
        merged.setdefault("test", {})["checks"] = [c[1] for c in checks]
        keys.update({f"test.checks[{i}]": (c[2], f"test.checks[{c[3]}]") for i, c in enumerate(checks)})
    return merged, Origins(chain[-1].path, keys, {layer.path: layer.text for layer in chain})


def _merge_tables(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge_tables(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def describe_origin(origins: Origins, key: str) -> str:
    """ "wsgi.toml:12" for the value of key (the file's name and the line)."""
    path, line = origins.locate(key)
    return f"{path.name}:{line}" if line else path.name
