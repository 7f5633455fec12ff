"""Boot smoke tests: a built image as a transient libvirt domain, checked from host and guest.

Per run: a qcow2 overlay over the built image (the image is never written), a copy of the
OVMF variables, reserved loopback ports, a serial log. All of it (and the domain) is removed on
success, failure, timeout and Ctrl-C; the serial log and the results are kept beside the image.
Results are recorded by image digest and checks digest: an unchanged image with unchanged
checks reports the recorded result without booting, unless forced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import libvirt

from crust import faults
from crust.boot import accel
from crust.boot.domain import DomainConfig, domain_xml
from crust.boot.guest import Guest, GuestNotReady
from crust.boot.ports import reserved_ports
from crust.build.store import pid_alive, write_atomic
from crust.checks import CheckContext, CheckResult, checks_digest_input, load_module, run_check
from crust.define.spec import ApplianceSpec
from crust.digest import digest_file, digest_json
from crust.errors import CrustError, UserError
from crust.runner import run

RUNS_DIR = Path(os.environ.get("CRUST_RUN_DIR", "/var/lib/crust/runs"))
DOMAIN_PREFIX = "crust-"
CODE_FILES = ("checks/__init__.py", "boot/smoke.py", "boot/domain.py", "boot/guest.py", "boot/accel.py")


@dataclass(frozen=True)
class SmokeOptions:
    uri: str = "qemu:///system"
    force: bool = False
    accel: str = "auto"  # auto, kvm or tcg
    user_data: Path | None = None  # cloud-init user data, served by a NoCloud seed disk


def connect(uri: str) -> Any:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # no stderr noise; errors raise
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        hint = (
            "start libvirt: virtlogd -d && libvirtd -d (./setup.sh does this)"
            if uri.startswith("qemu:///")
            else "check the URI and that libvirtd runs there"
        )
        raise UserError(f"no libvirt daemon answers at {uri}: {str(exc).splitlines()[0]}", hint=hint) from None


def reap_orphans(conn: Any) -> list[str]:
    """Destroy crust domains whose creating process is gone (e.g. killed with SIGKILL), and
    remove such processes' run directories (image link, overlay, variables)."""
    reaped = []
    if RUNS_DIR.is_dir():
        for workdir in RUNS_DIR.glob(f"{DOMAIN_PREFIX}*"):
            parts = workdir.name.split("-")
            if len(parts) >= 3 and parts[-2].isdigit() and not pid_alive(int(parts[-2])):
                shutil.rmtree(workdir, ignore_errors=True)
    for dom in conn.listAllDomains():
        parts = dom.name().split("-")
        if dom.name().startswith(DOMAIN_PREFIX) and len(parts) >= 3 and parts[-2].isdigit():
            pid = int(parts[-2])
            try:
                os.kill(pid, 0)
                continue
            except ProcessLookupError:
                pass
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            reaped.append(dom.name())
    return reaped


def checks_digest(spec: ApplianceSpec) -> str:
    here = Path(__file__).parents[1]
    return digest_json(
        {
            "checks": checks_digest_input(spec.test.checks),
            "ports": list(spec.test.ports),
            "boot_timeout": spec.test.boot_timeout,
            "module": digest_file(spec.test.module) if spec.test.module else None,
            "code": {name: digest_file(here / name) for name in CODE_FILES},
        }
    )


@dataclass
class Run:
    """What one boot needs and leaves behind."""

    name: str
    workdir: Path  # overlay and nvram (removed)
    serial_log: Path


@contextlib.contextmanager
def running_domain(dom: Any) -> Iterator[Any]:
    """Destroy the started domain on the way out (it also dies with Crust's libvirt connection:
    domains are created AUTODESTROY, so even when Crust is killed)."""
    try:
        faults.point("test.domain")
        yield dom
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()


def domain_config(run_: Run, decision: accel.Decision, forwards: tuple[tuple[int, int], ...] = (), seed: Path | None = None) -> DomainConfig:
    """The domain of one boot attempt under decision (a KVM attempt may carry a simulated fault)."""
    kvm_try = decision.accel == "kvm"
    return DomainConfig(
        name=run_.name,
        accel="tcg" if accel.probe_domain_type(decision) == "qemu" else decision.accel,
        disk=run_.workdir / "overlay.qcow2",
        nvram=run_.workdir / "vars.fd",
        serial_log=run_.serial_log,
        forwards=forwards,
        seed=seed,
        agent=not (kvm_try and accel.fault_drops_agent()),
        extra_args=accel.fault_extra_args() if kvm_try else (),
    )


def choose_accel(uri: str, want: str, image: Path) -> accel.Decision:
    """The accelerator for a boot that is not a smoke test (the test suite's plain-qemu boot):
    the same decision as `test`, with a probe boot of image (through libvirt) when this host
    boot has no verdict yet."""
    conn = connect(uri)
    try:
        decision = accel.decide(conn, uri, want)
        if not (decision.probe or decision.required):
            return decision
        with run_files(image, "probe") as run_:
            try:
                dom = start_domain(conn, domain_config(run_, decision))
            except libvirt.libvirtError as exc:
                return accel.start_failed(decision, uri, exc)
            with running_domain(dom):
                works, why = accel.watch_probe(dom, Guest(dom).ping, accel.probe_seconds())
        if decision.required:
            if not works:
                raise accel.KvmFailed(f"KVM was requested (--accel kvm) but {why} (fix: --accel auto falls back to TCG, --accel tcg forces it)")
            return decision
        return accel.after_probe(accel.remember(uri, works, why))
    finally:
        conn.close()


def start_domain(conn: Any, cfg: DomainConfig) -> Any:
    """Start a transient domain; libvirt.libvirtError when it does not start."""
    return conn.createXML(domain_xml(cfg), libvirt.VIR_DOMAIN_START_AUTODESTROY)


@contextlib.contextmanager
def run_files(image: Path, label: str) -> Iterator[Run]:
    """A per-run directory that libvirt's unprivileged qemu user can reach; removed after.

    The built image is hard-linked into it (copied across file systems), because the image's
    own directory may not be traversable by that user (a project under /root, say); qemu only
    reads it, through a per-run qcow2 overlay.
    """
    name = f"{DOMAIN_PREFIX}{label}-{os.getpid()}-{secrets.token_hex(3)}"
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    RUNS_DIR.chmod(0o755)
    workdir = RUNS_DIR / name
    workdir.mkdir()
    workdir.chmod(0o755)
    try:
        base = workdir / "image.qcow2"
        try:
            os.link(image, base)
        except OSError:
            shutil.copyfile(image, base)
        overlay = workdir / "overlay.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)])
        yield Run(name, workdir, workdir / "serial.log")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def make_seed(workdir: Path, instance_id: str, hostname: str, user_data: Path) -> Path:
    """A NoCloud seed: a small FAT file system labelled CIDATA with user-data and meta-data,
    which cloud-init's ds-identify finds as it finds a cloud's; a fresh instance id per run."""
    seed = workdir / "seed.img"
    (workdir / "user-data").write_bytes(user_data.read_bytes())
    (workdir / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n", encoding="utf-8")
    run(["mkfs.vfat", "-n", "CIDATA", "-C", str(seed), "2048"])
    run(["mcopy", "-i", str(seed), str(workdir / "user-data"), str(workdir / "meta-data"), "::"])
    seed.chmod(0o644)
    return seed


ANSI = re.compile(r"\x1b(\[[0-9;?=]*[A-Za-z]|\][^\x07]*\x07|[()][A-Za-z0-9]|[=>])")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    """Console text without terminal escapes and control characters (safe in XML too)."""
    return CONTROL.sub("", ANSI.sub("", text))


def serial_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no serial output)"
    clean = [printable(line).rstrip() for line in text.replace("\r", "\n").splitlines() if printable(line).strip()]
    return "\n".join(clean[-lines:]) or "(no serial output)"


def smoke_test(
    spec: ApplianceSpec, manifest: dict[str, Any], out_dir: Path, state_dir: Path, options: SmokeOptions, say: TextIO = sys.stderr
) -> dict[str, Any]:
    """Boot the appliance's qcow2 and run its checks. Returns the result record."""
    qcow2 = next((Path(a["path"]) for a in manifest["artifacts"] if a["format"] == "qcow2"), None)
    if qcow2 is None or not qcow2.is_file():
        raise UserError(f"{spec.name} has no built qcow2 image", hint=f"add qcow2 to image.formats and run ./build.py build {spec.name}")
    image_digest = next(a["sha256"] for a in manifest["artifacts"] if a["format"] == "qcow2")
    cdigest = checks_digest(spec)
    if options.user_data is not None:  # a boot with other user data is another test
        cdigest = hashlib.sha256(cdigest.encode() + options.user_data.read_bytes()).hexdigest()
    record_path = state_dir / "tests" / f"{image_digest[:24]}-{cdigest[:24]}.json"
    if record_path.is_file() and not options.force:
        record: dict[str, Any] = json.loads(record_path.read_text())
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
        record = _boot_and_check(conn, spec, manifest, qcow2, out_dir, options, module, say)
    finally:
        conn.close()
    record.update({"image": {"path": str(qcow2), "sha256": image_digest}, "checks_digest": cdigest, "reused": False})
    smoke_dir = out_dir / "smoke"
    smoke_dir.mkdir(exist_ok=True)
    write_atomic(smoke_dir / "results.json", json.dumps(record, indent=2))
    (state_dir / "tests").mkdir(parents=True, exist_ok=True)
    write_atomic(record_path, json.dumps(record, indent=2))
    return record


def _boot_and_check(
    conn: Any,
    spec: ApplianceSpec,
    manifest: dict[str, Any],
    image: Path,
    out_dir: Path,
    options: SmokeOptions,
    module: Any,
    say: TextIO,
) -> dict[str, Any]:
    smoke_dir = out_dir / "smoke"
    smoke_dir.mkdir(exist_ok=True)
    decision = accel.decide(conn, options.uri, options.accel)
    announced = False  # the reason for TCG is printed once, when KVM failed in this run
    with reserved_ports(len(spec.test.ports)) as ports:
        forwards = dict(zip(spec.test.ports, ports, strict=True))
        while True:  # a second pass only after a failed KVM attempt: TCG, on fresh run files
            with run_files(image, spec.name) as run_:
                kvm_try = decision.accel == "kvm"
                seed = make_seed(run_.workdir, run_.name, spec.name, options.user_data) if options.user_data else None
                cfg = domain_config(run_, decision, tuple((host, guest) for guest, host in forwards.items()), seed)
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
                    print(f"{spec.name}: booting build {manifest['build_id']} as {run_.name} under {decision.accel} ({why})", file=say)
                    ctx = CheckContext(forwards, guest, started, module, stopped=functools.partial(accel.stopped, dom))
                    results: list[CheckResult] = []
                    deadline = started + spec.test.boot_timeout
                    for check in spec.test.checks:
                        result = run_check(check, ctx, deadline)
                        results.append(result)
                        mark = "PASS" if result.passed else "FAIL"
                        print(f"  {mark}  {result.name:44} at {result.at_s:6.1f}s  (took {result.duration_s:.1f}s)", file=say)
                        if not result.passed:
                            break
                    analysis = boot_analysis(guest) if results and results[-1].passed else ""
                if run_.serial_log.exists():
                    shutil.copy(run_.serial_log, smoke_dir / "serial.log")
            break
    passed = len(results) == len(spec.test.checks) and all(r.passed for r in results)
    record: dict[str, Any] = {
        "appliance": spec.name,
        "build_id": manifest["build_id"],
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
    }
    if not passed:
        failed = results[-1] if results else None
        record["failure"] = {
            "check": failed.name if failed else "boot",
            "expected": failed.expected if failed else "a booted guest",
            "seen": failed.seen if failed else "no checks ran",
            "console_tail": serial_tail(smoke_dir / "serial.log"),
        }
    return record


def boot_analysis(guest: Guest) -> str:
    """systemd's own account of the boot (firmware, loader, kernel, userspace, critical chain)."""
    parts = []
    for argv in (["systemd-analyze"], ["systemd-analyze", "critical-chain", "--no-pager"], ["systemd-analyze", "blame", "--no-pager"]):
        try:
            result = guest.exec(argv, timeout=20)
        except GuestNotReady:
            continue
        parts.append(result.stdout.strip())
    return "\n\n".join(parts)


def report(record: dict[str, Any], stream: TextIO) -> None:
    name = record["appliance"]
    if record["passed"]:
        print(
            f"{name}: all {len(record['checks'])} checks passed, {record['boot_to_pass_s']:.1f}s from domain start ({record['accel']})", file=stream
        )
        return
    f = record["failure"]
    print(f"{name}: FAILED check {f['check']!r}", file=stream)
    print(f"  expected: {f['expected']}", file=stream)
    print(f"  seen:     {f['seen']}", file=stream)
    if record.get("not_run"):
        print(f"  not run:  {', '.join(record['not_run'])}", file=stream)
    print(f"  last lines of the serial console ({record['serial_log']}):", file=stream)
    for line in f["console_tail"].splitlines():
        print(f"    | {line}", file=stream)


def junit_xml(records: list[dict[str, Any]]) -> str:
    suites = ET.Element("testsuites")
    for rec in records:
        checks = rec["checks"]
        failures = sum(1 for c in checks if not c["passed"]) + len(rec.get("not_run", []))
        suite = ET.SubElement(
            suites,
            "testsuite",
            {
                "name": f"crust.smoke.{rec['appliance']}",
                "tests": str(len(checks) + len(rec.get("not_run", []))),
                "failures": str(failures),
                "time": f"{sum(c['duration_s'] for c in checks):.2f}",
                "timestamp": rec["started"],
            },
        )
        for c in checks:
            case = ET.SubElement(suite, "testcase", {"classname": rec["appliance"], "name": c["name"], "time": f"{c['duration_s']:.2f}"})
            if not c["passed"]:
                fail = ET.SubElement(case, "failure", {"message": f"expected {c['expected']}; saw {c['seen']}"})
                fail.text = rec.get("failure", {}).get("console_tail", "")
        for skipped in rec.get("not_run", []):
            case = ET.SubElement(suite, "testcase", {"classname": rec["appliance"], "name": skipped, "time": "0"})
            ET.SubElement(case, "skipped", {"message": "not run: an earlier check failed"})
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)
