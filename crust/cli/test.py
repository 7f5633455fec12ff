"""The test verb: boot built appliances under libvirt and run their smoke checks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crust.cli.common import add_names, names_from, project_from
from crust.errors import UserError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "test",
        help="boot built appliances under libvirt and run their smoke checks",
        description="Boot each built appliance's qcow2 as a transient libvirt domain (per-run overlay and OVMF variables, "
        "user-mode networking with the appliance's ports forwarded to free loopback ports) and run the checks its file "
        "declares, in order, each with its own timeout. Exit 0 when all pass, 1 when a check fails, 2 on bad input. "
        "An unchanged image with unchanged checks reports its recorded result without booting (--force boots again). "
        "Remote URIs (qemu+ssh://) work the same way for the guest-agent checks; tcp and http checks connect to "
        "127.0.0.1 and need the forwarded ports tunnelled (ssh -L) from the remote host.",
    )
    add_names(p)
    add_test_options(p)
    p.set_defaults(run=cmd_test)


def add_test_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", metavar="URI", default="qemu:///system", help="libvirt URI (default qemu:///system)")
    p.add_argument("--force", action="store_true", help="boot even when this image and these checks already have a result")
    p.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        default="auto",
        help="auto: KVM only where it really boots a guest here (a failed start, a stopped or hung guest fall back to TCG), else TCG",
    )
    p.add_argument("--junit", metavar="FILE", type=Path, help="write JUnit XML (one testcase per check)")
    p.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    p.add_argument(
        "--user-data",
        type=Path,
        metavar="FILE",
        help="boot with FILE as cloud-init user data (a NoCloud seed disk), as `launch` gives it in a cloud; needs cloud-init in the image",
    )


def cmd_test(args: argparse.Namespace) -> int:
    return run_tests(args, names_from(args, project_from(args)))


def run_tests(args: argparse.Namespace, names: list[str]) -> int:
    from crust.boot.report import junit_xml, report
    from crust.boot.smoke import SmokeOptions, smoke_test
    from crust.build.manifest import Manifest
    from crust.build.store import Store, write_atomic
    from crust.define.spec import load_appliance

    project = project_from(args)
    store = Store(args.store)
    if args.user_data is not None and not args.user_data.is_file():
        raise UserError(f"--user-data {args.user_data}: no such file", hint="give a #cloud-config file")
    options = SmokeOptions(uri=args.connect, force=args.force, accel=args.accel, user_data=args.user_data)
    specs = []
    for name in names:
        spec = load_appliance(project.appliance_path(name), project)
        manifest = Manifest.load(args.output, name, verb="test")
        if not spec.test.checks:
            raise UserError(f"{name} declares no smoke checks", file=spec.source, hint="add [[test.checks]] tables")
        specs.append((spec, manifest))
    records = []
    for spec, manifest in specs:
        record = smoke_test(spec, manifest, store.root / "state", options)
        report(record, sys.stderr)
        records.append(record)
    if args.junit:
        write_atomic(args.junit, junit_xml(records))
    if args.json:
        print(json.dumps(records, indent=2))
    return 0 if all(r["passed"] for r in records) else 1
