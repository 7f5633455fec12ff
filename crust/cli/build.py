"""Verbs of the make-style build: plan, build, clean, status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from crust.cache.config import add_cache_options
from crust.cli.common import add_names, check_directory, names_from, project_from
from crust.cli.test import add_test_options, run_tests
from crust.define.project import Project
from crust.errors import UserError

if TYPE_CHECKING:
    from crust.build.store import Store
    from crust.cache.remote import S3Cache


def register(sub: Any) -> None:
    from crust.formats import FORMATS

    p = sub.add_parser(
        "plan",
        help="show which steps are up to date and why the others will run",
        description="Compute every step's id from its inputs and show, without building, which steps are up to date and why the others would run.",
    )
    add_names(p)
    p.add_argument("--refresh", action="store_true", help="re-read the mirror state now instead of using the cached one")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_cache_options(p)
    p.set_defaults(run=cmd_plan)

    p = sub.add_parser(
        "build",
        help="build appliances (only the steps whose inputs changed)",
        description="Build appliance images: base tree (mmdebstrap), configured tree (kickstart + Ansible), sealed, assembled into raw and the formats the appliance asks for (qcow2, vmdk, vhd, ova) with a manifest. Steps already in the store are reused.",
    )
    add_names(p)
    p.add_argument("--refresh", action="store_true", help="re-read the mirror state now (a new mirror state rebuilds the base)")
    p.add_argument("--test", action="store_true", help="smoke-test each appliance after building it (see `test`)")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="build up to N appliances at once (shared steps are built once)")
    p.add_argument(
        "--format",
        action="append",
        default=[],
        choices=list(FORMATS),
        dest="formats",
        metavar="FMT",
        help=f"also write this format ({', '.join(FORMATS)}), besides the appliance's image.formats; repeatable",
    )
    p.add_argument(
        "--secret",
        action="append",
        default=[],
        dest="secrets",
        metavar="ID=SRC",
        help="give the roles the build secret ID (they declare it with crust_secret), read from a file (ID=PATH) or an "
        "environment variable (ID=env:NAME); repeatable. Available as a file under /run/crust-secrets during the Ansible "
        "run only; never in the image, the logs, the manifest, or any step id (a changed secret does not rebuild)",
    )
    add_test_options(p)
    add_cache_options(p)
    p.set_defaults(run=cmd_build)

    p = sub.add_parser(
        "clean",
        help="remove store entries no kept build uses",
        description="Remove step outputs that none of the last N builds of each appliance uses (and the records of older "
        "builds and of appliances no longer defined); report what was freed. Waits for running builds.",
    )
    p.add_argument("--keep", type=int, default=1, metavar="N", help="keep what the last N builds of each appliance use (default 1)")
    p.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    p.add_argument(
        "--remote",
        action="store_true",
        help="also prune the shared cache: its entries none of the last N builds of any appliance uses (as `cache prune --keep N`)",
    )
    add_cache_options(p)
    p.set_defaults(run=cmd_clean)

    p = sub.add_parser(
        "status",
        help="show the store and the last build of each appliance",
        description="Show the store size, each appliance's last build, and the shared cache's size when one is set.",
    )
    add_cache_options(p)
    p.set_defaults(run=cmd_status)


def cmd_plan(args: argparse.Namespace) -> int:
    from crust.build.explain import explain_change, record_key
    from crust.build.gc import human
    from crust.build.plan import plan_appliance
    from crust.build.store import Store
    from crust.define.validate import validate_appliance

    project = project_from(args)
    store = Store(args.store)
    names = names_from(args, project)
    for name in names:  # all of them before the first plan reads the mirror's state; no cache written yet
        validate_appliance(project, name, store.root / "state" / "cache", write_cache=False)
    shared = shared_sizes(args, project) or {}
    rows = []
    for name in names:
        plan = plan_appliance(project, name, store.root / "state", args.refresh)
        last = store.last_build(name)
        previous = {record_key(s["kind"], s["name"]): s for s in (last or {}).get("steps", [])}
        for step in plan.steps:
            present = store.get(step.kind, step.id) is not None
            old = previous.get(record_key(step.kind, step.name))
            remote = None if present else shared.get(step.key)
            why = "" if present or remote is not None else explain_change(step, old)
            state = "up to date" if present else f"in the shared cache ({human(remote)})" if remote is not None else "will run"
            rows.append({"appliance": name, "step": step.kind, "name": step.name, "id": step.id, "state": state, "why": why})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        why = f"  because: {row['why']}" if row["why"] else ""
        print(f"{row['appliance']:12} {row['step']:8} {row['name']:18} {row['id'][:12]}  {row['state']}{why}")
    return 0


def shared_sizes(args: argparse.Namespace, project: Project) -> dict[str, int] | None:
    """KIND-ID -> size of the entries in the shared cache (two listings); None when no cache is
    set or it cannot be listed (a warning says why)."""
    from crust.cache.config import FILE_NAME, load_cache_config
    from crust.cache.remote import open_cache
    from crust.errors import Problem

    config = load_cache_config(project.appliances.parent / FILE_NAME, args)
    if config is None:
        return None
    cache = open_cache(config)  # a bad key file is bad input: exit 2
    try:
        return cache.sizes()
    except Problem as exc:  # the network, the credentials: plan goes on without
        print(f"warning: shared cache {config.url} not listed: {exc.one_line()}", file=sys.stderr)
        return None


def cmd_build(args: argparse.Namespace) -> int:
    from crust.build.executor import build_all
    from crust.build.plan import plan_appliance
    from crust.build.preflight import missing_steps, preflight
    from crust.build.progress import Progress, make_progress
    from crust.build.store import Store
    from crust.cache.config import FILE_NAME, load_cache_config
    from crust.cache.remote import open_cache
    from crust.define.roles import needed_secrets
    from crust.define.validate import validate_appliance
    from crust.trust import secrets

    project = project_from(args)
    cache_config = load_cache_config(project.appliances.parent / FILE_NAME, args)
    remote = open_cache(cache_config) if cache_config is not None else None
    names = names_from(args, project)
    if args.jobs < 1:
        raise UserError(f"-j {args.jobs}: need at least one job", hint="use -j 1 or more")
    check_directory(args.output, "--output")
    given = secrets.parse_secrets(args.secrets)  # read now: a missing or unreadable file stops here
    store = Store(args.store)
    needed = {}
    for name in names:  # all of them before the first plan reads the mirror's state; no cache written yet
        spec = validate_appliance(project, name, store.root / "state" / "cache", write_cache=False)[0]
        needed[name] = needed_secrets(project.roles, spec.roles)
    secrets.check_needed(needed, given)
    secrets.provide(given)
    plans = [plan_appliance(project, n, store.root / "state", args.refresh, args.formats) for n in names]
    preflight(plans, store, missing_steps(plans, store))
    store.remove_stale_tmp()
    progress = make_progress() if any(store.get(s.kind, s.id) is None for p in plans for s in p.steps) else Progress()
    try:
        with store.shared():
            manifests = build_all(plans, store, args.output, project, progress, args.jobs, remote)
    finally:
        progress.close()
    if remote is not None:
        push_records(remote, store, list(manifests))
    for name, manifest in manifests.items():
        for artifact in manifest.artifacts:
            print(artifact.path, file=sys.stderr if args.json else sys.stdout)
        print(str(args.output / name / "manifest.json"), file=sys.stderr if args.json else sys.stdout)
    if args.test:
        return run_tests(args, names)
    return 0


def push_records(remote: S3Cache, store: Store, names: list[str]) -> None:
    """Each appliance's build record to the shared cache (what `cache prune` keeps)."""
    from crust.errors import Problem

    for name in names:
        record = store.last_build(name)
        try:
            if record is not None:
                remote.push_record(name, record)
        except Problem as exc:
            print(f"warning: build record of {name} not pushed to the shared cache: {exc.one_line()}", file=sys.stderr)


def cmd_clean(args: argparse.Namespace) -> int:
    from crust.build.gc import clean, human
    from crust.build.store import Store
    from crust.cache.config import FILE_NAME, load_cache_config
    from crust.cli.cache import prune_remote

    if args.keep < 0:
        raise UserError(f"--keep {args.keep}: must be 0 or more", hint="use --keep 1 to keep what the last build uses")
    project = project_from(args)
    config = load_cache_config(project.appliances.parent / FILE_NAME, args, use=False)  # bad options stop here, before any removal
    if args.remote and config is None:
        raise UserError("clean --remote: no shared cache is set", hint=f"give --cache s3://BUCKET/PREFIX or url in {FILE_NAME}")
    report = clean(Store(args.store), project.appliance_names(), args.keep, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for name in report.removed:
        print(f"{verb} {name}")
    print(
        f"{verb} {len(report.removed)} entries, {'would free' if args.dry_run else 'freed'} {human(report.freed_bytes)}; "
        f"kept {report.kept} entries ({human(report.kept_bytes)})"
    )
    if args.remote:
        prune_remote(config, args.keep, args.dry_run)
    elif config is not None:
        print(f"shared cache {config.url}: left as it is (./build.py clean --remote or ./build.py cache prune --keep N prunes it)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from crust.build.gc import disk_usage, human, referenced
    from crust.build.store import Store

    store = Store(args.store)
    project = project_from(args)
    names = project.appliance_names()
    shared = shared_sizes(args, project)  # bad cache options stop here, before any output
    used, _ = referenced(store, names, 1)
    by_kind: dict[str, list[int]] = {}
    unused = 0
    from crust.steps import KINDS

    seen: set[tuple[int, int]] = set()  # a file entries share counts in the first, in the kinds' order: base, packages, tree...
    order = {name: kind.order for name, kind in KINDS.items()}
    for entry in sorted((store.root / "steps").iterdir(), key=lambda p: (order.get(p.name.split("-", 1)[0], 1 << 30), p.name)):
        size = disk_usage(entry, seen)
        kind = entry.name.split("-", 1)[0]
        by_kind.setdefault(kind, [0, 0])
        by_kind[kind][0] += 1
        by_kind[kind][1] += size
        unused += 0 if entry.name in used else size
    total = disk_usage(store.root)
    print(f"store: {store.root}: {human(total)} on disk; {human(unused)} not used by the last builds (./build.py clean frees it)")
    for kind, (count, size) in by_kind.items():
        print(f"  {kind:8} {count:3} entries  {human(size):>10}")
    for name in names:
        last = store.last_build(name)
        when = f"last built {last['finished']} (build id {last['build_id']}, {last['duration_s']}s)" if last else "never built"
        print(f"  {name:16} {when}")
    if shared is not None:
        print(f"shared cache: {len(shared)} entries, {human(sum(shared.values()))} compressed")
    return 0
