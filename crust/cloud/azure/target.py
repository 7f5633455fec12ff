"""Azure as a cloud target: the fixed VHD to a page blob and a managed image; VMs with a NIC."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crust.cloud.azure.settings import AZURE_SETTINGS, AzureTarget
from crust.cloud.target import Job, Target


class Azure:
    name = "azure"
    summary = "the fixed VHD to a page blob (data only) and a Gen2 managed image, once per digest; VMs with a NIC and cloud-init custom data"
    settings = AZURE_SETTINGS
    path_keys: tuple[str, ...] = ("ssh_key",)

    def configure(self, values: Mapping[str, Any], source: Path | None) -> AzureTarget:
        return AzureTarget(**values, source=source)

    def add_options(self, verb: str, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--resource-group", dest="azure_resource_group", metavar="GROUP", help="resource group (default: the target's)")
        if verb == "launch":
            group.add_argument("--vm-size", dest="azure_vm_size", metavar="SIZE", help="VM size (default: the target's vm_size)")

    def _checked(self, config: AzureTarget, job: Job) -> AzureTarget:
        from crust.cloud.azure.settings import GROUP_RE, VM_SIZE_RE
        from crust.errors import UserError

        changes: dict[str, Any] = {}
        for key, pattern, example in (("resource_group", GROUP_RE, "my-group"), ("vm_size", VM_SIZE_RE, "Standard_B2s")):
            value = job.option(key)
            if value is None:
                continue
            if not pattern.fullmatch(value):
                raise UserError(f"--{key.replace('_', '-')}: {value!r} is not valid", hint=f"e.g. --{key.replace('_', '-')} {example}")
            changes[key] = value
        return dataclasses.replace(config, **changes)

    def upload(self, config: AzureTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.azure.upload import upload

        return upload(self._checked(config, job), job)

    def describe_upload(self, report: Mapping[str, Any]) -> list[str]:
        from crust.cloud.azure.upload import describe

        return describe(dict(report))

    def launch(self, config: AzureTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.azure.launch import launch

        return launch(self._checked(config, job), job)

    def terminate(self, config: AzureTarget, job: Job) -> list[str]:
        from crust.cloud.azure.launch import terminate

        return terminate(self._checked(config, job), job)

    def resources(self, config: AzureTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
        from crust.cloud.azure.inventory import resources

        return resources(self._checked(config, job), job, remove_orphans)


TARGET: Target = Azure()
