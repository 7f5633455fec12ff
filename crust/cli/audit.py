"""The audit verb: check a built image without booting it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from crust.cli.common import project_from
from crust.errors import UserError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "audit",
        help="check a built image for secrets, unlocked accounts and unsafe settings, without booting it",
        description="Read the built image's root file system (debugfs: no boot, no mount) and check it: root locked and no "
        "undeclared password, no SSH host keys, no private keys or credentials, empty machine-id, sshd allows no password "
        "logins, no world-writable files outside temporary paths, no setuid files that no package ships. Prints one line "
        "per finding. Exit 0 when clean, 1 on findings, 2 on bad input.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="the appliance (its kickstart says which accounts may have passwords)")
    p.add_argument("--image", type=Path, metavar="PATH", help="audit this raw disk image instead of NAME's build/NAME/NAME.raw")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(run=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from crust.build.manifest import Manifest
    from crust.build.store import Store
    from crust.define.validate import validate_appliance
    from crust.trust.audit import AuditPolicy, audit_image, findings_json, policy_from_kickstart

    if args.name is None and args.image is None:
        raise UserError("no appliance given", hint="name one (./build.py list shows them) or give --image PATH")
    policy = AuditPolicy()
    if args.name is not None:
        policy = policy_from_kickstart(validate_appliance(project_from(args), args.name)[3])
    image = args.image
    if image is None:
        manifest = Manifest.load(args.output, args.name, verb="audit")
        raw = manifest.artifact("raw")
        image = raw.path if raw else args.output / args.name / f"{args.name}.raw"
    if not image.is_file():
        raise UserError(f"{image}: no such image file", hint="build the appliance, or give --image the path of a raw disk image")
    store = Store(args.store)
    store.remove_stale_tmp()
    started = time.monotonic()
    findings = audit_image(image, policy, store.root / "tmp")
    if args.json:
        print(json.dumps({"image": str(image), **findings_json(findings)}, indent=2))
    else:
        for finding in findings:
            print(finding)
        verdict = f"FAILED, {len(findings)} finding{'s' if len(findings) != 1 else ''}" if findings else "passed"
        print(f"audit of {image}: {verdict} ({time.monotonic() - started:.1f}s)")
    return 1 if findings else 0
