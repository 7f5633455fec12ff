"""The shared step cache for real: two builders with two stores sharing one bucket of
moto_server's S3 over HTTP, through the commands a user types.

Builder A is this session's store, which built `wsgi` cold; with --cache and its key it pushes
every step. Builder B has an empty store and only --trust (a pull request): it runs no step,
gets byte-identical artifacts and pushes nothing. A poisoned entry (content changed after
signing) and an entry signed by a key B does not trust are refused in one line and rebuilt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crust.build.equivalence import canonical_id
from crust.build.store import Store
from crust.cache import s3
from crust.cache.config import CacheConfig
from crust.cache.keys import generate_key
from crust.cache.remote import open_cache
from tests.conftest import ROOT
from tests.integration.aws_fakes import venv_moto

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from venv_moto(tmp_path_factory.mktemp("moto"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    generate_key(folder / "ci.key")
    generate_key(folder / "other.key")
    return {"ci": folder / "ci.key", "ci.pub": folder / "ci.key.pub", "other": folder / "other.key"}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Fake credentials only: boto3 must not find a real account's."""
    folder = tmp_path_factory.mktemp("aws")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDCACHEINTEGRATION",
        AWS_SECRET_ACCESS_KEY="cache-integration-not-real",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(folder / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(folder / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def crust(env: dict[str, str], store: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(ROOT / "build.py"), "--store", str(store), "--output", str(out), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=3600)


def new_bucket(url: str, env: dict[str, str]) -> tuple[CacheConfig, Any]:
    name = f"cache-{uuid.uuid4().hex[:12]}"
    config = CacheConfig(name, "team", url, None, ())
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        client = s3.make_client(config)
        client.create_bucket(Bucket=name)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return config, client


def shares(config: CacheConfig, *more: str) -> list[str]:
    return ["--cache", f"s3://{config.bucket}/{config.prefix}", "--cache-endpoint", str(config.endpoint), *more]


def keys_in(client: Any, config: CacheConfig) -> list[str]:
    return sorted(item.key for item in s3.list_objects(client, config.bucket, ""))


def ran(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " built in " in line]


@pytest.fixture(scope="module")
def seeded(built: Built, moto_url: str, keys: dict[str, Path], aws: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Builder A (this session's store, wsgi built) pushes every step of wsgi to a new bucket."""
    manifest = built("wsgi")
    config, client = new_bucket(moto_url, aws)
    out = tmp_path_factory.mktemp("out-a")
    started = time.monotonic()
    done = crust(aws, ROOT / ".crust", out, "build", "wsgi", *shares(config, "--cache-key", str(keys["ci"])))
    assert done.returncode == 0, done.stderr[-3000:]
    pushed = [line for line in done.stderr.splitlines() if "pushed to the shared cache (" in line]
    assert len(pushed) == len(manifest["steps"]), done.stderr
    return {"config": config, "client": client, "manifest": manifest, "push_s": time.monotonic() - started}


def test_second_builder_downloads_and_runs_nothing(seeded: dict[str, Any], keys: dict[str, Path], aws: dict[str, str], tmp_path: Path) -> None:
    config, client, a = seeded["config"], seeded["client"], seeded["manifest"]
    before = keys_in(client, config)
    started = time.monotonic()
    done = crust(aws, tmp_path / "b", tmp_path / "out", "build", "wsgi", *shares(config, "--trust", str(keys["ci.pub"])))
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert ran(done.stderr) == [], done.stderr
    assert "fetched from the shared cache (" in done.stderr
    b = json.loads((tmp_path / "out" / "wsgi" / "manifest.json").read_text())
    assert [(x["format"], x["sha256"]) for x in b["artifacts"]] == [(x["format"], x["sha256"]) for x in a["artifacts"]]
    for artifact in b["artifacts"]:
        assert (tmp_path / "out" / "wsgi" / Path(artifact["path"]).name).stat().st_size == artifact["size"]
    assert b["build_id"] == a["build_id"] and [s["id"] for s in b["steps"]] == [s["id"] for s in a["steps"]]
    assert keys_in(client, config) == before, "a builder without a signing key pushed"
    cold = sum(float(s["duration_s"]) for s in a["steps"])
    print(f"\nbuilder B: {took:.1f} s; builder A's steps took {cold:.1f} s to build ({took / cold:.0%}); the seed push {seeded['push_s']:.1f} s")


def last_blob(client: Any, config: CacheConfig, kind: str, step_id: str) -> str:
    body = client.get_object(Bucket=config.bucket, Key=f"{config.prefix}/steps/{kind}-{step_id}.json")["Body"].read()
    return str(json.loads(body)["manifest"]["blob"])


@pytest.mark.parametrize("kind", ["convert", "image"])
def test_poisoned_entry_is_refused_and_rebuilt(seeded: dict[str, Any], keys: dict[str, Path], aws: dict[str, str], tmp_path: Path, kind: str) -> None:
    """convert: its input (the image) is fetched anyway. image: the tree it reads was left in the
    cache (nothing was to run), so it is fetched when the image must be built here after all."""
    config, client, a = seeded["config"], seeded["client"], seeded["manifest"]
    convert = next(s for s in a["steps"] if s["kind"] == kind)
    blob = last_blob(client, config, kind, convert["id"])
    original = client.get_object(Bucket=config.bucket, Key=blob)["Body"].read()
    poisoned = bytearray(original)
    poisoned[len(poisoned) // 2] ^= 0xFF
    client.put_object(Bucket=config.bucket, Key=blob, Body=bytes(poisoned))
    try:
        done = crust(aws, tmp_path / "c", tmp_path / "out", "build", "wsgi", *shares(config, "--trust", str(keys["ci.pub"])))
    finally:
        client.put_object(Bucket=config.bucket, Key=blob, Body=original)
    assert done.returncode == 0, done.stderr[-3000:]
    refused = [line for line in done.stderr.splitlines() if "warning: shared cache entry" in line]
    assert len(refused) == 1 and f"{kind}-{convert['id'][:12]} refused: its content does not match its signed digest" in refused[0], done.stderr
    assert [line.split()[1] for line in ran(done.stderr)] == [kind], done.stderr
    c = json.loads((tmp_path / "out" / "wsgi" / "manifest.json").read_text())
    assert [x["sha256"] for x in c["artifacts"]] == [x["sha256"] for x in a["artifacts"]]


def test_entry_signed_by_an_untrusted_key_is_refused_and_rebuilt(
    seeded: dict[str, Any], moto_url: str, keys: dict[str, Path], aws: dict[str, str], tmp_path: Path
) -> None:
    """A second bucket whose convert entry another key signed (the rest signed by ci)."""
    a = seeded["manifest"]
    config, _ = new_bucket(moto_url, aws)
    saved = dict(os.environ)
    os.environ.update(aws)
    try:
        store = Store(ROOT / ".crust")
        for step in a["steps"]:
            entry = store.get(step["kind"], step["id"])
            assert entry is not None
            key = keys["other"] if step["kind"] == "convert" else keys["ci"]
            said: list[str] = []
            same_as = canonical_id(ROOT / ".crust" / "state", step["kind"], step["id"])  # as `build --cache` pushes it
            open_cache(CacheConfig(config.bucket, config.prefix, config.endpoint, key, ())).push(entry, said.append, same_as)
            assert said and said[0].startswith("pushed"), said
    finally:
        os.environ.clear()
        os.environ.update(saved)
    done = crust(aws, tmp_path / "d", tmp_path / "out", "build", "wsgi", *shares(config, "--trust", str(keys["ci.pub"])))
    assert done.returncode == 0, done.stderr[-3000:]
    refused = [line for line in done.stderr.splitlines() if "warning: shared cache entry" in line]
    assert len(refused) == 1 and "convert-" in refused[0] and "not trust" in refused[0], done.stderr
    assert [line.split()[1] for line in ran(done.stderr)] == ["convert"], done.stderr
