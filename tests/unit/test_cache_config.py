"""The shared cache's configuration (cache.toml, then the options) and its keys: bad input is
one line naming the file and line (or the option) with exit status 2."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from crust.cache.config import CacheConfig, add_cache_options, load_cache_config
from crust.cache.keys import BadSignature, generate_key, load_signer, load_trusted, verify
from crust.cli.common import Parser
from crust.errors import UserError


def options(*argv: str) -> argparse.Namespace:
    parser = Parser(prog="build.py build")
    add_cache_options(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    generate_key(folder / "ci.key")
    return folder


def test_no_file_no_option_no_cache(tmp_path: Path) -> None:
    assert load_cache_config(tmp_path / "cache.toml", options()) is None


def test_file_paths_are_relative_to_it(tmp_path: Path, keys: Path) -> None:
    (tmp_path / "cache.toml").write_text(
        'url = "s3://team-cache/crust/steps/"\nendpoint = "http://127.0.0.1:9000"\nkey = "keys/ci.key"\ntrust = ["keys/ci.key.pub"]\n'
    )
    config = load_cache_config(tmp_path / "cache.toml", options())
    assert config == CacheConfig("team-cache", "crust/steps", "http://127.0.0.1:9000", keys / "ci.key", (keys / "ci.key.pub",))
    assert config.url == "s3://team-cache/crust/steps" and config.key_of("steps/x.json") == "crust/steps/steps/x.json"


def test_options_win_key_by_key(tmp_path: Path, keys: Path) -> None:
    (tmp_path / "cache.toml").write_text('url = "s3://team-cache/a"\nkey = "keys/ci.key"\n')
    config = load_cache_config(tmp_path / "cache.toml", options("--cache", "s3://other-bucket", "--trust", str(keys / "ci.key.pub")))
    assert config == CacheConfig("other-bucket", "", None, keys / "ci.key", (keys / "ci.key.pub",))
    assert load_cache_config(tmp_path / "cache.toml", options("--cache", "none")) is None


def test_read_only_builder_has_no_key(tmp_path: Path, keys: Path) -> None:
    config = load_cache_config(tmp_path / "cache.toml", options("--cache", "s3://team-cache/p", "--trust", str(keys / "ci.key.pub")))
    assert config is not None and config.signing_key is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('url = "http://team-cache/p"\n', "cache.toml:1: url: 'http://team-cache/p' is not an s3:// URL"),
        ('url = "s3://Team_Cache/p"\n', "cache.toml:1: url: 'Team_Cache' is not a bucket name"),
        ('url = "s3://team-cache/../p"\n', "cache.toml:1: url: prefix part '..' is not a plain name"),
        ('url = "s3://team-cache"\ntrust = "keys/ci.key.pub"\n', "cache.toml:2: trust: expected a list of strings"),
        ('url = "s3://team-cache"\nkey = "keys/missing.key"\n', "cache.toml:2: key "),
        ('url = "s3://team-cache"\nsigning_key = "k"\n', "cache.toml:2: unknown key 'signing_key'"),
        ('url = "s3://team-cache"\n', "shared cache team-cache: no key to trust, so no entry could be used"),
        ("url = s3://x\n", "cache.toml:1: invalid TOML"),
    ],
)
def test_bad_file_is_one_line_with_file_and_line(tmp_path: Path, keys: Path, text: str, message: str) -> None:
    (tmp_path / "cache.toml").write_text(text)
    with pytest.raises(UserError) as caught:
        load_cache_config(tmp_path / "cache.toml", options())
    line = caught.value.one_line().replace(f"{tmp_path}/", "")
    assert message in line and "(fix: " in line and "\n" not in line
    assert caught.value.exit_status == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cache", "s3://"], "--cache s3://: '' is not a bucket name"),
        (["--cache", "s3://team-cache", "--cache-endpoint", "ftp://x"], "--cache-endpoint ftp://x: 'ftp://x' is not an http(s) URL"),
        (["--cache", "s3://team-cache", "--trust", "/nonexistent.pub"], "--trust /nonexistent.pub: no such file"),
        (["--trust", "/nonexistent.pub"], "--cache-key and --trust need a cache"),
    ],
)
def test_bad_option_is_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(UserError) as caught:
        load_cache_config(tmp_path / "cache.toml", options(*argv))
    assert message in caught.value.one_line()


def test_keygen_makes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    os.umask(0o000)
    try:
        signer = generate_key(tmp_path / "k")
    finally:
        os.umask(0o022)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k.pub").read_text().startswith("ssh-ed25519 ") and (tmp_path / "k.pub").read_text().endswith(" crust-cache\n")
    assert load_signer(tmp_path / "k").key_id == signer.key_id == load_trusted(tmp_path / "k.pub").key_id
    with pytest.raises(UserError, match="exists"):
        generate_key(tmp_path / "k")


def test_readable_private_key_and_wrong_files_are_refused(tmp_path: Path, keys: Path) -> None:
    os.chmod(keys / "ci.key", 0o644)
    with pytest.raises(UserError, match="mode 0644 lets others read it"):
        load_signer(keys / "ci.key")
    with pytest.raises(UserError, match="not an Ed25519 public key"):
        load_trusted(keys / "ci.key")
    (tmp_path / "garbage.key").write_text("not a key\n")
    os.chmod(tmp_path / "garbage.key", 0o600)
    with pytest.raises(UserError, match="not an unencrypted Ed25519 private key"):
        load_signer(tmp_path / "garbage.key")
    (tmp_path / "rsa.pub").write_text("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 x\n")
    with pytest.raises(UserError, match="not an Ed25519 public key"):
        load_trusted(tmp_path / "rsa.pub")


def test_signatures_verify_only_with_the_trusted_key(tmp_path: Path) -> None:
    one, other = generate_key(tmp_path / "one"), generate_key(tmp_path / "other")
    trusted = {one.key_id: load_trusted(tmp_path / "one.pub")}
    verify(trusted, one.key_id, one.sign(b"manifest"), b"manifest")
    with pytest.raises(BadSignature, match="does not match"):
        verify(trusted, one.key_id, one.sign(b"manifest"), b"manifest!")
    with pytest.raises(BadSignature, match="does not trust"):
        verify(trusted, other.key_id, other.sign(b"manifest"), b"manifest")
    with pytest.raises(BadSignature, match="does not match"):
        verify(trusted, one.key_id, other.sign(b"manifest"), b"manifest")  # another key's signature under this key's name
