"""Where the shared cache is and which keys sign and are trusted.

From cache.toml beside the appliances directory (as targets.toml), then the command line,
option by option (an option replaces its file key; --trust replaces the file's list):

    url = "s3://BUCKET/PREFIX"        # --cache URL (--cache none: no cache for this run)
    endpoint = "http://..."           # --cache-endpoint URL; else boto3's (AWS_ENDPOINT_URL_S3...)
    key = "keys/cache.key"            # --cache-key KEYFILE: sign and push what this builder builds
    trust = ["keys/ci.pub"]           # --trust KEYFILE (repeatable): use entries these keys signed

Paths in the file are relative to it. Credentials are boto3's usual chain, never here. A builder
with no signing key only fetches (a pull request's); its own key's public half is trusted.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crust.define.settings import Invalid, Setting, apply_settings, parse_str, parse_str_list
from crust.define.tomlfile import find_line, load_toml
from crust.errors import UserError

FILE_NAME = "cache.toml"
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_PART_RE = re.compile(r"^[A-Za-z0-9._+=@-]+$")
URL_HINT = "write s3://BUCKET/PREFIX (a bucket name, then an optional prefix of plain path parts)"


@dataclass(frozen=True)
class CacheConfig:
    bucket: str
    prefix: str  # "" or "a/b": no leading or trailing slash
    endpoint: str | None  # None: boto3's own (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS)
    signing_key: Path | None  # None: a read-only builder (fetches, never pushes)
    trusted: tuple[Path, ...]  # public keys whose signatures are accepted

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key_of(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name


def parse_url(value: Any) -> tuple[str, str]:
    """s3://BUCKET/PREFIX -> (bucket, prefix)."""
    text = parse_str(value)
    if not text.startswith("s3://"):
        raise Invalid(f"{text!r} is not an s3:// URL")
    bucket, _, prefix = text[len("s3://") :].partition("/")
    if not BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise Invalid(f"{bucket!r} is not a bucket name (3-63 lower-case letters, digits, '.' and '-')")
    parts = [p for p in prefix.strip("/").split("/") if p] if prefix.strip("/") else []
    for part in parts:
        if part in (".", "..") or not PREFIX_PART_RE.fullmatch(part):
            raise Invalid(f"prefix part {part!r} is not a plain name (letters, digits, . _ + = @ -)")
    return bucket, "/".join(parts)


def parse_endpoint(value: Any) -> str:
    text = parse_str(value)
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", text):
        raise Invalid(f"{text!r} is not an http(s) URL")
    return text


SETTINGS: tuple[Setting, ...] = (
    Setting("url", parse_url, "", "the shared cache: s3://BUCKET/PREFIX (none: no shared cache)"),
    Setting("endpoint", parse_endpoint, "", "the S3 endpoint URL (none: boto3's: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS)"),
    Setting("key", parse_str, "", "the Ed25519 private key that signs what this builder pushes (./build.py cache keygen makes one)"),
    Setting("trust", parse_str_list, (), "public keys (KEYFILE.pub) whose signed entries this builder uses"),
)


def add_cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="URL", help=f"shared step cache s3://BUCKET/PREFIX (default: url in {FILE_NAME}; 'none': no cache)")
    p.add_argument("--cache-endpoint", metavar="URL", help="S3 endpoint URL of the cache (default: endpoint in the file, then boto3's)")
    p.add_argument("--cache-key", type=Path, metavar="KEYFILE", help="sign and push built steps with this Ed25519 key (without: fetch only)")
    p.add_argument(
        "--trust",
        type=Path,
        action="append",
        metavar="KEYFILE",
        help="use cache entries signed by this public key (repeatable; replaces the file's list)",
    )


def load_cache_config(settings_file: Path, args: argparse.Namespace, use: bool = True) -> CacheConfig | None:
    """The cache of this run: cache.toml, then the options; None when no cache is set. use:
    entries are used (some key must be trusted); not for housekeeping (`cache prune`)."""
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    text = ""
    if settings_file.is_file():
        data, text = load_toml(settings_file)
        values = apply_settings(SETTINGS, data, "", settings_file, text)
    key_from_file = bool(values["key"]) and getattr(args, "cache_key", None) is None
    trust_from_file = getattr(args, "trust", None) is None
    url = getattr(args, "cache", None)
    if url == "none":
        return None
    if url is not None:
        values["url"] = option_value(parse_url, url, "--cache", URL_HINT)
    if getattr(args, "cache_endpoint", None) is not None:
        values["endpoint"] = option_value(parse_endpoint, args.cache_endpoint, "--cache-endpoint", "give http(s)://HOST[:PORT]")
    if not values["url"]:
        if getattr(args, "cache_key", None) is not None or getattr(args, "trust", None):
            raise UserError("--cache-key and --trust need a cache", hint=f"give --cache s3://BUCKET/PREFIX or url in {settings_file}")
        return None
    bucket, prefix = values["url"]
    base = settings_file.parent
    if key_from_file:
        signing: Path | None = resolve(base, values["key"], settings_file, text, "key")
    else:
        signing = getattr(args, "cache_key", None)
        if signing is not None:
            check_file(signing, "--cache-key", None, None)
    if trust_from_file:
        trusted = tuple(resolve(base, p, settings_file, text, "trust") for p in values["trust"])
    else:
        trusted = tuple(args.trust)
        for path in trusted:
            check_file(path, "--trust", None, None)
    if use and signing is None and not trusted:
        raise UserError(
            f"shared cache {values['url'][0]}: no key to trust, so no entry could be used",
            hint="give --trust KEYFILE.pub (the public key of the builders that push), or --cache-key KEYFILE to push",
        )
    return CacheConfig(bucket, prefix, values["endpoint"] or None, signing, trusted)


def option_value(parse: Any, value: str, option: str, hint: str) -> Any:
    try:
        return parse(value)
    except Invalid as exc:
        raise UserError(f"{option} {value}: {exc}", hint=hint) from None


def resolve(base: Path, value: str, settings_file: Path, text: str, key: str) -> Path:
    path = (base / Path(value).expanduser()).resolve()
    check_file(path, key, settings_file, find_line(text, key))
    return path


def check_file(path: Path, what: str, file: Path | None, line: int | None) -> None:
    if not path.is_file():
        raise UserError(f"{what} {path}: no such file", file=file, line=line, hint="give a key file (./build.py cache keygen KEYFILE makes a pair)")


def cache_reference() -> str:
    """The shared cache part of `list --settings`."""
    from crust.define.settings import reference_lines

    return "\n".join(
        [
            f"Shared step cache: {FILE_NAME} beside appliances/ (options --cache, --cache-endpoint, --cache-key, --trust win):",
            *reference_lines(SETTINGS),
        ]
    )
