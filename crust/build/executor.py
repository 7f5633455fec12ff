"""Run build plans: each missing step is built into the store, then artifacts are published.

Published artifacts (build/NAME/NAME.raw, NAME.qcow2, manifest.json) are hard links to the
store's entries (a copy across file systems), written under a temporary name and renamed.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from crust import __version__, faults
from crust.build.plan import AppliancePlan, Step
from crust.build.store import Entry, Store
from crust.define.spec import FORMATS
from crust.digest import digest_file, digest_text
from crust.errors import NO_SPACE, CommandError, DiskFull, StepFailed, UserError
from crust.runner import check_tools, logging_to, run

STEP_TOOLS = {
    "base": ["mmdebstrap", "unshare", "mount"],
    "packages": ["unshare", "mount", "chroot", "dpkg-query", "cp"],
    "tree": ["unshare", "mount", "chroot", "systemctl", "useradd", "dpkg-query", "ansible-playbook", "cp"],
    "image": ["sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "mmd", "dd", "unshare", "grep"],
    "convert": ["qemu-img"],
}
GIB = 1024**3


class Progress:
    """Plain progress: one line per step event (for logs and pipes); thread-safe."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def say(self, step: Step, text: str) -> None:
        with self.lock:
            print(f"[{step.name}] {step.kind:8} {text}", file=self.stream, flush=True)

    def running(self, step: Step, log: Path) -> None:
        self.say(step, f"running (log: {log})")

    def finished(self, step: Step, text: str) -> None:
        self.say(step, text)

    def close(self) -> None:
        pass


class LiveProgress(Progress):
    """On a terminal: a live line per running step with its elapsed time (rich), and a
    permanent line for each finished one."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import Progress as RichProgress
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream)
        self.rich = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console, transient=True)
        self.tasks: dict[str, Any] = {}
        self.rich.start()

    def say(self, step: Step, text: str) -> None:
        with self.lock:
            self.console.print(f"[{step.name}] {step.kind:8} {text}", markup=False, highlight=False)

    def running(self, step: Step, log: Path) -> None:
        with self.lock:
            self.tasks[step.key] = self.rich.add_task(f"[{step.name}] {step.kind:8} running (log: {log.name})", total=None)

    def finished(self, step: Step, text: str) -> None:
        with self.lock:
            task = self.tasks.pop(step.key, None)
            if task is not None:
                self.rich.remove_task(task)
        self.say(step, text)

    def close(self) -> None:
        self.rich.stop()


def make_progress(stream: TextIO = sys.stderr) -> Progress:
    return LiveProgress(stream) if stream.isatty() else Progress(stream)


@dataclass(frozen=True)
class Built:
    entry: Entry
    cached: bool


def preflight(plans: list[AppliancePlan], store: Store, needed: list[Step]) -> None:
    """Errors before work: root, tools, disk space."""
    if not needed:
        return
    if os.geteuid() != 0:
        raise UserError("building images needs root (mmdebstrap, chroot, file ownership in the tree)", hint="run with sudo")
    tools = sorted({t for s in needed for t in STEP_TOOLS[s.kind]})
    if any(p.distro.uki == "objcopy" for p in plans):
        tools.append("objcopy")
    check_tools(tools)
    free = shutil.disk_usage(store.root).free
    need = 0
    for step in needed:
        if step.kind == "base":
            need += 2 * GIB
        elif step.kind in ("packages", "tree"):
            need += 2 * GIB
        else:
            plan = next(p for p in plans if step.name.split(".")[0] == p.spec.name)
            need += plan.layout.root_size_mib * 1024 * 1024 // 2
    if free < need:
        raise UserError(
            f"not enough disk space in {store.root}: {free / GIB:.1f} GiB free, this build needs about {need / GIB:.1f} GiB",
            hint="free some space (./build.py clean) or use --store on a bigger disk",
        )


def missing_steps(plans: list[AppliancePlan], store: Store) -> list[Step]:
    seen: dict[str, Step] = {}
    for plan in plans:
        for step in plan.steps:
            if step.key not in seen and store.get(step.kind, step.id) is None:
                seen[step.key] = step
    return list(seen.values())


def ensure(store: Store, step: Step, action: Callable[[Path], dict[str, Any]], progress: Progress) -> Built:
    """The step's store entry: reused when present, else built (under the step's lock)."""
    entry = store.get(step.kind, step.id)
    if entry is not None:
        progress.say(step, f"up to date ({step.id[:12]})")
        return Built(entry, True)
    with store.lock(step.id, on_wait=lambda: progress.say(step, "waiting: another build is making this step")):
        entry = store.get(step.kind, step.id)
        if entry is not None:
            progress.say(step, f"built by another build ({step.id[:12]})")
            return Built(entry, True)
        log_path = store.log_path(step.kind, step.id)
        progress.running(step, log_path)
        started = time.monotonic()
        try:
            with open(log_path, "w", encoding="utf-8") as log, logging_to(log), store.building(step.kind, step.id) as tmp:
                try:
                    outputs = action(tmp)
                    duration = time.monotonic() - started
                    meta = {
                        "kind": step.kind,
                        "name": step.name,
                        "id": step.id,
                        "inputs": dict(step.inputs),
                        "explain": dict(step.explain),
                        "duration_s": round(duration, 2),
                        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "crust_version": __version__,
                        "outputs": outputs,
                    }
                    entry = store.commit(step.kind, step.id, tmp, meta)
                except (CommandError, OSError) as exc:
                    progress.finished(step, f"FAILED after {time.monotonic() - started:.1f}s")
                    full = disk_full(exc, tmp, f"{step.kind} step of {step.name}")
                    if full is not None:
                        raise full from exc
                    if isinstance(exc, CommandError):
                        raise StepFailed(f"{step.kind} step of {step.name} failed: {exc}") from exc
                    raise
                except BaseException:
                    progress.finished(step, f"stopped after {time.monotonic() - started:.1f}s")
                    raise
        except OSError as exc:  # the step log's last write (on close) can fail on a full disk too
            if isinstance(exc.__context__, DiskFull):
                raise exc.__context__ from None
            full = disk_full(exc, store.root / "tmp", f"{step.kind} step of {step.name}")
            if full is not None:
                raise full from exc
            raise
        progress.finished(step, f"built in {duration:.1f}s")
        return Built(entry, False)


# Words in a failed command's output that let low free space explain the failure.
SPACE_WORDS = ("space", "writ", "enospc", "quota")  # writ: write, writing, written


def disk_full(exc: BaseException, folder: Path, what: str) -> DiskFull | None:
    """A DiskFull error when exc comes from a full disk under folder: ENOSPC, or a command
    that says so, or one that failed writing (its output speaks of space or writes: tools word
    ENOSPC differently) with less than 32 MiB left there. Any other failure keeps its own
    message, however little space is left."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if isinstance(exc, OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    elif isinstance(exc, CommandError):
        tail = exc.tail.lower()
        writing = any(word in tail for word in SPACE_WORDS)
        full = NO_SPACE in tail or (writing and free < 32 * 1024 * 1024)
    else:
        full = False
    return DiskFull(what, folder, free) if full else None


def drop_corrupt_facts(facts: Path) -> None:
    """Ansible's fact cache writes in place: a build killed during that write leaves a file
    that would fail the next run ("the cache file was corrupt ... re-run"). Drop such files."""
    if not facts.is_dir():
        return
    for path in facts.iterdir():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            path.unlink(missing_ok=True)


def file_facts(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"sha256": digest_file(path), "size": st.st_size, "allocated": st.st_blocks * 512}


def make_base(plan: AppliancePlan) -> Callable[[Path], dict[str, Any]]:
    def action(tmp: Path) -> dict[str, Any]:
        from crust.distros.debian.bootstrap import build_base
        from crust.tree.configure import installed_packages

        build_base(plan.distro, tmp, tmp / "tree")
        return {"packages": installed_packages(tmp / "tree")}

    return action


def make_packages(plan: AppliancePlan, base: Entry) -> Callable[[Path], dict[str, Any]]:
    def action(tmp: Path) -> dict[str, Any]:
        from crust.build.plan import package_list
        from crust.tree import configure

        tree = tmp / "tree"
        run(["cp", "-a", "--reflink=auto", str(base.path / "tree"), str(tree)])
        configure.guard_services(tree)
        configure.use_host_resolver(tree)
        configure.write_repos(tree, plan.ks.repos, plan.distro.keyring)
        configure.install_packages(tree, plan.ks, package_list(plan.ks, plan.distro))
        return {"packages": configure.installed_packages(tree)}

    return action


def make_tree(plan: AppliancePlan, packages: Entry, roles_dir: Path, facts_root: Path) -> Callable[[Path], dict[str, Any]]:
    ks = plan.ks

    def action(tmp: Path) -> dict[str, Any]:
        from crust.tree import ansible, configure
        from crust.tree.configure import installed_packages
        from crust.tree.seal import seal

        tree = tmp / "tree"
        work = tmp / "work"
        work.mkdir()
        run(["cp", "-a", "--reflink=auto", str(packages.path / "tree"), str(tree)])
        configure.set_timezone(tree, ks.timezone)
        configure.set_lang(tree, ks.lang)
        configure.generate_locales(tree, ks.lang)
        configure.set_keyboard(tree, ks.keymap)
        configure.configure_network(tree, ks.network)
        configure.set_root_password(tree, ks.root_password_hash)
        configure.create_users(tree, ks.users)
        configure.install_ssh_keys(tree, ks.sshkeys)
        configure.write_fstab(tree, plan.layout.root_uuid, ks.root_grow)
        if ks.root_grow:
            configure.write_grow_config(tree)
        configure.write_kernel_cmdline(tree, plan.layout.cmdline)
        configure.mask_generators(tree, plan.distro.masked_generators)
        facts = facts_root / digest_text(packages.path.name + plan.rendered.text)[:24]
        drop_corrupt_facts(facts)
        # What %packages installed (name -> version): the roles check their packages in it.
        variables = {**plan.variables, "crust_packages": packages.meta["outputs"]["packages"]}
        ansible.apply_roles(tree, plan.roles, variables, roles_dir, work, facts)
        configure.set_services(tree, configure.network_services(tree) + ks.services_enabled, ks.services_disabled)
        configure.run_scripts(tree, ks.scripts, work)
        faults.point("tree.seal")
        seal(tree, ks)
        shutil.rmtree(work)
        return {"packages": installed_packages(tree), "kernel": sorted(p.name for p in (tree / "boot").glob("vmlinuz-*"))}

    return action


def make_image(plan: AppliancePlan, tree: Entry) -> Callable[[Path], dict[str, Any]]:
    def action(tmp: Path) -> dict[str, Any]:
        from crust.disk.assemble import assemble
        from crust.runner import log_line
        from crust.trust.audit import audit_tree, findings_json, policy_from_kickstart, summarize
        from crust.trust.sbom import Subject, write_sbom

        # The sealed tree is the image's root file system: audit it (a finding fails the
        # build, nothing is published) while the disk is assembled from it — the audit is
        # Python, the assembly external tools, so the two share the cores — and list its
        # packages in the SBOM.
        faults.point("image.start")
        disk = tmp / "disk.raw"
        with ThreadPoolExecutor(1, thread_name_prefix="audit") as pool:
            audit = pool.submit(audit_tree, tree.path / "tree", policy_from_kickstart(plan.ks))
            assemble(tree.path / "tree", plan.layout, tmp, disk, plan.image.id)
            facts = file_facts(disk)  # hashed while the audit may still run: hashlib lets go of the GIL
            findings = audit.result()
        for finding in findings:
            log_line(f"audit: {finding}")
        if findings:
            raise StepFailed(f"image step of {plan.spec.name} failed: the audit found {summarize(findings)}")
        os.chmod(disk, 0o444)
        sbom = tmp / "sbom.cdx.json"
        subject = Subject(plan.spec.name, plan.spec.version, plan.spec.description, facts["sha256"], {"distribution": plan.distro.name})
        counts = write_sbom(tree.path / "tree", subject, sbom)
        os.chmod(sbom, 0o444)
        return {"disk.raw": facts, "audit": findings_json(findings), "sbom.cdx.json": {**file_facts(sbom), **counts}}

    return action


def make_convert(plan: AppliancePlan, image: Entry, fmt: str, vmdk: Path | None) -> Callable[[Path], dict[str, Any]]:
    from crust.formats import Machine, convert

    machine = Machine(plan.spec.name, plan.spec.version, plan.spec.description)

    def action(tmp: Path) -> dict[str, Any]:
        out = tmp / f"disk.{fmt}"
        convert(image.path / "disk.raw", fmt, out, plan.spec.image.compress, machine, vmdk)
        os.chmod(out, 0o444)
        return {f"disk.{fmt}": file_facts(out)}

    return action


def stage(src: Path, dest: Path) -> Path:
    """Hard-link (or copy, across file systems) src beside dest under a temporary name."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        run(["cp", "--sparse=always", "--reflink=auto", str(src), str(tmp)])
    return tmp


PREVIOUS_MANIFEST = ".manifest.json.previous"


def publish(out_dir: Path, files: list[tuple[Path, Path]], manifest: dict[str, Any], gone: list[Path]) -> None:
    """Make out_dir hold these artifacts (src, dest) and manifest, and none of gone.

    manifest.json never names a file that does not match it: (1) every artifact is staged
    under a temporary name (the slow part; nothing visible changes), (2) the old manifest is
    moved aside, (3) the artifacts are renamed into place, (4) the new manifest is written by
    rename and the old one dropped. A build killed on the way leaves at worst complete
    artifacts without a manifest.json (commands that need one say the appliance is not built)
    and temporary files, which the next build removes (remove_stale_files).
    """
    from crust.build.store import remove_stale_files

    remove_stale_files(out_dir)
    staged: list[tuple[Path, Path]] = []
    current, previous = out_dir / "manifest.json", out_dir / PREVIOUS_MANIFEST
    tmp = out_dir / f".manifest.json.tmp-{os.getpid()}"
    renamed, moved_aside = 0, False
    try:
        for src, dest in files:
            if dest.exists() and os.path.samefile(src, dest):
                continue  # already this very file (a hard link): renaming onto it would do nothing
            staged.append((stage(src, dest), dest))
        faults.point("publish.staged")
        keep_cloud_records(current if current.exists() else previous, manifest)
        if current.exists():
            os.replace(current, previous)
            moved_aside = True
        for staged_file, dest in staged:
            os.replace(staged_file, dest)
            renamed += 1
            faults.point("publish.artifact")
        for path in gone:  # what an earlier build published and this one did not
            path.unlink(missing_ok=True)
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        faults.point("publish.manifest")
        os.replace(tmp, current)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        for _src, dest in files:  # staged, or half-copied by cp
            dest.with_name(f".{dest.name}.tmp-{os.getpid()}").unlink(missing_ok=True)
        if moved_aside and renamed == 0:
            os.replace(previous, current)  # nothing replaced yet: the old manifest still holds
        full = disk_full(exc, out_dir, f"publishing {out_dir.name}") if isinstance(exc, (CommandError, OSError)) else None
        if full is not None:
            raise full from exc
        raise
    previous.unlink(missing_ok=True)


def raw_digest(manifest: dict[str, Any]) -> str | None:
    return next((a["sha256"] for a in manifest.get("artifacts", []) if a.get("format") == "raw"), None)


def keep_cloud_records(path: Path, manifest: dict[str, Any]) -> None:
    """Carry the uploads recorded for the same raw image (`upload` writes them) into manifest."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if "cloud" in previous and raw_digest(previous) == raw_digest(manifest):
        manifest["cloud"] = previous["cloud"]


def build_appliance(plan: AppliancePlan, store: Store, output: Path, roles_dir: Path, progress: Progress) -> dict[str, Any]:
    started = time.monotonic()
    built: dict[str, Built] = {}
    built["base"] = ensure(store, plan.base, make_base(plan), progress)
    built["packages"] = ensure(store, plan.packages, make_packages(plan, built["base"].entry), progress)
    built["tree"] = ensure(store, plan.tree, make_tree(plan, built["packages"].entry, roles_dir, store.root / "state" / "facts"), progress)
    built["image"] = ensure(store, plan.image, make_image(plan, built["tree"].entry), progress)
    artifacts_from: dict[str, tuple[Entry, str]] = {"raw": (built["image"].entry, "disk.raw")}
    for step in plan.converts:
        fmt = step.inputs["format"]
        vmdk = artifacts_from.get("vmdk")  # an ova packs the vmdk step's disk when there is one
        action = make_convert(plan, built["image"].entry, fmt, vmdk[0].path / vmdk[1] if vmdk else None)
        built[step.key] = ensure(store, step, action, progress)
        artifacts_from[fmt] = (built[step.key].entry, f"disk.{fmt}")
    out_dir = output / plan.spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = []
    files: list[tuple[Path, Path]] = []
    for fmt, (entry, filename) in artifacts_from.items():
        dest = out_dir / f"{plan.spec.name}.{fmt}"
        files.append((entry.path / filename, dest))
        facts = entry.meta["outputs"][filename]
        artifacts.append({"format": fmt, "path": str(dest), **facts})
    manifest = make_manifest(plan, built, artifacts, store)
    image_outputs = built["image"].entry.meta["outputs"]  # the audit passed, or the image step failed
    sbom = out_dir / f"{plan.spec.name}.cdx.json"
    files.append((built["image"].entry.path / "sbom.cdx.json", sbom))
    manifest["audit"] = image_outputs["audit"]
    manifest["sbom"] = {"path": str(sbom), "format": "CycloneDX 1.6 JSON", **image_outputs["sbom.cdx.json"]}
    gone = [out_dir / f"{plan.spec.name}.{fmt}" for fmt in sorted(set(FORMATS) - set(artifacts_from))]
    with store.lock(f"publish-{plan.spec.name}"):
        publish(out_dir, files, manifest, gone)
    store.record_build(
        plan.spec.name,
        {
            "appliance": plan.spec.name,
            "build_id": plan.build_id,
            "steps": [{"kind": s.kind, "name": s.name, "id": s.id, "inputs": dict(s.inputs), "explain": dict(s.explain)} for s in plan.steps],
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - started, 2),
        },
    )
    return manifest


def build_all(
    plans: list[AppliancePlan], store: Store, output: Path, roles_dir: Path, progress: Progress, jobs: int = 1
) -> dict[str, dict[str, Any]]:
    """Build every plan, up to jobs at a time; a step shared by several plans is built once
    (the others wait on its lock). One failed appliance does not stop the others."""
    from concurrent.futures import wait

    from crust.runner import stop_all

    manifests: dict[str, dict[str, Any]] = {}
    failures: dict[str, BaseException] = {}
    if jobs <= 1:
        for plan in plans:
            manifests[plan.spec.name] = build_appliance(plan, store, output, roles_dir, progress)
        return manifests
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="crust-build") as pool:
        futures = {pool.submit(build_appliance, plan, store, output, roles_dir, progress): plan.spec.name for plan in plans}
        try:
            wait(futures)
        except KeyboardInterrupt:
            stop_all()
            for future in futures:
                future.cancel()
            wait(futures)
            raise
        for future, name in futures.items():
            exc = future.exception()
            if exc is None:
                manifests[name] = future.result()
            else:
                failures[name] = exc
    if failures:
        if any(isinstance(e, KeyboardInterrupt) for e in failures.values()):
            raise KeyboardInterrupt
        lines = [f"{name}: {exc}" for name, exc in failures.items()]
        raise StepFailed(f"{len(failures)} of {len(plans)} appliances failed: " + "; ".join(lines))
    return manifests


def make_manifest(plan: AppliancePlan, built: dict[str, Built], artifacts: list[dict[str, Any]], store: Store) -> dict[str, Any]:
    tree_meta = built["tree"].entry.meta
    steps = []
    for step in plan.steps:
        key = step.kind if step.kind in ("base", "packages", "tree", "image") else step.key
        meta = built[key].entry.meta
        steps.append(
            {
                "kind": step.kind,
                "name": step.name,
                "id": step.id,
                "reused": built[key].cached,
                "duration_s": meta["duration_s"],
                "built": meta["created"],
                "log": str(store.log_path(step.kind, step.id)),
            }
        )
    return {
        "appliance": plan.spec.name,
        "version": plan.spec.version,
        "description": plan.spec.description,
        "distribution": plan.distro.name,
        "build_id": plan.build_id,
        "crust_version": __version__,
        "inputs": {step.kind if step.kind != "convert" else step.name: dict(step.inputs) for step in plan.steps},
        "steps": steps,
        "kernel": tree_meta["outputs"].get("kernel"),
        "kernel_cmdline": plan.layout.cmdline,
        "packages": tree_meta["outputs"]["packages"],
        "artifacts": artifacts,
    }
