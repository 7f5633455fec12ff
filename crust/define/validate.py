"""Everything `validate` checks, with no side effect but the caches: the appliance file, its
distribution, the role variables, the rendered kickstart and its policy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from crust.define.distribution import Distribution, load_distribution
from crust.define.kickstart import SYNTAX_VERSION, KickstartConfig, KickstartProblem, from_json, load, problem_to_error, to_json
from crust.define.project import Project
from crust.define.render import PendingBytecodeCache, Rendered, render
from crust.define.roles import check_vars, role_packages
from crust.define.spec import ApplianceSpec, load_appliance
from crust.digest import digest_json, digest_tree
from crust.errors import UserError

KICKSTART_CODE = Path(__file__).parent / "kickstart"  # its defaults and policy shape the checked result


def validate_appliance(
    project: Project, name: str, cache_dir: Path | None = None, *, write_cache: bool = True
) -> tuple[ApplianceSpec, Distribution, Rendered, KickstartConfig]:
    """With cache_dir, the caches are written once all is good (unless write_cache is false):
    bad input leaves no file."""
    spec = load_appliance(project.appliance_path(name), project)
    distro = load_distribution(project, spec.distribution)
    check_vars(project.roles, spec.roles, spec.vars, spec.origins, project.readable())
    bytecode = PendingBytecodeCache(cache_dir / "jinja") if cache_dir else None
    rendered = render(spec, distro, project, bytecode)
    ks = with_role_packages(checked_kickstart(rendered, spec, cache_dir / "kickstarts" if cache_dir else None, write_cache), project, spec, rendered)
    if bytecode is not None and write_cache:
        bytecode.commit()
    return spec, distro, rendered, ks


def with_role_packages(ks: KickstartConfig, project: Project, spec: ApplianceSpec, rendered: Rendered) -> KickstartConfig:
    """%packages and, after them, what the appliance's roles declare they need (meta/crust.yml):
    one list, so that a role's requirement cannot disagree with the kickstart at build time. A
    kickstart that excludes such a package (-NAME) is refused, naming both."""
    needed = role_packages(project.roles, spec.roles)
    for package, role in needed.items():
        if package in ks.excluded:
            file, line = next(
                (
                    (src, i)
                    for src in rendered.sources
                    for i, text in enumerate(src.read_text(encoding="utf-8").splitlines(), 1)
                    if text.strip() == f"-{package}"
                ),
                (rendered.template, None),
            )
            raise UserError(
                f"%packages excludes {package}, which role {role} needs (roles/{role}/meta/crust.yml)",
                file=file,
                line=line,
                hint=f"remove -{package} from %packages, or the role from the appliance",
            )
    added = tuple(p for p in needed if p not in ks.packages)
    return dataclasses.replace(ks, packages=(*ks.packages, *added)) if added else ks


def checked_kickstart(rendered: Rendered, spec: ApplianceSpec, cache_dir: Path | None, write_cache: bool = True) -> KickstartConfig:
    """Parse and check a rendered kickstart; with cache_dir, reuse the result for the same text."""
    from crust.build.store import write_atomic

    allow_plaintext, allow_host = spec.allow_plaintext_passwords, spec.allow_host_scripts
    key = digest_json([rendered.text, allow_plaintext, allow_host, SYNTAX_VERSION, digest_tree(KICKSTART_CODE)])
    cached = cache_dir / f"{key}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        return from_json(json.loads(cached.read_text(encoding="utf-8")))
    try:
        ks = load(rendered.text, allow_plaintext=allow_plaintext, allow_host_scripts=allow_host)
    except KickstartProblem as problem:
        raise problem_to_error(problem, rendered.template, rendered.text, list(rendered.sources)) from None
    if cached is not None and write_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, json.dumps(to_json(ks)))
    return ks
