"""The ci verb: `ci github` and `ci gitlab` write a CI file that builds each appliance in its
own job with the shared step cache (crust/ci/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crust.cache.config import FILE_NAME, add_cache_options
from crust.cli.common import Parser, project_from


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ci",
        help="write a CI file that builds each appliance in its own job with the shared cache",
        description="Write a CI file with one job per appliance, each on its own runner: set up, build with the shared step "
        f"cache ({FILE_NAME}, or --cache and --trust), smoke-test, keep the JUnit results and the manifest as artifacts, and "
        "on the default branch only, sign and push to the cache (the CI secret CRUST_CACHE_KEY) and upload to the "
        "appliance's configured cloud targets.",
    )
    systems = p.add_subparsers(dest="ci_system", metavar="SYSTEM", parser_class=Parser)
    systems.required = True
    for system, path, runner in (("github", ".github/workflows/crust.yml", "self-hosted,linux,x64"), ("gitlab", ".gitlab-ci.yml", "crust")):
        s = systems.add_parser(system, help=f"write {path}", description=f"Write {path} (in the checkout; --file elsewhere).")
        s.add_argument("names", nargs="*", metavar="NAME", help="appliances to build (default: all)")
        s.add_argument("--file", type=Path, help=f"where to write it (default: {path} in the checkout; - for standard output)")
        s.add_argument(
            "--runner",
            default=runner,
            metavar="LABELS",
            help=f"comma-separated runner {'labels (runs-on)' if system == 'github' else 'tags'} of root shells on Debian 12 "
            f"machines with libvirt (default: {runner})",
        )
        if system == "github":
            s.add_argument("--branch", default="main", help="the default branch: pushes to it sign, push and upload (default: main)")
        add_cache_options(s)
        s.set_defaults(run=cmd_ci, ci_default_path=path)


def cmd_ci(args: argparse.Namespace) -> int:
    import sys

    from crust.build.store import write_atomic
    from crust.cache.config import load_cache_config
    from crust.ci import github, gitlab
    from crust.ci.fanout import plan_fanout
    from crust.errors import UserError

    project = project_from(args)
    settings = project.appliances.parent / FILE_NAME
    from_file = args.cache is None and args.trust is None and args.cache_endpoint is None and settings.is_file()
    cache = load_cache_config(settings, args)
    runner = tuple(label.strip() for label in args.runner.split(",") if label.strip())
    if not runner:
        raise UserError("--runner: no label given", hint="give the labels (or tags) of the runners that build appliances")
    names = args.names or project.appliance_names()
    fanout = plan_fanout(project, names, cache, from_file, runner, getattr(args, "branch", "main"))
    text = (github if args.ci_system == "github" else gitlab).render(fanout)
    if args.file is not None and str(args.file) == "-":
        sys.stdout.write(text)
        return 0
    path = args.file or project.appliances.parent / args.ci_default_path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    print(f"{path}: {len(fanout.jobs)} jobs ({', '.join(j.appliance for j in fanout.jobs)})")
    return 0
