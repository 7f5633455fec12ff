"""Boot smoke tests: a built image as a transient libvirt domain, checked from host and guest.

The domain's life (per-run files, cleanup) is crust/boot/machine.py; the accelerator is
crust/boot/accel.py; the checks are crust/checks/. The serial log and the results are kept
beside the image (build/NAME/smoke/), and the manifest records the result. Results are
recorded by image digest and checks digest: an unchanged image with unchanged checks reports
the recorded result without booting, unless forced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import libvirt

from crust.boot import accel
from crust.boot.guest import Guest
from crust.boot.machine import connect, domain_config, make_seed, reap_orphans, run_files, running_domain, start_domain
from crust.boot.ports import reserved_ports
from crust.boot.report import PanicWatch, serial_lines, serial_tail
from crust.build.manifest import Manifest
from crust.build.store import write_atomic
from crust.checks import CheckContext, CheckResult, checks_digest_input, load_module, run_check
from crust.checks.kind import GuestNotReady
from crust.define.spec import ApplianceSpec
from crust.digest import digest_file, digest_json, digest_tree
from crust.errors import CrustError, UserError

PACKAGE_DIR = Path(__file__).parents[1]
CODE = ("checks", "boot")  # the code whose changes make a recorded result stale


@dataclass(frozen=True)
class SmokeOptions:
    uri: str = "qemu:///system"
    force: bool = False
    accel: str = "auto"  # auto, kvm or tcg
    user_data: Path | None = None  # cloud-init user data, served by a NoCloud seed disk


def checks_digest(spec: ApplianceSpec) -> str:
    return digest_json(
        {
            "checks": checks_digest_input(spec.test.checks),
            "ports": list(spec.test.ports),
            "boot_timeout": spec.test.boot_timeout,
            "memory_mib": spec.test.memory_mib,
            "boot_analysis": spec.test.boot_analysis,
            "module": digest_file(spec.test.module) if spec.test.module else None,
            "code": {name: digest_tree(PACKAGE_DIR / name) for name in CODE},
        }
    )


def smoke_test(spec: ApplianceSpec, manifest: Manifest, state_dir: Path, options: SmokeOptions, say: TextIO = sys.stderr) -> dict[str, Any]:
    """Boot the appliance's qcow2 and run its checks. Returns the result record, which also goes
    to build/NAME/smoke/results.json and (summarized) into the manifest."""
    qcow2 = manifest.artifact("qcow2")
    if qcow2 is None or not manifest.located(qcow2).is_file():
        raise UserError(f"{spec.name} has no built qcow2 image", hint=f"add qcow2 to image.formats and run ./build.py build {spec.name}")
    image = manifest.located(qcow2)
    assert manifest.path is not None
    out_dir = manifest.path.parent
    cdigest = checks_digest(spec)
    if options.user_data is not None:  # a boot with other user data is another test
        cdigest = hashlib.sha256(cdigest.encode() + options.user_data.read_bytes()).hexdigest()
    record_path = state_dir / "tests" / f"{qcow2.sha256[:24]}-{cdigest[:24]}.json"
    if record_path.is_file() and not options.force:
        record: dict[str, Any] = json.loads(record_path.read_text(encoding="utf-8"))
        record["reused"] = True
        print(f"{spec.name}: image and checks unchanged since {record['finished']}: reporting that run (--force boots again)", file=say)
        return record
    module = None
    if spec.test.module:
        try:
            module = load_module(spec.test.module)
        except Exception as exc:
            raise UserError(
                f"test.module {spec.test.module.name}: cannot import it: {type(exc).__name__}: {exc}",
                file=spec.source,
                hint="fix the module, or install what it imports into .venv (pyproject.toml)",
            ) from None
    conn = connect(options.uri)
    try:
        for name in reap_orphans(conn):
            print(f"{spec.name}: removed orphaned domain {name}", file=say)
        record = _boot_and_check(conn, spec, manifest, image, out_dir, options, module, say)
    finally:
        conn.close()
    record.update({"image": {"path": str(image), "sha256": qcow2.sha256}, "checks_digest": cdigest, "reused": False})
    smoke_dir = out_dir / "smoke"
    smoke_dir.mkdir(exist_ok=True)
    write_atomic(smoke_dir / "results.json", json.dumps(record, indent=2))
    (state_dir / "tests").mkdir(parents=True, exist_ok=True)
    write_atomic(record_path, json.dumps(record, indent=2))
    record_in_manifest(manifest.path, record, qcow2.sha256, options.user_data is not None)
    return record


def record_in_manifest(path: Path, record: dict[str, Any], image_sha256: str, with_user_data: bool) -> None:
    """The result's summary in the manifest, when it still describes the image tested (a build
    may have replaced it meanwhile); a boot with other user data is no test of the image as built."""
    if with_user_data:
        return
    try:
        current = Manifest.read(path)
    except (OSError, ValueError, KeyError):
        return
    tested = current.artifact("qcow2")
    if tested is None or tested.sha256 != image_sha256:
        return
    current.record_test(
        {
            "format": "qcow2",
            "image_sha256": image_sha256,
            "passed": record["passed"],
            "accel": record["accel"],
            "accel_reason": record["accel_reason"],
            "boot_to_pass_s": record["boot_to_pass_s"],
            "checks": {c["name"]: c["passed"] for c in record["checks"]},
            "not_run": record["not_run"],
            "checks_digest": record["checks_digest"],
            "finished": record["finished"],
            "results": str(path.parent / "smoke" / "results.json"),
        }
    )
    current.save()


def _boot_and_check(
    conn: Any,
    spec: ApplianceSpec,
    manifest: Manifest,
    image: Path,
    out_dir: Path,
    options: SmokeOptions,
    module: Any,
    say: TextIO,
) -> dict[str, Any]:
    smoke_dir = out_dir / "smoke"
    smoke_dir.mkdir(exist_ok=True)
    (smoke_dir / "serial-panicked.log").unlink(missing_ok=True)  # an earlier run's
    decision = accel.decide(conn, options.uri, options.accel)
    announced = False  # the reason for TCG is printed once, when KVM failed in this run
    first_panic: dict[str, Any] | None = None  # the guest kernel panicked in the first boot: booted once more
    with reserved_ports(len(spec.test.ports)) as ports:
        forwards = dict(zip(spec.test.ports, ports, strict=True))
        while True:  # a second pass after a failed KVM attempt (TCG) or a guest kernel panic, on fresh run files
            with run_files(image, spec.name) as run_:
                kvm_try = decision.accel == "kvm"
                seed = make_seed(run_.workdir, run_.name, spec.name, options.user_data) if options.user_data else None
                cfg = domain_config(run_, decision, tuple((host, guest) for guest, host in forwards.items()), seed, spec.test.memory_mib)
                started_wall = dt.datetime.now(dt.UTC)
                started = time.monotonic()
                try:
                    dom = start_domain(conn, cfg)
                except libvirt.libvirtError as exc:
                    if not kvm_try:
                        raise CrustError(f"libvirt could not start the smoke-test domain: {accel.first_line(exc)}") from None
                    decision = accel.start_failed(decision, options.uri, exc)
                    print(f"{spec.name}: {decision.reason}", file=say)
                    announced = True
                    continue
                with running_domain(dom):
                    guest = Guest(dom)
                    if decision.probe or decision.required:
                        works, why = accel.watch_probe(dom, guest.ping, accel.probe_seconds())
                        if decision.required and not works:
                            tail = serial_tail(run_.serial_log, 10).replace("\n", " | ")
                            raise accel.KvmFailed(
                                f"KVM was requested (--accel kvm) but {why} (fix: --accel auto falls back to TCG, --accel tcg forces it); "
                                f"serial console: {tail}"
                            )
                        if decision.probe:
                            decision = accel.after_probe(accel.remember(options.uri, works, why))
                            if not works:
                                print(f"{spec.name}: {decision.reason}", file=say)
                                announced = True
                                continue  # leaves both withs: the KVM domain and its run files are gone
                    why = "see above" if announced else decision.reason
                    print(f"{spec.name}: booting build {manifest.build_id} as {run_.name} under {decision.accel} ({why})", file=say)
                    if simulate_guest_fault(guest, started + spec.test.boot_timeout, first=first_panic is None):
                        print(f"{spec.name}: test hook {GUEST_FAULT_ENV}: panic made {time.monotonic() - started:.1f}s after start", file=say)
                    panicked = PanicWatch(run_.serial_log)
                    ctx = CheckContext(
                        forwards,
                        guest,
                        started,
                        module,
                        stopped=functools.partial(guest_stopped, dom, panicked),
                        console=functools.partial(serial_lines, run_.serial_log),
                    )
                    results: list[CheckResult] = []
                    deadline = started + spec.test.boot_timeout
                    for check in spec.test.checks:
                        result = run_check(check, ctx, deadline)
                        results.append(result)
                        mark = "PASS" if result.passed else "FAIL"
                        print(f"  {mark}  {result.name:44} at {result.at_s:6.1f}s  (took {result.duration_s:.1f}s)", file=say)
                        if not result.passed:
                            break
                    passed_all = bool(results) and results[-1].passed
                    panic = None if passed_all else panicked()  # what the checks' waits read, and the rest
                    analysis = boot_analysis(guest) if passed_all and spec.test.boot_analysis else ""
                    journal = "" if passed_all or panic else failed_units_journal(guest)
                if run_.serial_log.exists():
                    shutil.copy(run_.serial_log, smoke_dir / "serial.log")
                if panic and first_panic is None:
                    # A guest that panics once and boots the next time is the host's emulation at
                    # fault (seen rarely, in kfree and free_unref_page), not the image: one more boot,
                    # said and recorded. An image that panics panics again and fails.
                    at = time.monotonic() - started
                    shutil.copy(smoke_dir / "serial.log", smoke_dir / "serial-panicked.log")
                    first_panic = {
                        "panic": panic,
                        "at_s": round(at, 1),
                        "accel": decision.accel,
                        "serial_log": str(smoke_dir / "serial-panicked.log"),
                    }
                    where = ""
                    if kvm_try and not decision.required:  # a guest that faults under KVM: KVM does not work here
                        decision = accel.after_probe(accel.remember(options.uri, False, f"the guest kernel panicked under KVM ({panic})"))
                        where = " under TCG"
                    print(
                        f"{spec.name}: the guest kernel panicked {at:.0f}s after start ({panic}); "
                        f"booting once more{where} to tell a fault of this host from one of the image",
                        file=say,
                    )
                    continue
            break
    passed = len(results) == len(spec.test.checks) and all(r.passed for r in results)
    record: dict[str, Any] = {
        "appliance": spec.name,
        "build_id": manifest.build_id,
        "accel": decision.accel,
        "accel_reason": decision.reason,
        "accel_decision": decision.record(),
        "domain": run_.name,
        "started": started_wall.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "passed": passed,
        "boot_to_pass_s": results[-1].at_s if passed and results else None,
        "checks": [asdict(r) for r in results],
        "not_run": [c.name for c in spec.test.checks[len(results) :]],
        "serial_log": str(smoke_dir / "serial.log"),
        "notes": ctx.notes,
        "boot_analysis": analysis,
        "first_boot_panicked": first_panic,
    }
    if not passed:
        failed = results[-1] if results else None
        record["failure"] = {
            "check": failed.name if failed else "boot",
            "expected": failed.expected if failed else "a booted guest",
            "seen": failed.seen if failed else "no checks ran",
            "console_tail": serial_tail(smoke_dir / "serial.log"),
            "failed_units": journal,
        }
    return record


def guest_stopped(dom: Any, panicked: PanicWatch) -> str | None:
    """Why the guest no longer runs: its domain stopped, or its kernel panicked."""
    trouble = accel.stopped(dom)
    if trouble is None and (line := panicked()) is not None:
        trouble = f"the guest kernel panicked ({line})"
    return trouble


GUEST_FAULT_ENV = "CRUST_FAULT_GUEST"


def simulate_guest_fault(guest: Guest, deadline: float, first: bool) -> bool:
    """Test hook (not a user feature): CRUST_FAULT_GUEST=panic makes the first boot's guest kernel
    panic as soon as its agent answers (sysrq's crash), =panic-always every boot's, so the second
    boot and the failure after two panics are tested on any host. True when it made one."""
    mode = os.environ.get(GUEST_FAULT_ENV)
    if not (mode == "panic-always" or (mode == "panic" and first)):
        return False
    while not guest.ping():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    with contextlib.suppress(GuestNotReady):
        guest.exec(["/bin/sh", "-c", "echo c > /proc/sysrq-trigger"], timeout=5)
    return True


def failed_units_journal(guest: Guest, most: int = 3, lines: int = 25) -> str:
    """The guest's failed units and the last journal lines of each (the first few): why a
    service a check waited for is not there. Empty when the agent does not answer."""
    try:
        failed = guest.exec(["systemctl", "--failed", "--no-legend", "--plain", "--no-pager"], timeout=20)
        units = [line.split()[0] for line in failed.stdout.splitlines() if line.strip()][:most]
        parts = []
        for unit in units:
            journal = guest.exec(["journalctl", "-b", "-u", unit, "--no-pager", "-o", "cat", "-n", str(lines)], timeout=20)
            parts.append(f"{unit}:\n{journal.stdout.rstrip()}")
    except GuestNotReady:
        return ""
    return "\n".join(parts)


# systemd-analyze's three views, run side by side in one guest process: each walks every unit
# over D-Bus, 7-11 s apiece under TCG, about 12 s for all three at once against 20-28 s in turn.
VIEW_END = "--crust-view--"
ANALYSIS_SCRIPT = (
    "d=$(mktemp -d) || exit 1; "
    "systemd-analyze >$d/0 2>/dev/null & "
    "systemd-analyze critical-chain --no-pager >$d/1 2>/dev/null & "
    "systemd-analyze blame --no-pager >$d/2 2>/dev/null & "
    f"wait; for i in 0 1 2; do cat $d/$i; echo '{VIEW_END}'; done; rm -rf $d"
)


def boot_analysis(guest: Guest) -> str:
    """systemd's own account of the boot (firmware, loader, kernel, userspace, critical chain,
    blame); empty when the agent does not answer in time."""
    try:
        result = guest.exec(["/bin/sh", "-c", ANALYSIS_SCRIPT], timeout=60)
    except GuestNotReady:
        return ""
    views = [v.strip() for v in result.stdout.split(VIEW_END)[:3]]
    return "\n\n".join(v for v in views if v)
