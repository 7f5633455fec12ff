"""Build plans: the steps of each appliance, each with an id that is a hash of its inputs.

    base(distribution) -> tree(appliance) -> image(appliance) -> convert(appliance, format)

Computing a plan has no side effects beyond reading files (and, at most once per TTL, the
mirror's InRelease files): `build.py plan` shows it, `build.py build` runs what is missing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust import __version__
from crust.build.store import write_atomic
from crust.define.distribution import Distribution, load_distribution
from crust.define.kickstart import SYNTAX_VERSION, KickstartConfig, KickstartProblem, from_json, load, problem_to_error, to_json
from crust.define.render import PendingBytecodeCache, Rendered, render
from crust.define.roles import check_vars, path_inputs, role_closure, role_files
from crust.define.spec import FORMATS, ApplianceSpec, appliance_path, load_appliance
from crust.define.spec import roles_dir as roles_dir_of
from crust.digest import digest_file, digest_json, digest_text, step_id
from crust.disk.assemble import Layout, derived_uuid
from crust.distros.debian.mirror import mirror_state
from crust.errors import UserError

PACKAGE_DIR = Path(__file__).parents[1]
# The modules whose code shapes each step's output: editing them changes the step's id.
STEP_CODE: Mapping[str, tuple[str, ...]] = {
    "base": ("distros/debian/bootstrap.py",),
    "packages": ("tree/configure.py", "tree/files.py", "sandbox.py"),
    "tree": ("tree/configure.py", "tree/seal.py", "tree/ansible.py", "tree/files.py", "sandbox.py"),
    "image": ("disk/assemble.py", "trust/audit.py", "trust/sshdconfig.py", "trust/sbom.py"),
    "convert": ("formats/__init__.py",),
}


@dataclass(frozen=True)
class Step:
    kind: str
    name: str  # what it builds: "debian-13", "wsgi", "wsgi.qcow2"
    id: str
    inputs: Mapping[str, str]  # hashed into the id
    explain: Mapping[str, str] = field(default_factory=dict)  # not hashed: names what changed

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.id}"


@dataclass(frozen=True)
class AppliancePlan:
    spec: ApplianceSpec
    distro: Distribution
    rendered: Rendered
    ks: KickstartConfig
    layout: Layout
    variables: Mapping[str, Any]
    roles: tuple[str, ...]
    base: Step
    packages: Step
    tree: Step
    image: Step
    converts: tuple[Step, ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        return (self.base, self.packages, self.tree, self.image, *self.converts)

    @property
    def build_id(self) -> str:
        return self.tree.id[:12]


@functools.cache
def code_digest(kind: str) -> str:
    return digest_json({"version": __version__, **{n: digest_file(PACKAGE_DIR / n) for n in STEP_CODE[kind]}})


def validate_appliance(
    root: Path, name: str, cache_dir: Path | None = None, *, write_cache: bool = True
) -> tuple[ApplianceSpec, Distribution, Rendered, KickstartConfig]:
    """Everything `validate` checks, with no side effect but the caches (with cache_dir, once all
    is good, unless write_cache is false): spec, templates, kickstart, role vars."""
    spec = load_appliance(appliance_path(root, name), root)
    distro = load_distribution(root, spec.distribution)
    check_vars(roles_dir_of(root), spec.roles, spec.vars, spec.source)
    # The caches are written only once everything is known good: bad input leaves no file.
    bytecode = PendingBytecodeCache(cache_dir / "jinja") if cache_dir else None
    rendered = render(spec, distro, root, bytecode)
    ks = checked_kickstart(rendered, spec.allow_plaintext_passwords, cache_dir / "kickstarts" if cache_dir else None, write_cache)
    if bytecode is not None and write_cache:
        bytecode.commit()
    return spec, distro, rendered, ks


def checked_kickstart(rendered: Rendered, allow_plaintext: bool, cache_dir: Path | None, write_cache: bool = True) -> KickstartConfig:
    """Parse and check a rendered kickstart; with cache_dir, reuse the result for the same text."""
    key = digest_json([rendered.text, allow_plaintext, SYNTAX_VERSION, digest_file(PACKAGE_DIR / "define/kickstart/__init__.py")])
    cached = cache_dir / f"{key}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        return from_json(json.loads(cached.read_text(encoding="utf-8")))
    try:
        ks = load(rendered.text, allow_plaintext=allow_plaintext)
    except KickstartProblem as problem:
        raise problem_to_error(problem, rendered.template, rendered.text, list(rendered.sources)) from None
    if cached is not None and write_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, json.dumps(to_json(ks)))
    return ks


def base_step(distro: Distribution, state_dir: Path, refresh: bool) -> Step:
    mirror = mirror_state(distro, state_dir, refresh)
    keyring = Path(distro.keyring)
    inputs = {
        "sources": digest_text(distro.deb822()),
        "packages": digest_json(sorted(distro.base_packages)),
        "initramfs": digest_json(list(distro.initramfs_modules)),
        "keyring": digest_file(keyring) if keyring.is_file() else "missing",
        "code": code_digest("base"),
    }
    inputs.update({f"mirror:{suite}": value for suite, value in mirror.items()})
    explain = {"packages": " ".join(sorted(distro.base_packages))}
    return Step("base", distro.name, step_id("base", inputs), MappingProxyType(inputs), MappingProxyType(explain))


def plan_appliance(root: Path, name: str, state_dir: Path, refresh: bool = False, formats: Sequence[str] = ()) -> AppliancePlan:
    """The appliance's steps; formats adds output formats to the appliance's image.formats."""
    spec, distro, rendered, ks = validate_appliance(root, name, state_dir / "cache")
    roles_dir = roles_dir_of(root)
    options = check_vars(roles_dir, spec.roles, spec.vars, spec.source)
    base = base_step(distro, state_dir, refresh)
    package_set = package_list(ks, distro)
    pkg_inputs = {
        "base": base.id,
        "package-set": digest_json(package_set),
        "excluded": digest_json(sorted(ks.excluded)),
        "repos": digest_json([dataclasses.asdict(r) for r in ks.repos]),
        "code": code_digest("packages"),
    }
    packages = Step(
        "packages", spec.name, step_id("packages", pkg_inputs), MappingProxyType(pkg_inputs), MappingProxyType({"package-set": " ".join(package_set)})
    )
    roles = role_closure(roles_dir, spec.roles)
    inputs = {
        "packages": packages.id,
        "generators": digest_json(list(distro.masked_generators)),
        "kickstart": digest_text(rendered.text),
        "vars": digest_json(dict(spec.vars)),
        "roles": digest_json(list(spec.roles)),
        "plaintext-passwords": str(spec.allow_plaintext_passwords),
        "code": code_digest("tree"),
    }
    for role in roles:
        for path in role_files(roles_dir, role):
            inputs[f"role:{path.relative_to(roles_dir)}"] = digest_file(path)
    for path in path_inputs(options, spec.vars):
        inputs[f"file:{path}"] = digest_file(path)
    explain = {f"template:{p.relative_to(root)}": digest_file(p) for p in rendered.sources}
    explain.update({f"var:{k}": digest_json(v) for k, v in spec.vars.items()})
    tree = Step("tree", spec.name, step_id("tree", inputs), MappingProxyType(inputs), MappingProxyType(explain))

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
    layout = Layout(ks.esp_size_mib, ks.root_size_mib, root_uuid, cmdline, distro.uki)
    image_inputs = {"tree": tree.id, "layout": digest_json(layout.__dict__), "code": code_digest("image")}
    image = Step(
        "image",
        spec.name,
        step_id("image", image_inputs),
        MappingProxyType(image_inputs),
        MappingProxyType({"layout": json.dumps(layout.__dict__, sort_keys=True)}),
    )
    converts: list[Step] = []
    for fmt in sorted({*spec.image.formats, *formats}, key=FORMATS.index):  # vmdk before the ova that packs it
        if fmt == "raw":
            continue
        conv_inputs = {"image": image.id, "format": fmt, "compress": str(spec.image.compress), "code": code_digest("convert")}
        if fmt == "ova":
            conv_inputs["machine"] = digest_json({"name": spec.name, "version": spec.version, "description": spec.description})
        converts.append(Step("convert", f"{spec.name}.{fmt}", step_id("convert", conv_inputs), MappingProxyType(conv_inputs)))
    variables = {
        **dict(spec.vars),
        "crust_appliance": spec.name,
        "crust_version": spec.version,
        "crust_description": spec.description,
        "crust_distribution": distro.name,
        "crust_build_id": tree.id[:12],
        # Where the roles are on the build host: lets a role hand a sibling role's files
        # (say, a sample application) to a role it depends on.
        "crust_roles_dir": str(roles_dir),
    }
    return AppliancePlan(spec, distro, rendered, ks, layout, MappingProxyType(variables), roles, base, packages, tree, image, tuple(converts))


def package_list(ks: KickstartConfig, distro: Distribution) -> list[str]:
    """What the packages step installs: %packages, what settings imply, the grow tools."""
    from crust.tree.configure import implied_packages

    extra = [*implied_packages(ks), *(distro.grow_packages if ks.root_grow else ())]
    return [*ks.packages, *[p for p in extra if p not in ks.packages]]


def explain_change(step: Step, previous: Mapping[str, Any] | None) -> str:
    """Why a step will run: the inputs that differ from the last build of the same step kind."""
    if previous is None:
        return "never built"
    old_inputs: Mapping[str, str] = previous.get("inputs", {})
    old_explain: Mapping[str, str] = previous.get("explain", {})
    changed = []
    for key in sorted(set(step.inputs) | set(old_inputs)):
        if step.inputs.get(key) == old_inputs.get(key):
            continue
        if key == "kickstart":
            templates = [
                k.split(":", 1)[1]
                for k in sorted(set(step.explain) | set(old_explain))
                if k.startswith("template:") and step.explain.get(k) != old_explain.get(k)
            ]
            changed.append("rendered kickstart" + (f" ({', '.join(templates)})" if templates else ""))
        elif key == "vars":
            names = [
                k.split(":", 1)[1]
                for k in sorted(set(step.explain) | set(old_explain))
                if k.startswith("var:") and step.explain.get(k) != old_explain.get(k)
            ]
            changed.append("variables" + (f" ({', '.join(names)})" if names else ""))
        elif key in ("base", "packages", "tree", "image"):
            changed.append(f"{key} step")
        elif key == "package-set":
            old = set(old_explain.get("package-set", "").split())
            new = set(step.explain.get("package-set", "").split())
            delta = [f"+{p}" for p in sorted(new - old)] + [f"-{p}" for p in sorted(old - new)]
            changed.append("package set" + (f" ({' '.join(delta)})" if delta else ""))
        elif key.startswith(("role:", "file:")):
            kind, path = key.split(":", 1)
            state = "added" if key not in old_inputs else "removed" if key not in step.inputs else "changed"
            changed.append(f"{'role file' if kind == 'role' else 'file'} {path} {state}")
        elif key.startswith("mirror:"):
            changed.append(f"mirror state ({key.split(':', 1)[1]})")
        elif key == "code":
            changed.append("Crust's code for this step")
        else:
            changed.append(key)
    return ", ".join(changed) or "inputs changed"


def require_known(root: Path, names: list[str]) -> None:
    for name in names:
        appliance_path(root, name)
    if not names:
        raise UserError("no appliance named", hint="give NAME... or --all")
