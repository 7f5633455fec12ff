"""role: one step per role the appliance names, in order, each storing what its role changed.

A role step runs its role's play (the role and the roles it depends on, as Ansible runs
``roles: [ROLE]``) on the view of the packages tree under the layers of the role steps before
it, and keeps only the layer its play wrote (crust/tree/overlay.py: overlayfs' upper
directory, normalised; or, where overlayfs cannot be mounted, the same layer made by comparing a
whole copy). Its id covers the step before it, so editing one role reruns that role and those
after it, from the stored layers below it, and nothing before it. The first step also applies
the kickstart's commands that roles may rely on (time zone, language, keyboard, network, root
password, users, SSH keys). The tree step then applies the layers to a copy of the packages
tree and seals it once.

Roles see the Crust variables but the build id: it names the whole build (the tree step's
id, which covers these steps), so a role that wrote it would make every edit rerun every role.
The tree step stamps it into the identity file instead (crust/steps/tree.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.build.equivalence import canonical_id
from crust.build.plan import AppliancePlan, Planning, Step, code_inputs
from crust.define.kickstart.model import to_json
from crust.define.role_includes import roles_shaping
from crust.define.roles import dependencies, path_inputs, role_closure, role_files
from crust.digest import digest_file, digest_json, digest_text, step_id
from crust.log import phase
from crust.runner import run as run_command
from crust.steps.kind import GIB, Job, StepKind

BELOW = "below.json"  # in a role step's entry: the canonical ids of the view its layer lies on
# The kickstart commands applied before the first role (the rest are the tree step's).
EARLY_KICKSTART = ("timezone", "lang", "keymap", "network", "root_password_hash", "users", "sshkeys")


def early_kickstart(p: Planning | AppliancePlan) -> dict[str, Any]:
    data = to_json(p.ks)
    return {k: data[k] for k in EARLY_KICKSTART}


def plan(p: Planning) -> tuple[Step, ...]:
    spec, roles_dir = p.spec, p.project.roles
    steps: list[Step] = []
    for role in spec.roles:
        inputs = {
            "packages": p.start_id("packages"),
            "epoch": str(p.epoch),
            "role-name": role,
            "identity": digest_json([spec.name, spec.version, spec.description, p.distro.name]),  # the crust_* variables
            "vars": digest_json(dict(spec.vars)),
            **code_inputs("role"),
        }
        if steps:
            inputs["role"] = canonical_id(p.state_dir, "role", steps[-1].id)
        else:
            inputs["kickstart"] = digest_json(early_kickstart(p))
            inputs["plaintext-passwords"] = str(spec.allow_plaintext_passwords)
        for shaping in roles_shaping(roles_dir, (role,)):  # the role, its dependencies, the roles they include
            for path in role_files(roles_dir, shaping):
                inputs[f"role:{path.relative_to(roles_dir)}"] = digest_file(path)
        for path in path_inputs(p.options, spec.vars):
            inputs[f"file:{path}"] = digest_file(path)
        explain = {f"var:{k}": digest_json(v) for k, v in spec.vars.items()}
        steps.append(Step("role", f"{spec.name}+{role}", step_id("role", inputs), MappingProxyType(inputs), MappingProxyType(explain)))
    return tuple(steps)


def layers_below(job: Job) -> list[Path]:
    """The layers of the role steps before this one, the top one first."""
    steps = job.plan.steps_of("role")
    before = steps[: steps.index(job.step)]
    return [job.entries[s.key].path / "layer" for s in reversed(before)]


def role_of(step: Step) -> str:
    return step.inputs["role-name"]


def run(job: Job) -> dict[str, Any]:
    from crust.tree import overlay

    plan = job.plan
    packages = job.entry("packages")
    lowers = [*layers_below(job), packages.path / "tree"]
    layer = job.tmp / "layer"
    layer.mkdir()
    work = job.tmp / "work"
    work.mkdir()
    took: list[tuple[str, float]] = []
    first = not job.plan.steps_of("role").index(job.step)
    # What the layer lies on, in the entry: a layer means nothing without the view below it, so
    # the output digest (early cut-off) must tell two equal layers on different views apart.
    below = {"packages": job.step.inputs["packages"], "role": job.step.inputs.get("role", "")}
    (job.tmp / BELOW).write_text(json.dumps(below, sort_keys=True) + "\n", encoding="utf-8")
    # The facts of this step's view (gathered once for it: a rerun after an edit of its role
    # finds them): the packages tree, the kickstart, and the role steps below.
    facts = job.store.root / "state" / "facts" / digest_text(packages.path.name + plan.rendered.text + below["role"])[:24]

    def configure(view: Path) -> None:
        if first:
            with phase("kickstart commands", took):
                apply_early_kickstart(view, plan)
        with phase(f"role {role_of(job.step)} (ansible-playbook)", took):
            apply_role(view, job, work, facts)

    if overlay.usable(job.tmp, lowers):
        merged, scratch = job.tmp / "merged", job.tmp / "overlay-work"
        merged.mkdir()
        scratch.mkdir()

        def mounted() -> None:
            overlay.mount_overlay(lowers, layer, scratch, merged)
            configure(merged)

        overlay.in_private_mounts(mounted)
        with phase("normalise the layer", took):
            overlay.normalize(layer, lowers)
        merged.rmdir()
        shutil.rmtree(scratch)
        how = "overlayfs"
    else:  # a whole copy of the view, compared afterwards
        view = job.tmp / "view"
        with phase("copy the view", took):
            compose(view, lowers)
        configure(view)
        with phase("compare into a layer", took):
            overlay.make_layer(view, lowers, layer)
        shutil.rmtree(view)
        how = "copy"
    shutil.rmtree(work)
    return {"layer": how, "phases_s": took}


def compose(tree: Path, lowers: list[Path]) -> None:
    """The view of LOWERS (the top one first, the last a whole tree) as a whole tree at TREE."""
    from crust.tree.overlay import apply_layer

    run_command(["cp", "-a", "--reflink=auto", str(lowers[-1]), str(tree)])
    for layer in reversed(lowers[:-1]):
        apply_layer(layer, tree)


def apply_early_kickstart(tree: Path, plan: AppliancePlan) -> None:
    from crust.tree import configure

    ks = plan.ks
    configure.set_timezone(tree, ks.timezone)
    configure.set_lang(tree, ks.lang)
    configure.generate_locales(tree, ks.lang)
    configure.set_keyboard(tree, ks.keymap)
    configure.configure_network(tree, ks.network)
    configure.set_root_password(tree, ks.root_password_hash)
    configure.create_users(tree, ks.users)
    configure.install_ssh_keys(tree, ks.sshkeys)


def apply_role(view: Path, job: Job, work: Path, facts: Path) -> None:
    from crust.steps.tree import drop_corrupt_facts
    from crust.tree import ansible

    drop_corrupt_facts(facts)
    # What %packages installed (name -> version): the roles check their packages in it.
    variables = {**job.plan.variables, "crust_packages": job.entry("packages").meta["outputs"]["packages"]}
    roles_dir, earlier = job.project.roles, job.plan.spec.roles[: job.plan.steps_of("role").index(job.step)]
    applied = already_applied(roles_dir, role_of(job.step), earlier)
    # The role steps of this build share compiled module code (the same roles' trust: one
    # appliance, one build): each would compile the same 140 or so module imports again.
    cache = job.scratch / "ansible-modules" if job.scratch is not None else None
    ansible.apply_roles(view, (role_of(job.step),), variables, roles_dir, work, facts, applied, cache)


def already_applied(roles_dir: Path, role: str, earlier: tuple[str, ...]) -> tuple[str, ...]:
    """The roles of ROLE's play (it and its dependencies) that the steps before it ran as one
    play would have (EARLIER: their roles) and that Ansible, in one play, would not run again:
    those run without parameters before, and named without parameters here (a role with
    variables of its own runs again, in one play too)."""
    done = plain_runs(roles_dir, earlier)
    mine = role_closure(roles_dir, (role,))
    with_params = {dep["role"] for name in mine for dep in dependencies(roles_dir, name) if set(dep) - {"role"}}
    return tuple(r for r in mine if r in done and r not in with_params)


def plain_runs(roles_dir: Path, roots: tuple[str, ...]) -> set[str]:
    """The roles a play of ROOTS runs without parameters: the roots, and the dependencies met
    through them named without parameters (a role run with variables still runs its own
    dependencies; those named plainly run plainly)."""
    plain: set[str] = set()
    seen: set[tuple[str, bool]] = set()

    def visit(name: str, with_params: bool) -> None:
        if (name, with_params) in seen:
            return
        seen.add((name, with_params))
        if not with_params:
            plain.add(name)
        for dep in dependencies(roles_dir, name):
            visit(dep["role"], bool(set(dep) - {"role"}))

    for root in roots:
        visit(root, False)
    return plain


def disk_bytes(plan: AppliancePlan, step: Step) -> int:
    # What the step stores is a layer (wsgi's largest: a venv, a few MB; a Django stack tens of
    # MB). Where overlayfs cannot be mounted it holds a whole view (0.3-0.7 GiB) while it runs,
    # one step at a time: the preflight sums every step of a build, so the peak is not counted
    # once per role.
    return GIB // 4


KIND = StepKind(
    name="role",
    order=25,
    tools=("unshare", "bwrap", "useradd", "ansible-playbook", "cp"),
    shaping=("ansible-playbook",),
    plan=plan,
    run=run,
    disk_bytes=disk_bytes,
    multiple=True,
)
