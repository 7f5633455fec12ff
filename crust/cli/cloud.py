"""The cloud verbs of the command line: upload, launch, terminate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from crust.cli.common import project_from
from crust.cloud.targets import METHODS, TARGETS, AwsTarget, load_aws_target, parse_region
from crust.define.settings import Invalid
from crust.errors import UserError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "upload",
        help="upload a built image to a cloud (AWS: snapshot + AMI), reusing one already there",
        description="Upload the appliance's built raw image as an EBS snapshot with the EBS direct APIs (no S3 bucket, no "
        "vmimport role; 512 KiB blocks, zero blocks skipped, SHA-256 checksums, parallel workers) and register an AMI "
        "(UEFI, ENA, x86_64, gp3 root) tagged with the appliance, its version and the image digest. An AMI tagged with "
        "the same digest is reused and nothing is uploaded. Then copies it to the target's extra regions and shares it "
        "with its accounts, and records the AMI ids in build/NAME/manifest.json. Credentials come from boto3's usual "
        "chain (profile, environment, instance role). A failed or interrupted upload removes its snapshot.",
    )
    add_target_options(p)
    p.add_argument("--method", choices=METHODS, help="ebs (default): EBS direct APIs; s3-import: S3 multipart upload + import-snapshot")
    p.add_argument("--workers", type=int, metavar="N", help="parallel upload workers (default: the target's workers, 8)")
    p.add_argument("--json", action="store_true", help="print the result (AMI per region, blocks, throughput) as JSON")
    p.set_defaults(run=cmd_upload)

    p = sub.add_parser(
        "launch",
        help="start a cloud instance of an uploaded appliance and wait until it runs",
        description="Start an instance from the AMI recorded by `upload`, with #cloud-config user data (the target's "
        "cloud_config plus an SSH public key), wait until it runs and print its id and address. "
        "`terminate NAME` stops it.",
    )
    add_target_options(p)
    p.add_argument("--ssh-key", type=Path, metavar="FILE", help="SSH public key for the user data (default: ssh_key, then ~/.ssh/id_*.pub)")
    p.add_argument("--instance-type", metavar="TYPE", help="instance type (default: the target's instance_type, t3.small)")
    p.add_argument("--subnet", metavar="ID", help="subnet id (default: the target's subnet, else the default VPC)")
    p.add_argument("--json", action="store_true", help="print the instance record as JSON")
    p.set_defaults(run=cmd_launch)

    p = sub.add_parser(
        "terminate",
        help="terminate the cloud instances `launch` started",
        description="Terminate the instances of the appliance that `launch` started (or the one --instance names) and wait until they are gone.",
    )
    add_target_options(p)
    p.add_argument("--instance", metavar="ID", help="only this instance")
    p.set_defaults(run=cmd_terminate)


def add_target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="appliance name (built with ./build.py build NAME)")
    p.add_argument("--target", choices=TARGETS, default="aws", help="cloud target (default aws)")
    p.add_argument("--region", metavar="REGION", help="region (default: the target's region, then AWS_DEFAULT_REGION / the profile's)")


def target_from(args: argparse.Namespace) -> AwsTarget:
    target = load_aws_target(project_from(args), args.name)
    workers = getattr(args, "workers", None)
    if workers is not None and not 1 <= workers <= 64:
        raise UserError(f"--workers {workers}: use 1 to 64", hint="e.g. --workers 8")
    if args.region is not None:
        try:
            parse_region(args.region)
        except Invalid as exc:
            raise UserError(f"--region: {exc}", hint="e.g. --region eu-west-1") from None
    return target.replace(method=getattr(args, "method", None), workers=workers)


def cmd_upload(args: argparse.Namespace) -> int:
    from crust.build.store import Store
    from crust.cloud.aws.upload import human_report, upload

    report = upload(target_from(args), args.output, Store(args.store), args.name, args.region)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print("\n".join(human_report(report)))
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from crust.build.store import Store
    from crust.cloud.aws.launch import launch

    record = launch(target_from(args), args.output, Store(args.store), args.name, args.region, args.ssh_key, args.instance_type, args.subnet)
    if args.json:
        print(json.dumps(record, indent=2, sort_keys=True))
    else:
        print(f"{record['id']} running in {record['region']} at {record['address'] or 'no address'}")
    return 0


def cmd_terminate(args: argparse.Namespace) -> int:
    from crust.build.store import Store
    from crust.cloud.aws.launch import terminate

    for instance_id in terminate(target_from(args), Store(args.store), args.name, args.instance, args.region):
        print(f"{instance_id} terminated")
    return 0
