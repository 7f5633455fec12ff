"""OpenStack as a cloud target: the qcow2 to Glance; Nova servers."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crust.cloud.openstack.settings import OPENSTACK_SETTINGS, OpenStackTarget
from crust.cloud.target import Job, Target


class OpenStack:
    name = "openstack"
    summary = "the qcow2 to Glance (UEFI/q35 properties, once per digest); Nova servers with a config drive"
    settings = OPENSTACK_SETTINGS
    path_keys: tuple[str, ...] = ("ssh_key",)

    def configure(self, values: Mapping[str, Any], source: Path | None) -> OpenStackTarget:
        return OpenStackTarget(**values, source=source)

    def add_options(self, verb: str, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--os-cloud", dest="openstack_cloud", metavar="CLOUD", help="cloud of clouds.yaml (default: the target's cloud, then OS_CLOUD)"
        )
        if verb == "launch":
            group.add_argument("--flavor", dest="openstack_flavor", metavar="FLAVOR", help="flavor name or id (default: the target's flavor)")

    def _checked(self, config: OpenStackTarget, job: Job) -> OpenStackTarget:
        from crust.cloud.openstack.settings import parse_cloud
        from crust.define.settings import Invalid
        from crust.errors import UserError

        changes: dict[str, Any] = {}
        cloud = job.option("cloud")
        if cloud is not None:
            try:
                changes["cloud"] = parse_cloud(cloud)
            except Invalid as exc:
                raise UserError(f"--os-cloud: {exc}", hint="e.g. --os-cloud mycloud") from None
        if job.option("flavor") is not None:
            changes["flavor"] = job.option("flavor")
        return dataclasses.replace(config, **changes)

    def upload(self, config: OpenStackTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.openstack.upload import upload

        return upload(self._checked(config, job), job)

    def describe_upload(self, report: Mapping[str, Any]) -> list[str]:
        from crust.cloud.openstack.upload import describe

        return describe(dict(report))

    def launch(self, config: OpenStackTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.openstack.launch import launch

        return launch(self._checked(config, job), job)

    def terminate(self, config: OpenStackTarget, job: Job) -> list[str]:
        from crust.cloud.openstack.launch import terminate

        return terminate(self._checked(config, job), job)

    def resources(self, config: OpenStackTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
        from crust.cloud.openstack.inventory import resources

        return resources(self._checked(config, job), job, remove_orphans)


TARGET: Target = OpenStack()
