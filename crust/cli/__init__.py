"""Command line: ./build.py VERB [options]. Bad input exits 2 with one line; --debug shows tracebacks."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from crust.cli.cloud import CLOUD_COMMANDS, add_cloud_verbs, check_targets, targets_reference
from crust.define.spec import FORMATS, appliance_path, list_appliance_names, load_appliance, roles_dir, settings_reference
from crust.errors import CrustError, UserError
from crust.trust.secrets import register_environment

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}", hint=f"see {self.prog} --help")


def add_names(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="appliance names (files in appliances/)")
    p.add_argument("--all", action="store_true", help="every appliance in appliances/")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="build.py",
        description="Crust builds virtual appliances: appliance TOML + kickstart template + Ansible roles -> bootable disk images.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--store",
        type=Path,
        default=Path(os.environ.get("CRUST_STORE", PROJECT_ROOT / ".crust")),
        help="step store directory (default: .crust, or $CRUST_STORE)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(os.environ.get("CRUST_OUTPUT", PROJECT_ROOT / "build")),
        help="artifact directory (default: build, or $CRUST_OUTPUT)",
    )
    parser.add_argument("--appliances", type=Path, help="read appliance files from this directory instead of appliances/ (or $CRUST_APPLIANCES)")
    parser.add_argument("--roles", type=Path, help="read Ansible roles from this directory instead of roles/ (or $CRUST_ROLES)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True

    p = sub.add_parser(
        "list", help="list appliances with their descriptions", description="List every appliance in appliances/ with its description."
    )
    p.add_argument("--settings", action="store_true", help="print the reference of appliance file keys instead")

    p = sub.add_parser(
        "render", help="print an appliance's rendered kickstart", description="Render the appliance's Jinja kickstart template and print it."
    )
    p.add_argument("name", metavar="NAME")

    p = sub.add_parser(
        "validate",
        help="check appliance files, templates, kickstarts and role variables",
        description="Check the appliance file, render its kickstart, parse it with pykickstart (pinned syntax, warnings are errors) and apply Crust's policy checks. No side effects.",
    )
    add_names(p)

    p = sub.add_parser(
        "plan",
        help="show which steps are up to date and why the others will run",
        description="Compute every step's id from its inputs and show, without building, which steps are up to date and why the others would run.",
    )
    add_names(p)
    p.add_argument("--refresh", action="store_true", help="re-read the mirror state now instead of using the cached one")
    p.add_argument("--json", action="store_true", help="machine-readable output")

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
        choices=FORMATS,
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

    p = sub.add_parser(
        "clean",
        help="remove store entries no kept build uses",
        description="Remove step outputs that none of the last N builds of each appliance uses (and the records of older "
        "builds and of appliances no longer defined); report what was freed. Waits for running builds.",
    )
    p.add_argument("--keep", type=int, default=1, metavar="N", help="keep what the last N builds of each appliance use (default 1)")
    p.add_argument("--dry-run", action="store_true", help="only report what would be removed")

    p = sub.add_parser(
        "status", help="show the store and the last build of each appliance", description="Show the store size and each appliance's last build."
    )

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
    add_cloud_verbs(sub)  # upload, launch, terminate
    return parser


def add_test_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", metavar="URI", default="qemu:///system", help="libvirt URI (default qemu:///system)")
    p.add_argument("--force", action="store_true", help="boot even when this image and these checks already have a result")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto", help="auto: KVM only where a probe boot succeeds, else TCG")
    p.add_argument("--junit", metavar="FILE", type=Path, help="write JUnit XML (one testcase per check)")
    p.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    p.add_argument(
        "--user-data",
        type=Path,
        metavar="FILE",
        help="boot with FILE as cloud-init user data (a NoCloud seed disk), as `launch` gives it in a cloud; needs cloud-init in the image",
    )


def check_directory(path: Path, option: str) -> None:
    """A directory option names a directory, or a place where one can be made."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is not a directory", hint=f"give {option} a directory")


def names_from(args: argparse.Namespace) -> list[str]:
    if args.all:
        if args.names:
            raise UserError("give appliance names or --all, not both", hint="drop the names or --all")
        return list_appliance_names(PROJECT_ROOT)
    if not args.names:
        raise UserError("no appliance given", hint="name one (./build.py list shows them) or use --all")
    names = list(dict.fromkeys(args.names))
    for name in names:  # every name is known before any work starts
        appliance_path(PROJECT_ROOT, name)
    return names


def cmd_list(args: argparse.Namespace) -> int:
    if args.settings:
        print(settings_reference())
        print(targets_reference())
        return 0
    names = list_appliance_names(PROJECT_ROOT)
    width = max((len(n) for n in names), default=4)
    for name in names:
        spec = load_appliance(appliance_path(PROJECT_ROOT, name), PROJECT_ROOT)
        print(f"{name:{width}}  {spec.version:8}  {spec.distribution:10}  {spec.description}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from crust.define.distribution import load_distribution
    from crust.define.render import render

    spec = load_appliance(appliance_path(PROJECT_ROOT, args.name), PROJECT_ROOT)
    distro = load_distribution(PROJECT_ROOT, spec.distribution)
    sys.stdout.write(render(spec, distro, PROJECT_ROOT).text)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from crust.build.plan import validate_appliance
    from crust.define.roles import needed_secrets

    for name in names_from(args):
        spec, distro, _rendered, ks = validate_appliance(PROJECT_ROOT, name)
        check_targets(name)
        needs = needed_secrets(roles_dir(PROJECT_ROOT), spec.roles)
        secrets = f", build secrets: {', '.join(sorted(needs))}" if needs else ""
        print(f"{name}: ok ({distro.description}, {len(ks.packages)} packages, roles: {', '.join(spec.roles) or 'none'}{secrets})")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from crust.build.plan import explain_change, plan_appliance, validate_appliance
    from crust.build.store import Store

    store = Store(args.store)
    names = names_from(args)
    for name in names:  # all of them before the first plan reads the mirror's state; no cache written yet
        validate_appliance(PROJECT_ROOT, name, store.root / "state" / "cache", write_cache=False)
    rows = []
    for name in names:
        plan = plan_appliance(PROJECT_ROOT, name, store.root / "state", args.refresh)
        last = store.last_build(name)
        previous = {s["kind"] + (s["name"] if s["kind"] == "convert" else ""): s for s in (last or {}).get("steps", [])}
        for step in plan.steps:
            present = store.get(step.kind, step.id) is not None
            old = previous.get(step.kind + (step.name if step.kind == "convert" else ""))
            why = "" if present else explain_change(step, old)
            rows.append(
                {"appliance": name, "step": step.kind, "name": step.name, "id": step.id, "state": "up to date" if present else "will run", "why": why}
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        why = f"  because: {row['why']}" if row["why"] else ""
        print(f"{row['appliance']:12} {row['step']:8} {row['name']:18} {row['id'][:12]}  {row['state']}{why}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from crust.build.executor import Progress, build_all, make_progress, missing_steps, preflight
    from crust.build.plan import plan_appliance, validate_appliance
    from crust.build.store import Store
    from crust.define.roles import needed_secrets
    from crust.trust import secrets

    names = names_from(args)
    if args.jobs < 1:
        raise UserError(f"-j {args.jobs}: need at least one job", hint="use -j 1 or more")
    check_directory(args.output, "--output")
    given = secrets.parse_secrets(args.secrets)  # read now: a missing or unreadable file stops here
    store = Store(args.store)
    needed = {}
    for name in names:  # all of them before the first plan reads the mirror's state; no cache written yet
        spec = validate_appliance(PROJECT_ROOT, name, store.root / "state" / "cache", write_cache=False)[0]
        needed[name] = needed_secrets(roles_dir(PROJECT_ROOT), spec.roles)
    secrets.check_needed(needed, given)
    secrets.provide(given)
    plans = [plan_appliance(PROJECT_ROOT, n, store.root / "state", args.refresh, args.formats) for n in names]
    preflight(plans, store, missing_steps(plans, store))
    store.remove_stale_tmp()
    progress = make_progress() if any(store.get(s.kind, s.id) is None for p in plans for s in p.steps) else Progress()
    try:
        with store.shared():
            manifests = build_all(plans, store, args.output, roles_dir(PROJECT_ROOT), progress, args.jobs)
    finally:
        progress.close()
    for name, manifest in manifests.items():
        for artifact in manifest["artifacts"]:
            print(artifact["path"], file=sys.stderr if args.json else sys.stdout)
        print(str(args.output / name / "manifest.json"), file=sys.stderr if args.json else sys.stdout)
    if args.test:
        return run_tests(args, names)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    return run_tests(args, names_from(args))


def run_tests(args: argparse.Namespace, names: list[str]) -> int:
    from crust.boot.smoke import SmokeOptions, junit_xml, report, smoke_test
    from crust.build.store import Store, write_atomic

    store = Store(args.store)
    if args.user_data is not None and not args.user_data.is_file():
        raise UserError(f"--user-data {args.user_data}: no such file", hint="give a #cloud-config file")
    options = SmokeOptions(uri=args.connect, force=args.force, accel=args.accel, user_data=args.user_data)
    specs = []
    for name in names:
        spec = load_appliance(appliance_path(PROJECT_ROOT, name), PROJECT_ROOT)
        manifest_path = args.output / name / "manifest.json"
        if not manifest_path.is_file():
            raise UserError(f"{name} is not built ({manifest_path} is missing)", hint=f"run ./build.py build {name} (or build --test)")
        if not spec.test.checks:
            raise UserError(f"{name} declares no smoke checks", file=spec.source, hint="add [[test.checks]] tables")
        specs.append((spec, json.loads(manifest_path.read_text())))
    records = []
    for spec, manifest in specs:
        record = smoke_test(spec, manifest, args.output / spec.name, store.root / "state", options)
        report(record, sys.stderr)
        records.append(record)
    if args.junit:
        write_atomic(args.junit, junit_xml(records))
    if args.json:
        print(json.dumps(records, indent=2))
    return 0 if all(r["passed"] for r in records) else 1


def cmd_clean(args: argparse.Namespace) -> int:
    from crust.build.gc import clean, human
    from crust.build.store import Store

    if args.keep < 0:
        raise UserError(f"--keep {args.keep}: must be 0 or more", hint="use --keep 1 to keep what the last build uses")
    report = clean(Store(args.store), list_appliance_names(PROJECT_ROOT), args.keep, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for name in report.removed:
        print(f"{verb} {name}")
    print(
        f"{verb} {len(report.removed)} entries, {'would free' if args.dry_run else 'freed'} {human(report.freed_bytes)}; "
        f"kept {report.kept} entries ({human(report.kept_bytes)})"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from crust.build.gc import disk_usage, human, referenced
    from crust.build.store import Store

    store = Store(args.store)
    names = list_appliance_names(PROJECT_ROOT)
    used, _ = referenced(store, names, 1)
    by_kind: dict[str, list[int]] = {}
    unused = 0
    for entry in sorted((store.root / "steps").iterdir()):
        size = disk_usage(entry)
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
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import time

    from crust.build.plan import validate_appliance
    from crust.build.store import Store
    from crust.trust.audit import AuditPolicy, audit_image, findings_json, policy_from_kickstart

    if args.name is None and args.image is None:
        raise UserError("no appliance given", hint="name one (./build.py list shows them) or give --image PATH")
    policy = AuditPolicy()
    if args.name is not None:
        policy = policy_from_kickstart(validate_appliance(PROJECT_ROOT, args.name)[3])
    image = args.image
    if image is None:
        manifest_path = args.output / args.name / "manifest.json"
        if not manifest_path.is_file():
            raise UserError(f"{args.name} is not built ({manifest_path} is missing)", hint=f"run ./build.py build {args.name}")
        raw = [a["path"] for a in json.loads(manifest_path.read_text(encoding="utf-8"))["artifacts"] if a["format"] == "raw"]
        image = Path(raw[0]) if raw else args.output / args.name / f"{args.name}.raw"
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


COMMANDS = {
    "clean": cmd_clean,
    "test": cmd_test,
    "list": cmd_list,
    "render": cmd_render,
    "validate": cmd_validate,
    "plan": cmd_plan,
    "build": cmd_build,
    "status": cmd_status,
    "audit": cmd_audit,
    **CLOUD_COMMANDS,
}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    signal.signal(signal.SIGTERM, _terminate)
    # Files Crust and its commands create (in trees, the store, build/) get the same modes
    # whatever the caller's umask (077 would make an image's files unreadable to its services).
    os.umask(0o022)
    register_environment()  # credentials of this environment are redacted from every log line
    try:
        args = build_parser().parse_args(argv)
        if args.appliances:
            if not args.appliances.is_dir():
                raise UserError(f"--appliances {args.appliances}: no such directory", hint="give the directory that holds the NAME.toml files")
            os.environ["CRUST_APPLIANCES"] = str(args.appliances.resolve())
        if args.roles:
            if not args.roles.is_dir():
                raise UserError(f"--roles {args.roles}: no such directory", hint="give the directory that holds the roles (ROLE/tasks/main.yml)")
            os.environ["CRUST_ROLES"] = str(args.roles.resolve())
        return COMMANDS[args.verb](args)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        if exc.file and exc.file.startswith(f"{PROJECT_ROOT}/"):
            exc.file = exc.file[len(f"{PROJECT_ROOT}/") :]
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    except CrustError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted: partial outputs removed", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if not stdout_closed():  # not our reader going away: some other pipe broke, a failure
            if debug:
                traceback.print_exc()
            print(f"error: broken pipe: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
            return 1
        # The reader of our output went away (./build.py plan | head): nothing more to say.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # else Python's final flush of stdout complains
            os.close(devnull)
        return 0


def stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader is gone: writing to it fails with EPIPE."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (captured output)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))
