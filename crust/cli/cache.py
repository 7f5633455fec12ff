"""The cache verb: the shared step cache's keys (`cache keygen KEYFILE`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crust.cli.common import Parser


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


def cmd_keygen(args: argparse.Namespace) -> int:
    from crust.cache.keys import generate_key

    signer = generate_key(args.keyfile)
    print(f"{args.keyfile}: private key (keep it secret: only the builders that push need it)")
    print(f"{args.keyfile}.pub: public key {signer.key_id} (give it to builders with --trust)")
    return 0
