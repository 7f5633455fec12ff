"""libvirt hosts as a cloud target: the qcow2 into a storage pool; persistent domains."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crust.cloud.libvirt.settings import LIBVIRT_SETTINGS, LibvirtTarget
from crust.cloud.target import Job, Target


class Libvirt:
    name = "libvirt"
    summary = "the qcow2 into a storage pool of a libvirt host; persistent domains over copy-on-write volumes"
    settings = LIBVIRT_SETTINGS
    path_keys: tuple[str, ...] = ("ssh_key",)

    def configure(self, values: Mapping[str, Any], source: Path | None) -> LibvirtTarget:
        return LibvirtTarget(**values, source=source)

    def add_options(self, verb: str, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--connect", dest="libvirt_uri", metavar="URI", help="libvirt URI of the host (default: the target's uri, qemu:///system)")
        group.add_argument("--pool", dest="libvirt_pool", metavar="POOL", help="storage pool (default: the target's pool, default)")

    def _checked(self, config: LibvirtTarget, job: Job) -> LibvirtTarget:
        import dataclasses

        from crust.cloud.libvirt.settings import parse_object_name, parse_uri
        from crust.define.settings import Invalid
        from crust.errors import UserError

        changes: dict[str, Any] = {}
        for key, parse, example in (("uri", parse_uri, "qemu:///system"), ("pool", parse_object_name, "default")):
            value = job.option(key)
            if value is None:
                continue
            try:
                changes[key] = parse(value)
            except Invalid as exc:
                flag = "--connect" if key == "uri" else "--pool"
                raise UserError(f"{flag}: {exc}", hint=f"e.g. {flag} {example}") from None
        return dataclasses.replace(config, **changes)

    def upload(self, config: LibvirtTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.libvirt.upload import upload

        return upload(self._checked(config, job), job)

    def describe_upload(self, report: Mapping[str, Any]) -> list[str]:
        from crust.cloud.libvirt.upload import describe

        return describe(dict(report))

    def launch(self, config: LibvirtTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.libvirt.launch import launch

        return launch(self._checked(config, job), job)

    def terminate(self, config: LibvirtTarget, job: Job) -> list[str]:
        from crust.cloud.libvirt.launch import terminate

        return terminate(self._checked(config, job), job)

    def resources(self, config: LibvirtTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
        from crust.cloud.libvirt.inventory import resources

        return resources(self._checked(config, job), job, remove_orphans)


TARGET: Target = Libvirt()
