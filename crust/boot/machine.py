"""The smoke-test domain's life: connection, per-run files, the domain itself, cleanup.

Per run: the built image hard-linked into a directory libvirt's qemu user can reach, a qcow2
overlay over it (the image is never written), a copy of the OVMF variables, a serial log, and
an optional NoCloud seed. All of it is removed on success, failure, timeout and Ctrl-C; domains
are AUTODESTROY (they die with Crust's libvirt connection), and a killed run's leftovers are
removed by the next run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from crust import faults
from crust.boot import accel
from crust.boot.domain import DomainConfig, domain_xml
from crust.boot.guest import Guest
from crust.build.store import pid_alive
from crust.errors import UserError
from crust.runner import run

RUNS_DIR = Path(os.environ.get("CRUST_RUN_DIR", "/var/lib/crust/runs"))
DOMAIN_PREFIX = "crust-"


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


def domain_config(
    run_: Run, decision: accel.Decision, forwards: tuple[tuple[int, int], ...] = (), seed: Path | None = None, memory_mib: int = 1024
) -> DomainConfig:
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
        memory_mib=memory_mib,
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
    for name, data in (("user-data", user_data.read_bytes()), ("meta-data", f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n".encode())):
        fd = os.open(workdir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # user data may hold secrets
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    run(["mkfs.vfat", "-n", "CIDATA", "-C", str(seed), "2048"])
    run(["mcopy", "-i", str(seed), str(workdir / "user-data"), str(workdir / "meta-data"), "::"])
    seed.chmod(0o600)  # libvirt gives it to its qemu user for the run (dynamic ownership)
    return seed
