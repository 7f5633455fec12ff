"""tree: the packages tree with the role steps' layers applied and the kickstart, then sealed.

Its id covers the packages step, the last role step (whose id covers the roles before it,
their files, the variables and the host files path variables name), the rendered kickstart
and Crust's code for it. It applies the kickstart's layout commands (fstab, kernel command
line), the layers, the build id (into the identity file), services and %post, then seals.
Planning it also fixes the disk layout (the root file system's UUID derives from the tree's id) and the build id."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust import faults
from crust.build.equivalence import canonical_id
from crust.build.plan import AppliancePlan, Planning, Step, code_inputs
from crust.build.store import Entry
from crust.digest import digest_file, digest_json, digest_text, step_id
from crust.disk.assemble import Layout, derived_uuid
from crust.distros import backend_for
from crust.log import phase
from crust.runner import run as run_command
from crust.steps.kind import GIB, Job, StepKind
from crust.tree.paths import inside

DEFAULT_RELEASE_FILE = "/etc/crust-release"


def plan(p: Planning) -> tuple[Step, ...]:
    spec = p.spec
    inputs = {
        "packages": p.start_id("packages"),
        "epoch": str(p.epoch),  # the sealed tree's times
        "generators": digest_json(list(p.distro.masked_generators)),
        "masked-units": digest_json(list(p.distro.masked_units)),
        "kickstart": digest_text(p.rendered.text),
        "plaintext-passwords": str(spec.allow_plaintext_passwords),
        "host-scripts": str(spec.allow_host_scripts),
        "release-file": release_file(p),
        **code_inputs("tree"),
    }
    roles = [s for s in p.steps if s.kind == "role"]
    if roles:  # the last role step's id covers the roles, their files and variables, and every step before it
        inputs["role"] = canonical_id(p.state_dir, "role", roles[-1].id)
    explain = {f"template:{t.relative_to(p.project.root)}": digest_file(t) for t in p.rendered.sources}
    step = Step("tree", spec.name, step_id("tree", inputs), MappingProxyType(inputs), MappingProxyType(explain))
    p.layout = layout_for(p, step)
    p.build_id = step.id[:12]
    return (step,)


def release_file(p: Planning | AppliancePlan) -> str:
    """The identity file the common role writes (its common_release_file variable): the tree
    step stamps the build id into it."""
    value = p.spec.vars.get("common_release_file", DEFAULT_RELEASE_FILE)
    return value if isinstance(value, str) else DEFAULT_RELEASE_FILE


def layout_for(p: Planning, tree: Step) -> Layout:
    """The disk: the ESP and root sizes, the root file system's UUID, the kernel command line."""
    ks = p.ks
    root_uuid = derived_uuid(tree.id, "root-fs")
    cmdline = " ".join(
        [
            f"root=UUID={root_uuid}",
            "rw",
            *[w for w in ks.kernel_append if not w.startswith("console=")],
            *[w for w in ks.kernel_append if w.startswith("console=")],
            "console=tty0",
            "console=ttyS0,115200",
        ]
    )
    return Layout(ks.esp_size_mib, ks.root_size_mib, root_uuid, cmdline, p.distro.uki)


def stamp_build_id(tree: Path, release: str, build_id: str) -> None:
    """BUILD_ID=ID as the identity file's last line, if a role wrote that file (the common role)."""
    path = inside(tree, release)
    if path.is_symlink() or not path.is_file():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("BUILD_ID=")]
    stat = path.stat()
    path.write_text("\n".join([*lines, f"BUILD_ID={build_id}"]) + "\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


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


def run(job: Job) -> dict[str, Any]:
    from crust.steps.role import apply_early_kickstart
    from crust.tree import configure, overlay
    from crust.tree.seal import seal

    plan, ks = job.plan, job.plan.ks
    packages = job.entry("packages")
    backend = backend_for(plan.distro)
    tree = job.tmp / "tree"
    work = job.tmp / "work"
    work.mkdir()
    took: list[tuple[str, float]] = []  # where the step's seconds go (its record and log)
    # Where overlayfs works, the packages tree is linked, not copied: nothing below writes a
    # file of it in place (the layers replace files; everything else runs on an overlay of it).
    linked = overlay.usable(job.tmp, [packages.path / "tree"])
    with phase("link the packages tree" if linked else "copy the packages tree", took):
        run_command(["cp", "-a", "--link" if linked else "--reflink=auto", str(packages.path / "tree"), str(tree)])
    with phase("apply the role layers", took):
        for step in plan.steps_of("role"):
            overlay.apply_layer(job.entries[step.key].path / "layer", tree)

    def configure_tree(view: Path) -> None:
        with phase("kickstart commands", took):
            if not plan.steps_of("role"):  # else the first role step applied these
                apply_early_kickstart(view, plan)
            configure.write_fstab(view, plan.layout.root_uuid, ks.root_grow)
            if ks.root_grow:
                configure.write_grow_config(view)
            configure.write_kernel_cmdline(view, plan.layout.cmdline)
            configure.mask_generators(view, plan.distro.masked_generators)
            configure.mask_units(view, plan.distro.masked_units)
            stamp_build_id(view, release_file(plan), plan.build_id)
        with phase("services and %post scripts", took):
            configure.set_services(view, configure.network_services(view) + ks.services_enabled, ks.services_disabled)
            configure.run_scripts(view, ks.scripts, work)
        faults.point("tree.seal")
        with phase("seal", took):
            seal(view, ks, backend, plan.epoch)

    if linked:
        upper, scratch, merged = job.tmp / "upper", job.tmp / "overlay-work", job.tmp / "merged"
        for folder in (upper, scratch, merged):
            folder.mkdir()

        def mounted() -> None:
            overlay.mount_overlay([tree], upper, scratch, merged)
            configure_tree(merged)

        overlay.in_private_mounts(mounted)
        with phase("apply the changes", took):
            overlay.normalize(upper, [tree])
            overlay.apply_layer(upper, tree)
        for folder in (upper, scratch, merged):
            shutil.rmtree(folder)
    else:
        configure_tree(tree)
    with phase("build secret check", took):
        check_no_secret_left(tree, job)
    shutil.rmtree(work)
    with phase("package list and kernels", took):
        installed = backend.database(tree).installed()
        kernels = sorted(p.name for p in inside(tree, "/boot", follow=True).glob("vmlinuz-*"))
    return {"packages": installed, "kernel": kernels, "phases_s": took}


def check_no_secret_left(tree: Path, job: Job) -> None:
    """No build secret may reach the image: a role that copied one into the tree fails the build
    (the secret's ID and the file are named, never the secret)."""
    from crust.define.roles import secret_options
    from crust.errors import StepFailed
    from crust.trust import secrets
    from crust.trust.audit.shipped import Shipped

    ids = sorted({opt.secret for opt in secret_options(job.project.roles, job.plan.roles)})
    found = secrets.find_in_tree(tree, ids) if ids else []
    # A file exactly as its package shipped it holds public bytes (every unencrypted ed25519
    # key begins like sshd's own strings): only what the build wrote or changed counts.
    shipped = Shipped(tree, backend_for(job.plan.distro).database(tree))
    leaks = [(sid, path) for sid, path in found if not (shipped.unchanged(path) or shipped.compiled_source(path) is not None)]
    if leaks:
        where = "; ".join(f"build secret {sid!r} in {path}" for sid, path in leaks[:5])
        raise StepFailed(
            f"tree step of {job.plan.spec.name} failed: {where} (fix: a role copied a build secret into the image; "
            "use it from /run/crust-secrets during the run only)"
        )


def record(plan: AppliancePlan, step: Step, entry: Entry, out_dir: Path) -> dict[str, Any]:
    outputs = entry.meta["outputs"]
    return {"packages": outputs["packages"], "kernel": outputs.get("kernel"), "kernel_cmdline": plan.layout.cmdline}


def disk_bytes(plan: AppliancePlan, step: Step) -> int:
    return GIB  # the packages tree plus the roles' files: 0.3-0.7 GiB measured


KIND = StepKind(
    name="tree",
    order=30,
    tools=("unshare", "bwrap", "systemctl", "useradd", "cp", "grep"),
    plan=plan,
    run=run,
    disk_bytes=disk_bytes,
    record=record,
)
