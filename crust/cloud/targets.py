"""Cloud targets' settings: where `upload` and `launch` send an appliance.

A target is declared in the appliance file (``[targets.NAME]``, merged along its ``extends``
chain) or, for every appliance, in a shared ``targets.toml`` beside the appliances directory
(``[NAME]``); the appliance's keys override the shared file's key by key. The names are the
registry's (crust.cloud.target); each target's keys are its own settings table, checked with the
same machinery as appliance files: an unknown key or a wrong type is one line naming the file,
the line, the key and the fix. Credentials never appear here: each cloud's SDK finds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crust.cloud.target import Target, get_target, target_names
from crust.define.inherit import load_chain
from crust.define.project import Project
from crust.define.settings import apply_settings
from crust.define.tomlfile import find_line, load_toml
from crust.errors import UserError

Table = tuple[dict[str, Any], Path, str]  # raw table, the file that holds it, its text


def _check_keys(data: Mapping[str, Any], where: str, path: Path, text: str) -> None:
    known = target_names()
    for key, value in data.items():
        if key not in known:
            raise UserError(
                f"unknown target {where + key!r}", file=path, line=find_line(text, where + key), hint="known targets: " + ", ".join(known)
            )
        if not isinstance(value, dict):
            raise UserError(f"{where}{key} must be a table", file=path, line=find_line(text, where + key), hint=f"write [{where}{key}]")


def _raw_tables(project: Project, name: str, target: Target) -> list[Table]:
    """The raw tables of one target that apply to an appliance: the shared file's, then those of
    the files it extends (root first), then its own; each checked against the target's keys."""
    found: list[Table] = []
    shared = project.targets_file
    if shared.is_file():
        data, text = load_toml(shared)
        _check_keys(data, "", shared, text)
        if target.name in data:
            apply_settings(target.settings, data[target.name], f"{target.name}.", shared, text)
            found.append((data[target.name], shared, text))
    for layer in load_chain(project.appliance_path(name)):
        path, text = layer.path, layer.text
        targets = layer.data.get("targets", {})
        if not isinstance(targets, dict):
            raise UserError("targets must be a table", file=path, line=find_line(text, "targets"), hint=f"write [targets.{target.name}]")
        _check_keys(targets, "targets.", path, text)
        if target.name in targets:
            apply_settings(target.settings, targets[target.name], f"targets.{target.name}.", path, text)
            found.append((targets[target.name], path, text))
    return found


def _resolve_path(project: Project, target: Target, key: str, value: str, tables: list[Table]) -> Path:
    """A path setting, relative to the file that set it (~ for a home)."""
    declared, declared_text = next((p, t) for raw, p, t in reversed(tables) if key in raw)
    try:
        return (declared.parent / Path(value).expanduser()).resolve()
    except RuntimeError as exc:  # ~user of a user that does not exist
        where = f"{target.name}.{key}" if declared == project.targets_file else f"targets.{target.name}.{key}"
        raise UserError(f"{where}: {exc}", file=declared, line=find_line(declared_text, where), hint="give a path, or ~/ for your own home") from None


def load_target(project: Project, name: str, target_name: str) -> Any:
    """The configuration of target TARGET_NAME for appliance NAME (its defaults when nothing
    declares it)."""
    target = get_target(target_name)
    tables = _raw_tables(project, name, target)
    merged: dict[str, Any] = {}
    for raw, _, _ in tables:
        merged.update(raw)
    source, text = (tables[-1][1], tables[-1][2]) if tables else (None, "")
    values = apply_settings(target.settings, merged, f"{target.name}.", source or Path("targets.toml"), text)
    for key in target.path_keys:
        values[key] = _resolve_path(project, target, key, values[key], tables) if values[key] else None
    return target.configure(values, source)


def load_targets(project: Project, name: str) -> dict[str, Any]:
    """Every registered target's configuration for appliance NAME (validate parses them all)."""
    return {target_name: load_target(project, name, target_name) for target_name in target_names()}


def load_aws_target(project: Project, name: str) -> Any:
    return load_target(project, name, "aws")


def targets_reference() -> str:
    """The cloud target part of `list --settings`."""
    from crust.define.settings import reference_lines

    lines = []
    for target_name in target_names():
        target = get_target(target_name)
        lines += [
            f"Cloud target {target.name} ({target.summary}): [targets.{target.name}] in an appliance file, or [{target.name}] in targets.toml beside appliances/:",
            *reference_lines(target.settings),
        ]
    return "\n".join(lines)
