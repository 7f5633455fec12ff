"""AWS as a cloud target: the raw image to an EBS snapshot and an AMI; EC2 instances."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crust.cloud.aws.settings import AWS_SETTINGS, METHODS, AwsTarget, check_for_upload, parse_region
from crust.cloud.target import Job, Target
from crust.define.settings import Invalid
from crust.errors import UserError


class Aws:
    name = "aws"
    summary = "the raw image to an EBS snapshot and an AMI; EC2 instances"
    settings = AWS_SETTINGS
    path_keys: tuple[str, ...] = ("ssh_key",)

    def configure(self, values: Mapping[str, Any], source: Path | None) -> AwsTarget:
        return AwsTarget(**values, source=source)

    def add_options(self, verb: str, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--region", dest="aws_region", metavar="REGION", help="region (default: the target's region, then AWS_DEFAULT_REGION / the profile's)"
        )
        if verb == "upload":
            group.add_argument(
                "--method",
                dest="aws_method",
                choices=METHODS,
                help="ebs (default): EBS direct APIs; s3-import: S3 multipart upload + import-snapshot",
            )
            group.add_argument(
                "--workers", dest="aws_workers", type=int, metavar="N", help="parallel upload workers (default: the target's workers, 8)"
            )
        if verb == "launch":
            group.add_argument(
                "--instance-type", dest="aws_instance_type", metavar="TYPE", help="instance type (default: the target's instance_type, t3.small)"
            )
            group.add_argument("--subnet", dest="aws_subnet", metavar="ID", help="subnet id (default: the target's subnet, else the default VPC)")

    def _checked(self, config: AwsTarget, job: Job) -> AwsTarget:
        """The configuration with the command line's overrides, checked before any AWS call."""
        workers = job.option("workers")
        if workers is not None and not 1 <= workers <= 64:
            raise UserError(f"--workers {workers}: use 1 to 64", hint="e.g. --workers 8")
        region = job.option("region")
        if region is not None:
            try:
                parse_region(region)
            except Invalid as exc:
                raise UserError(f"--region: {exc}", hint="e.g. --region eu-west-1") from None
        return config.replace(method=job.option("method"), workers=workers)

    def upload(self, config: AwsTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.aws.upload import upload

        target = self._checked(config, job)
        check_for_upload(target)
        return upload(target, job.output, job.store, job.appliance, job.option("region"), stream=job.stream)

    def describe_upload(self, report: Mapping[str, Any]) -> list[str]:
        from crust.cloud.aws.upload import human_report

        return human_report(report)

    def launch(self, config: AwsTarget, job: Job) -> dict[str, Any]:
        from crust.cloud.aws.launch import launch

        target = self._checked(config, job)
        record = launch(
            target,
            job.output,
            job.store,
            job.appliance,
            job.option("region"),
            job.option("ssh_key"),
            job.option("instance_type"),
            job.option("subnet"),
            stream=job.stream,
        )
        record["summary"] = f"{record['id']} running in {record['region']} at {record['address'] or 'no address'}"
        return record

    def terminate(self, config: AwsTarget, job: Job) -> list[str]:
        from crust.cloud.aws.launch import terminate

        return terminate(self._checked(config, job), job.store, job.appliance, job.option("instance"), job.option("region"), stream=job.stream)

    def resources(self, config: AwsTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
        from crust.cloud.aws.inventory import resources

        return resources(self._checked(config, job), job, remove_orphans)


TARGET: Target = Aws()
