"""Verbs that read definitions only: list, render, validate (no side effects)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from crust.cli.common import add_names, names_from, project_from


def register(sub: Any) -> None:
    p = sub.add_parser(
        "list", help="list appliances with their descriptions", description="List every appliance in appliances/ with its description."
    )
    p.add_argument("--settings", action="store_true", help="print the reference of appliance file keys instead")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser(
        "render", help="print an appliance's rendered kickstart", description="Render the appliance's Jinja kickstart template and print it."
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(run=cmd_render)

    p = sub.add_parser(
        "validate",
        help="check appliance files, templates, kickstarts and role variables",
        description="Check the appliance file, render its kickstart, parse it with pykickstart (pinned syntax, warnings are errors) and apply Crust's policy checks. No side effects.",
    )
    add_names(p)
    p.add_argument("--explain", action="store_true", help="print each key's value and the file:line that set it (appliances that extend another)")
    p.set_defaults(run=cmd_validate)


def cmd_list(args: argparse.Namespace) -> int:
    from crust.cache.config import cache_reference
    from crust.cloud.targets import targets_reference
    from crust.define.spec import load_appliance, settings_reference

    if args.settings:
        print(settings_reference())
        print(targets_reference())
        print(cache_reference())
        return 0
    project = project_from(args)
    names = project.appliance_names()
    width = max((len(n) for n in names), default=4)
    specs = [load_appliance(project.appliance_path(name), project) for name in names]  # all parse before a line is printed
    for name, spec in zip(names, specs, strict=True):
        print(f"{name:{width}}  {spec.version:8}  {spec.distribution:10}  {spec.description}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from crust.define.distribution import load_distribution
    from crust.define.render import render
    from crust.define.spec import load_appliance

    project = project_from(args)
    spec = load_appliance(project.appliance_path(args.name), project)
    distro = load_distribution(project, spec.distribution)
    sys.stdout.write(render(spec, distro, project).text)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from crust.cloud.targets import load_targets
    from crust.define.roles import needed_secrets
    from crust.define.spec import explain_settings
    from crust.define.validate import validate_appliance

    project = project_from(args)
    report: list[str] = []  # printed once every appliance passed: bad input prints only its error
    for name in names_from(args, project):
        spec, distro, _rendered, ks = validate_appliance(project, name)
        load_targets(project, name)  # every cloud target of the appliance parses (no cloud call)
        needs = needed_secrets(project.roles, spec.roles)
        secrets = f", build secrets: {', '.join(sorted(needs))}" if needs else ""
        extends = f", extends {' -> '.join(p.stem for p in reversed(spec.chain[:-1]))}" if len(spec.chain) > 1 else ""
        report.append(f"{name}: ok ({distro.description}, {len(ks.packages)} packages, roles: {', '.join(spec.roles) or 'none'}{secrets}{extends})")
        if args.explain:
            report.extend(explain_settings(spec))
    print("\n".join(report))
    return 0
