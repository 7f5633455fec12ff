"""Google Cloud as a cloud target: the gce tar.gz to Cloud Storage, a Compute Engine image from
it (once per digest); instances with the SSH key and user-data in their metadata."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crust.cloud.gcp.settings import GCP_SETTINGS, GcpTarget
from crust.cloud.target import Job, Target


class Gcp:
    name = "gcp"
    summary = "the gce tar.gz to a Cloud Storage bucket, then a Compute Engine image (UEFI, gVNIC; once per digest); instances"
    settings = GCP_SETTINGS
    path_keys: tuple[str, ...] = ("ssh_key",)

    def configure(self, values: Mapping[str, Any], source: Path | None) -> GcpTarget:
        return GcpTarget(**values, source=source)

    def add_options(self, verb: str, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--project", dest="gcp_project", metavar="ID", help="Google Cloud project (default: the target's project, then ADC's)")
        if verb == "launch":
            group.add_argument("--zone", dest="gcp_zone", metavar="ZONE", help="zone (default: the target's zone)")
            group.add_argument("--machine-type", dest="gcp_machine_type", metavar="TYPE", help="machine type (default: the target's)")

    def _checked(self, config: GcpTarget, job: Job) -> GcpTarget:
        from crust.cloud.gcp.settings import parse_path_or_name, parse_project, parse_zone
        from crust.define.settings import Invalid
        from crust.errors import UserError

        changes: dict[str, Any] = {}
        for key, parse, example in (
            ("project", parse_project, "my-project"),
            ("zone", parse_zone, "europe-west1-b"),
            ("machine_type", parse_path_or_name, "e2-small"),
        ):
            value = job.option(key)
            if value is None:
                continue
            try:
                changes[key] = parse(value)
            except Invalid as exc:
                raise UserError(f"--{key.replace('_', '-')}: {exc}", hint=f"e.g. --{key.replace('_', '-')} {example}") from None
        return dataclasses.replace(config, **changes)

    def upload(self, config: GcpTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.gcp.upload import upload

        return upload(self._checked(config, job), job)

    def describe_upload(self, report: Mapping[str, Any]) -> list[str]:
        from crust.cloud.gcp.upload import describe

        return describe(dict(report))

    def launch(self, config: GcpTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.gcp.launch import launch

        return launch(self._checked(config, job), job)

    def terminate(self, config: GcpTarget, job: Job) -> list[str]:
        from crust.cloud.gcp.launch import terminate

        return terminate(self._checked(config, job), job)

    def resources(self, config: GcpTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
        from crust.cloud.gcp.inventory import resources

        return resources(self._checked(config, job), job, remove_orphans)


TARGET: Target = Gcp()
