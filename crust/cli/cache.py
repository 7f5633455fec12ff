"""The cache verb: the shared step cache's keys (`cache keygen KEYFILE`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crust.cache.config import add_cache_options
from crust.cli.common import Parser, project_from
from crust.errors import UserError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cache",
        help="the shared step cache: make a signing key",
        description="The shared step cache on S3 (--cache s3://BUCKET/PREFIX or cache.toml beside appliances/): builders with "
        "a signing key push what they build, every builder fetches what keys it trusts signed.",
    )
    verbs = p.add_subparsers(dest="cache_verb", metavar="ACTION", parser_class=Parser)
    verbs.required = True
    k = verbs.add_parser(
        "keygen",
        help="make an Ed25519 key pair: KEYFILE (private, mode 0600) and KEYFILE.pub",
        description="Make an Ed25519 key pair for signing cache entries: KEYFILE (PKCS#8 PEM, mode 0600, never overwritten) "
        "for the builders that push (--cache-key), KEYFILE.pub (one OpenSSH line) for every builder that trusts them (--trust).",
    )
    k.add_argument("keyfile", type=Path, metavar="KEYFILE")
    k.set_defaults(run=cmd_keygen)
    r = verbs.add_parser(
        "prune",
        help="remove shared cache entries no recent build uses",
        description="Remove the shared cache's entries that none of the last N builds of any appliance uses (builders that push "
        "record their builds in the cache), except those pushed in the last day; and blobs no manifest names, unfinished "
        "uploads and older build records, when a day old. Reports what it freed.",
    )
    r.add_argument("--keep", type=int, default=1, metavar="N", help="keep what the last N builds of each appliance use (default 1)")
    r.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    add_cache_options(r)
    r.set_defaults(run=cmd_prune)


def cmd_keygen(args: argparse.Namespace) -> int:
    from crust.cache.keys import generate_key

    signer = generate_key(args.keyfile)
    print(f"{args.keyfile}: private key (keep it secret: only the builders that push need it)")
    print(f"{args.keyfile}.pub: public key {signer.key_id} (give it to builders with --trust)")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from crust.cache.config import FILE_NAME, load_cache_config

    if args.keep < 0:
        raise UserError(f"--keep {args.keep}: must be 0 or more", hint="use --keep 1 to keep what the last build of each appliance uses")
    project = project_from(args)
    config = load_cache_config(project.appliances.parent / FILE_NAME, args, use=False)
    if config is None:
        raise UserError("no shared cache to prune", hint=f"give --cache s3://BUCKET/PREFIX or url in {FILE_NAME}")
    prune_remote(config, args.keep, args.dry_run)
    return 0


def prune_remote(config: Any, keep: int, dry_run: bool) -> None:
    """Prune the shared cache and report it (`cache prune`, `clean --remote`)."""
    from crust.build.gc import human
    from crust.cache.prune import prune
    from crust.cache.remote import open_cache

    report = prune(open_cache(config), keep, dry_run)
    verb = "would remove" if dry_run else "removed"
    for name in report.removed:
        print(f"{verb} {name}")
    print(
        f"{verb} {len(report.removed)} entries and {report.leftovers} leftovers, {'would free' if dry_run else 'freed'} "
        f"{human(report.freed_bytes)}; kept {report.kept} entries ({human(report.kept_bytes)}) in {config.url}"
    )
