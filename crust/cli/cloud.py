"""The cloud verbs of the command line: upload, launch, terminate, resources.

The verbs are the same for every target; `--target` picks one from the registry
(crust.cloud.target) and each target adds its own options, in a group of its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from crust.cli.common import project_from
from crust.cloud.target import DEFAULT, Job, Target, each_target, foreign_options, get_target, options_of, target_names
from crust.errors import UserError

DESCRIPTIONS = {
    "upload": "Upload the appliance's built image to the target and record what it made in build/NAME/manifest.json "
    "(cloud.TARGET.LOCATION). An image already there with the same digest is reused and nothing is sent. A failed or "
    "interrupted upload removes what it made. aws: the raw image as an EBS snapshot (EBS direct APIs, zero blocks "
    "skipped, checksums, parallel workers) and an AMI (UEFI, ENA), copied and shared as the target says; credentials "
    "from boto3's usual chain. libvirt: the qcow2 into a storage pool of a libvirt host (holes not sent), named by "
    "the image digest.",
    "launch": "Start a machine from the uploaded image with #cloud-config user data (the target's cloud_config plus "
    "an SSH public key), wait until it runs and print its id and address. `terminate NAME` stops it.",
    "terminate": "Stop and remove the machines of the appliance that `launch` started (or the one --instance names).",
    "resources": "List what Crust made on the target for the appliance (images, volumes, machines); an orphan is "
    "something no record uses (left by an interrupted run). --remove-orphans removes those.",
}
HELP = {
    "upload": "upload a built image to a cloud target, reusing one already there",
    "launch": "start a machine of an uploaded appliance on a cloud target and wait until it runs",
    "terminate": "stop and remove the machines `launch` started",
    "resources": "list what Crust made on a cloud target for an appliance; remove orphans",
}


def register(sub: Any) -> None:
    for verb, run in (("upload", cmd_upload), ("launch", cmd_launch), ("terminate", cmd_terminate), ("resources", cmd_resources)):
        p = sub.add_parser(verb, help=HELP[verb], description=DESCRIPTIONS[verb])
        p.add_argument("name", metavar="NAME", help="appliance name (built with ./build.py build NAME)")
        p.add_argument("--target", choices=target_names(), default=DEFAULT, help=f"cloud target (default {DEFAULT})")
        if verb == "launch":
            p.add_argument("--ssh-key", type=Path, metavar="FILE", help="SSH public key for the user data (default: ssh_key, then ~/.ssh/id_*.pub)")
        if verb == "terminate":
            p.add_argument("--instance", metavar="ID", help="only this machine")
        if verb == "resources":
            p.add_argument("--remove-orphans", action="store_true", help="remove what no record uses")
        if verb != "terminate":
            p.add_argument("--json", action="store_true", help="print the result as JSON")
        for target in each_target():
            target.add_options(verb, p.add_argument_group(f"{target.name} options"))
        p.set_defaults(run=run)


def job_from(args: argparse.Namespace, verb: str) -> tuple[Target, Any, Job]:
    """The chosen target, its configuration for the appliance, and the job."""
    from crust.build.store import Store
    from crust.cloud.targets import load_target

    target = get_target(args.target)
    stray = foreign_options(target, args)
    if stray:
        raise UserError(f"{', '.join(stray)}: not an option of --target {target.name}", hint=f"see ./build.py {verb} --help ({target.name} options)")
    config = load_target(project_from(args), args.name, target.name)
    options = {**options_of(target, args), "ssh_key": getattr(args, "ssh_key", None), "instance": getattr(args, "instance", None)}
    return target, config, Job(verb, args.name, args.output, Store(args.store), options)


def cmd_upload(args: argparse.Namespace) -> int:
    target, config, job = job_from(args, "upload")
    report = target.upload(config, job)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print("\n".join(target.describe_upload(report)))
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    target, config, job = job_from(args, "launch")
    record = target.launch(config, job)
    if args.json:
        print(json.dumps(record, indent=2, sort_keys=True))
    else:
        print(record["summary"])
    return 0


def cmd_terminate(args: argparse.Namespace) -> int:
    target, config, job = job_from(args, "terminate")
    for machine in target.terminate(config, job):
        print(f"{machine} terminated")
    return 0


def cmd_resources(args: argparse.Namespace) -> int:
    target, config, job = job_from(args, "resources")
    found = target.resources(config, job, args.remove_orphans)
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True))
        return 0
    for entry in found:
        state = "orphan" + (", removed" if entry.get("removed") else "") if entry["orphan"] else "in use"
        print(f"{entry['kind']:9} {entry['id']}  {entry.get('digest', '')[:12]:12}  {state}")
    if not found:
        print(f"nothing of {args.name} on {target.name}")
    return 0
