"""The verify verb: built artifacts are what they claim, and (--rebuild) what their inputs make."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any

from crust.cli.common import PROJECT_ROOT, add_names, names_from, project_from
from crust.errors import UserError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="check built artifacts against their manifest; --rebuild: build again from nothing and compare every byte",
        description="Check build/NAME's artifacts against the digests in its manifest. With --rebuild, build the appliances "
        "again from nothing (a throw-away store and output, a copy of the checkout at another path, another umask, time zone "
        "and locale, the same mirror state) and compare every artifact: each format, the UKI and the SBOM. On a mismatch, "
        "name the first file that differs inside the image and write a diffoscope report of it to build/NAME/verify/. "
        "Exit 0 when all are identical, 1 when any differs, 2 on bad input.",
    )
    add_names(p)
    p.add_argument("--rebuild", action="store_true", help="build again from nothing and compare (as long as a cold build)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(run=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from crust.build import verify
    from crust.build.manifest import Manifest
    from crust.build.store import Store

    project = project_from(args)
    names = names_from(args, project)
    originals = {name: Manifest.load(args.output, name, verb="verify") for name in names}
    started = time.monotonic()
    if not args.rebuild:
        rows = {name: verify.check_published(m) for name, m in originals.items()}
        return report(args, rows, {}, ("recorded", "on disk"), started)
    if os.geteuid() != 0:
        raise UserError("verify --rebuild builds the appliances again, which needs root", hint="run with sudo")
    store = Store(args.store)
    from crust.build.plan import plan_appliance

    for name, original in originals.items():  # a rebuild compares this checkout's inputs: the build must be of them
        planned = plan_appliance(project, name, store.root / "state")
        if planned.build_id != original.build_id:
            raise UserError(
                f"{name}: the published build {original.build_id} is not what this checkout builds ({planned.build_id}): a rebuild would differ by its inputs",
                file=original.path,
                hint=f"./build.py build {name} first (./build.py plan {name} says what changed), then verify",
            )
    store.remove_stale_tmp()
    work = store.root / "tmp" / f"verify.{os.getpid()}"  # removed by the next run if this one is killed
    options = []  # definitions from elsewhere than the checkout: the rebuild reads the same ones
    if project.appliances != PROJECT_ROOT / "appliances":
        options += ["--appliances", str(project.appliances)]
    if project.roles != PROJECT_ROOT / "roles":
        options += ["--roles", str(project.roles)]
    formats = {name: [a.format for a in m.artifacts if a.format != "raw"] for name, m in originals.items()}
    print(
        f"verify: rebuilding {' '.join(names)} from nothing in {work} (TZ={verify.OTHER_ENV['TZ']}, LC_ALL=C, umask 077)", file=sys.stderr, flush=True
    )
    try:
        work.mkdir(parents=True)
        checkout = verify.prepare_rebuild(PROJECT_ROOT, work, store.root / "state")
        rows, explanations = {}, {}
        for name in names:
            rebuilt = verify.rebuild(PROJECT_ROOT, checkout, work, name, formats[name], options, work / "rebuild.log")
            report_dir = args.output / name / "verify"
            shutil.rmtree(report_dir, ignore_errors=True)
            rows[name] = verify.compare(originals[name], rebuilt)
            raw_a, raw_b = originals[name].artifact("raw"), rebuilt.artifact("raw")
            if not all(r.same for r in rows[name]) and raw_a is not None and raw_b is not None:
                if raw_a.sha256 != raw_b.sha256:
                    where = work / f"compare-{name}"
                    explanations[name] = verify.explain_raw_difference(originals[name].located(raw_a), rebuilt.located(raw_b), where, report_dir)
                    shutil.rmtree(where, ignore_errors=True)
                else:
                    explanations[name] = "the raw images are identical: the difference is in the conversion of the others"
            verify.release_rebuild(work, name)
        return report(args, rows, explanations, ("this build", "rebuild"), started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args: argparse.Namespace, rows: dict[str, list[Any]], explanations: dict[str, str], sides: tuple[str, str], started: float) -> int:
    """One line per artifact, the first difference of each appliance that has one, a summary."""
    compared = [r for name_rows in rows.values() for r in name_rows]
    same = sum(1 for r in compared if r.same)
    if args.json:
        data = {
            name: {
                "artifacts": [{"artifact": r.artifact, sides[0]: r.original, sides[1]: r.rebuilt, "identical": r.same} for r in name_rows],
                "first_difference": explanations.get(name),
            }
            for name, name_rows in rows.items()
        }
        print(json.dumps({"appliances": data, "identical": same, "compared": len(compared)}, indent=2))
    else:
        for name, name_rows in rows.items():
            for r in name_rows:
                state = "identical" if r.same else "DIFFERS"
                print(f"{name:14} {r.artifact:6} {r.original[:16] or '-':16} {r.rebuilt[:16] or '-':16} {state}")
            if name in explanations:
                print(f"{name}: {explanations[name]}")
        print(f"verify: {same} of {len(compared)} artifacts identical ({sides[0]} vs {sides[1]}, {time.monotonic() - started:.0f}s)")
    return 0 if compared and same == len(compared) else 1
