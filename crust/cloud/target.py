"""The seam between the cloud verbs and the clouds.

A target is one module (or package) exposing ``TARGET``, an object with the attributes and
methods of `Target`. `registry()` below names the built-in ones; `--target` choices, the
``[targets.NAME]`` tables of appliance files, the ``[NAME]`` tables of targets.toml, `list
--settings` and the manifest's ``cloud.NAME.LOCATION`` records all follow from it. What every
target shares (the raw image and its digest, undo on failure, the cloud-init requirement,
manifest records) is in crust.cloud.common; loading and merging a target's settings is in
crust.cloud.targets.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from crust.build.store import Store
from crust.define.settings import Setting

DEFAULT = "aws"
VERBS = ("upload", "launch", "terminate", "resources")


@dataclass(frozen=True)
class Job:
    """One verb's request to a target: which appliance, where its build and store are, the
    target's own command-line options (None: not given), and where progress lines go."""

    verb: str
    appliance: str
    output: Path
    store: Store
    options: Mapping[str, Any] = field(default_factory=dict)
    stream: TextIO = sys.stderr

    def say(self, text: str) -> None:
        print(f"{self.verb} {self.appliance}: {text}", file=self.stream, flush=True)

    def option(self, key: str, default: Any = None) -> Any:
        value = self.options.get(key)
        return default if value is None else value


class Target(Protocol):
    """What a cloud target provides. `config` is the frozen dataclass its `configure` returns."""

    name: str  # --target NAME, [targets.NAME], cloud.NAME in the manifest
    summary: str  # one line for --help and list --settings
    settings: tuple[Setting, ...]  # its keys in [targets.NAME] / targets.toml's [NAME]
    path_keys: tuple[str, ...]  # keys naming files, resolved against the file that set them

    def configure(self, values: Mapping[str, Any], source: Path | None) -> Any:
        """The typed configuration from checked, merged values."""
        ...

    def add_options(self, verb: str, group: argparse._ArgumentGroup) -> None:
        """Command-line options of this target for a verb (dest names prefixed with the target's)."""
        ...

    def upload(self, config: Any, job: Job) -> dict[str, Any]:
        """Upload the appliance's image (or reuse the one with the same digest); the report is
        also recorded in the manifest under cloud.NAME."""
        ...

    def describe_upload(self, report: Mapping[str, Any]) -> list[str]:
        """The report as lines for a terminal."""
        ...

    def launch(self, config: Any, job: Job) -> dict[str, Any]:
        """Start a machine of the uploaded image, wait until it runs; its record (id, address)."""
        ...

    def terminate(self, config: Any, job: Job) -> list[str]:
        """Stop and remove the machines launch started (or the one --instance names); their ids."""
        ...

    def resources(self, config: Any, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
        """What Crust made there for the appliance (images, volumes, machines), each with
        kind, id, and orphan (true: nothing recorded uses it); removed when remove_orphans."""
        ...


def registry() -> dict[str, Target]:
    """The built-in targets by name. A new target is a module defining TARGET (heavy imports
    inside its methods) and one line here; the imports are static so that the code digest
    finds them, and happen on first use."""
    from crust.cloud.aws.target import TARGET as aws
    from crust.cloud.azure.target import TARGET as azure
    from crust.cloud.gcp.target import TARGET as gcp
    from crust.cloud.libvirt.target import TARGET as libvirt
    from crust.cloud.openstack.target import TARGET as openstack

    return {t.name: t for t in (aws, libvirt, openstack, azure, gcp)}


def target_names() -> tuple[str, ...]:
    return tuple(registry())


def get_target(name: str) -> Target:
    return registry()[name]


def each_target() -> list[Target]:
    return list(registry().values())


def options_of(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """The target's own options from parsed arguments (dest "NAME_key" -> key)."""
    prefix = f"{target.name}_"
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}


def foreign_options(chosen: Target, args: argparse.Namespace) -> list[str]:
    """Options given on the command line that belong to another target than the chosen one."""
    given = []
    for other in each_target():
        if other.name == chosen.name:
            continue
        given += [f"--{k.replace('_', '-')} ({other.name})" for k, v in options_of(other, args).items() if v not in (None, False)]
    return given
