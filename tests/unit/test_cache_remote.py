"""The shared step cache against moto_server over HTTP: a pushed entry fetched by another
builder is the same tree; poisoned, unsigned, untrusted and misplaced entries are refused in one
line; a read-only builder never pushes; a push killed midway leaves nothing visible; two pushes
of one step leave one whole entry."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crust.build.equivalence import digest_output
from crust.build.store import Entry, Store
from crust.cache import s3
from crust.cache.config import CacheConfig
from crust.cache.keys import generate_key
from crust.cache.remote import S3Cache, open_cache
from tests.integration.aws_fakes import venv_moto
from tests.unit.test_cache_archive import describe

STEP_ID = "ab" * 32


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from venv_moto(tmp_path_factory.mktemp("moto"))


@pytest.fixture
def bucket(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCACHETESTKEY0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cache-test-secret-not-real")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    name = f"cache-{uuid.uuid4().hex[:12]}"
    s3.make_client(config(moto_url, name)).create_bucket(Bucket=name)
    return name


def config(url: str, bucket: str, key: Path | None = None, trusted: tuple[Path, ...] = ()) -> CacheConfig:
    return CacheConfig(bucket, "team/steps", url, key, trusted)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "keys"
    folder.mkdir()
    generate_key(folder / "ci.key")
    generate_key(folder / "other.key")
    return {"ci": folder / "ci.key", "ci.pub": folder / "ci.key.pub", "other": folder / "other.key", "other.pub": folder / "other.key.pub"}


def built_entry(store: Store, step_id: str = STEP_ID, payload: bytes = b"data", kind: str = "tree") -> Entry:
    """An entry committed as the executor commits one: files, a link, modes, its output digest."""
    with store.building(kind, step_id) as tmp:
        (tmp / "tree" / "etc").mkdir(parents=True)
        (tmp / "tree" / "etc" / "hostname").write_text("appliance\n")
        (tmp / "tree" / "payload").write_bytes(payload)
        os.chmod(tmp / "tree" / "payload", 0o600)
        os.symlink("etc/hostname", tmp / "tree" / "link")
        meta = {"kind": kind, "name": "wsgi", "id": step_id, "duration_s": 1.0, "created": "2026-11-30T00:00:00+00:00", "outputs": {}}
        meta["output_digest"] = digest_output(tmp)
        return store.commit(kind, step_id, tmp, meta)


class Said:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        assert "\n" not in text
        self.lines.append(text)


def objects(cache: S3Cache) -> list[str]:
    return sorted(item.key for item in s3.list_objects(cache.client, cache.config.bucket, ""))


def pushed(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path, signer: str = "ci") -> tuple[S3Cache, Entry]:
    cache = open_cache(config(moto_url, bucket, keys[signer]))
    entry = built_entry(Store(tmp_path / "builder"))
    said = Said()
    cache.push(entry, said)
    assert said.lines == ["pushed to the shared cache (" + said.lines[0].split("(", 1)[1]]
    return cache, entry


def reader(moto_url: str, bucket: str, keys: dict[str, Path]) -> S3Cache:
    return open_cache(config(moto_url, bucket, None, (keys["ci.pub"],)))


def test_pushed_entry_is_fetched_as_the_same_tree(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    cache, entry = pushed(moto_url, bucket, keys, tmp_path)
    names = objects(cache)
    assert names[-1] == f"team/steps/steps/tree-{STEP_ID}.json"
    assert len(names) == 2 and names[0].startswith(f"team/steps/blobs/tree-{STEP_ID}/") and names[0].endswith(".tar.zst")
    store, said = Store(tmp_path / "pull-request"), Said()
    fetched = reader(moto_url, bucket, keys).fetch(store, "tree", STEP_ID, said)
    assert fetched is not None and fetched == store.get("tree", STEP_ID)
    here, there = describe(fetched.path), describe(entry.path)
    for facts in (here, there):
        facts["step.json"].pop("mtime")  # the store writes step.json again as it commits
    assert here == there
    assert said.lines[0].startswith("fetched from the shared cache (") and "signed by ed25519:" in said.lines[0]
    assert "fetched from the shared cache" in store.log_path("tree", STEP_ID).read_text()
    assert list((store.root / "tmp").iterdir()) == []


def test_miss_is_silent(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    said = Said()
    assert reader(moto_url, bucket, keys).fetch(Store(tmp_path / "s"), "tree", STEP_ID, said) is None
    assert said.lines == []


def refusal(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> str:
    store, said = Store(tmp_path / "pull-request"), Said()
    assert reader(moto_url, bucket, keys).fetch(store, "tree", STEP_ID, said) is None
    assert store.get("tree", STEP_ID) is None and list((store.root / "steps").iterdir()) == []
    assert list((store.root / "tmp").iterdir()) == []
    assert len(said.lines) == 1 and said.lines[0].startswith(f"warning: shared cache entry tree-{STEP_ID[:12]} refused: ")
    assert said.lines[0].endswith("; building it here")
    return said.lines[0]


def test_poisoned_blob_is_refused(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    cache, _ = pushed(moto_url, bucket, keys, tmp_path)
    blob = objects(cache)[0]
    poisoned = built_entry(Store(tmp_path / "attacker"), payload=b"evil")
    from crust.cache.archive import pack_entry

    with open(tmp_path / "evil.tar.zst", "wb") as fh:
        pack_entry(poisoned.path, fh)
    cache.client.put_object(Bucket=bucket, Key=blob, Body=(tmp_path / "evil.tar.zst").read_bytes())
    assert "does not match its signed digest" in refusal(moto_url, bucket, keys, tmp_path)


def test_entry_signed_by_another_key_is_refused(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    pushed(moto_url, bucket, keys, tmp_path, signer="other")
    assert "signed by a key this builder does not trust (ed25519:" in refusal(moto_url, bucket, keys, tmp_path)


def edit_manifest(cache: S3Cache, change: Any) -> None:
    key = cache.marker_key("tree", STEP_ID)
    envelope = json.loads(cache.client.get_object(Bucket=cache.config.bucket, Key=key)["Body"].read())
    change(envelope)
    cache.client.put_object(Bucket=cache.config.bucket, Key=key, Body=json.dumps(envelope).encode())


def test_unsigned_entry_is_refused(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    cache, _ = pushed(moto_url, bucket, keys, tmp_path)
    edit_manifest(cache, lambda e: e.pop("signature"))
    assert refusal(moto_url, bucket, keys, tmp_path).endswith("refused: unsigned; building it here")


def test_manifest_changed_after_signing_is_refused(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    cache, _ = pushed(moto_url, bucket, keys, tmp_path)
    edit_manifest(cache, lambda e: e["manifest"].update(sha256="0" * 64))
    assert "its signature does not match its manifest" in refusal(moto_url, bucket, keys, tmp_path)


def test_signed_entry_of_another_step_is_refused(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    cache = open_cache(config(moto_url, bucket, keys["ci"]))
    cache.push(built_entry(Store(tmp_path / "builder"), step_id="cd" * 32), Said())
    marker = cache.client.get_object(Bucket=bucket, Key=cache.marker_key("tree", "cd" * 32))["Body"].read()
    cache.client.put_object(Bucket=bucket, Key=cache.marker_key("tree", STEP_ID), Body=marker)  # replayed under another id
    assert f"its signed manifest is for tree-{'cd' * 6}" in refusal(moto_url, bucket, keys, tmp_path)


def test_read_only_builder_never_pushes(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    cache, said = reader(moto_url, bucket, keys), Said()
    cache.push(built_entry(Store(tmp_path / "pull-request")), said)
    assert said.lines == [] and objects(cache) == []


def test_push_killed_midway_leaves_nothing_visible(
    moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part: three parts
    cache = open_cache(config(moto_url, bucket, keys["ci"]))
    entry = built_entry(Store(tmp_path / "builder"), payload=os.urandom(12 * 1024 * 1024))
    real_read, reads = s3.HashingReader.read, []

    def dying_read(self: s3.HashingReader, amount: int = -1) -> bytes:
        reads.append(amount)
        if len(reads) == 3:  # the first part is on its way: the stream breaks
            raise OSError(5, "Input/output error")
        return real_read(self, amount)

    monkeypatch.setattr(s3.HashingReader, "read", dying_read)
    said = Said()
    cache.push(entry, said)
    assert len(said.lines) == 1 and said.lines[0].startswith("warning: not pushed to the shared cache: "), said.lines
    assert len(reads) == 3
    assert objects(cache) == []
    assert cache.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted
    said = Said()
    assert reader(moto_url, bucket, keys).fetch(Store(tmp_path / "pull-request"), "tree", STEP_ID, said) is None
    assert said.lines == []


def test_failed_push_is_a_one_line_warning(
    moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = open_cache(config(moto_url, bucket, keys["ci"]))
    entry = built_entry(Store(tmp_path / "builder"))

    def unreadable(entry: Path, out: Any) -> None:
        out.write(b"partial")
        raise PermissionError(13, "Permission denied", str(entry / "tree"))

    monkeypatch.setattr("crust.cache.remote.pack_entry", unreadable)
    said = Said()
    cache.push(entry, said)
    assert len(said.lines) == 1 and said.lines[0].startswith("warning: not pushed to the shared cache: PermissionError")
    assert objects(cache) == []  # a stream that ended early is never taken as whole


def test_two_pushes_of_one_step_leave_one_whole_entry(
    moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = pushed(moto_url, bucket, keys, tmp_path)
    second = open_cache(config(moto_url, bucket, keys["ci"]))
    said = Said()
    with monkeypatch.context() as patch:
        patch.setattr(s3, "get_small", lambda *args: None)  # it looked before the first one published
        second.push(built_entry(Store(tmp_path / "second"), payload=b"data"), said)
    assert said.lines == ["already in the shared cache (another builder pushed it first)"]
    assert len(objects(first)) == 2
    assert reader(moto_url, bucket, keys).fetch(Store(tmp_path / "pull-request"), "tree", STEP_ID, Said()) is not None


def test_concurrent_pushes_leave_one_whole_entry(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    said = Said()
    caches = [open_cache(config(moto_url, bucket, keys["ci"])) for _ in range(3)]
    entries = [built_entry(Store(tmp_path / f"builder{i}")) for i in range(3)]
    threads = [threading.Thread(target=c.push, args=(e, said)) for c, e in zip(caches, entries, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(objects(caches[0])) == 2
    assert sum(line.startswith("pushed") for line in said.lines) == 1
    assert reader(moto_url, bucket, keys).fetch(Store(tmp_path / "pull-request"), "tree", STEP_ID, Said()) is not None


def test_executor_fetches_a_missing_step_and_pushes_a_built_one(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    """ensure(): the signing builder builds and pushes (after the step's lock is released); the
    read-only one fetches instead of building, and never pushes."""
    import fcntl
    import io

    from crust.build.executor import ensure
    from crust.build.plan import Step
    from crust.build.progress import Progress

    step = Step("tree", "wsgi", STEP_ID, {})
    runs: list[Path] = []

    def action(tmp: Path) -> dict[str, Any]:
        runs.append(tmp)
        (tmp / "tree").mkdir()
        (tmp / "tree" / "hostname").write_text("appliance\n")
        return {}

    signing = open_cache(config(moto_url, bucket, keys["ci"]))
    real_push, locked = signing.push, []

    def push(entry: Entry, say: Any, same_as: str | None = None) -> None:
        with open(builder.root / "locks" / f"{STEP_ID}.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                locked.append(True)
        real_push(entry, say, same_as)

    signing.push = push  # type: ignore[method-assign]
    builder, out = Store(tmp_path / "ci"), io.StringIO()
    built = ensure(builder, step, action, Progress(out), signing)
    assert len(runs) == 1 and not built.cached and locked == []
    assert "[wsgi] tree     pushed to the shared cache (" in out.getvalue()

    pull_request, out = Store(tmp_path / "pr"), io.StringIO()
    fetched = ensure(pull_request, step, action, Progress(out), reader(moto_url, bucket, keys))
    assert len(runs) == 1 and fetched.cached and fetched.fetched
    assert "[wsgi] tree     fetched from the shared cache (" in out.getvalue()
    assert (fetched.entry.path / "tree" / "hostname").read_text() == "appliance\n"
    assert ensure(pull_request, step, action, Progress(io.StringIO()), reader(moto_url, bucket, keys)).fetched is False  # now local


def test_plan_shows_steps_in_the_shared_cache(
    moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from crust.build.plan import plan_appliance
    from crust.cli import main
    from crust.define.project import Project
    from crust.distros import debian
    from tests.conftest import ROOT

    fixed = dataclasses.replace(debian.BACKEND, mirror_state=lambda distro, state_dir, refresh: {"trixie": "aa", "trixie-security": "bb"})
    monkeypatch.setattr(debian, "BACKEND", fixed)  # no network: a fixed mirror state
    store = tmp_path / "store"
    base = plan_appliance(Project.at(ROOT), "wsgi", store / "state").step("base")
    open_cache(config(moto_url, bucket, keys["ci"])).push(built_entry(Store(tmp_path / "ci"), base.id, kind="base"), Said())
    argv = [
        "--store",
        str(store),
        "plan",
        "wsgi",
        "--cache",
        f"s3://{bucket}/team/steps",
        "--cache-endpoint",
        moto_url,
        "--trust",
        str(keys["ci.pub"]),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    base_line = next(line for line in lines if " base " in line)
    assert re.search(r" base +debian-13 +[0-9a-f]{12}  in the shared cache \(\d+(\.\d)? (B|KiB)\)$", base_line), base_line
    assert all("will run" in line for line in lines if " base " not in line)
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"].split(" (")[0] for r in rows if r["step"] == "base"] == ["in the shared cache"]


PUSH_SCRIPT = """
import sys
from pathlib import Path
from crust.build.store import Store
from crust.cache import s3
from crust.cache.config import CacheConfig
from crust.cache.remote import open_cache
s3.PART_BYTES = 5 * 1024 * 1024
url, bucket, key, store = sys.argv[1:]
cache = open_cache(CacheConfig(bucket, "team/steps", url, Path(key), ()))
entry = Store(Path(store)).get("tree", "STEP_ID")
cache.push(entry, print)
""".replace("STEP_ID", STEP_ID)


def test_push_killed_by_sigkill_leaves_nothing_visible(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    """The builder is killed (CRUST_FAULT=cache.upload:SIGKILL) while a part is on its way:
    no entry is visible, only an unfinished multipart upload that nothing reads."""
    import subprocess

    from tests.conftest import ROOT

    built_entry(Store(tmp_path / "builder"), payload=os.urandom(12 * 1024 * 1024))
    env = dict(os.environ, CRUST_FAULT="cache.upload:SIGKILL", PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-c", PUSH_SCRIPT, moto_url, bucket, str(keys["ci"]), str(tmp_path / "builder")]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == -9, done.stderr
    assert "crust: fault point cache.upload: SIGKILL" in done.stderr
    cache = reader(moto_url, bucket, keys)
    assert objects(cache) == []
    said = Said()
    assert cache.fetch(Store(tmp_path / "pull-request"), "tree", STEP_ID, said) is None and said.lines == []


def test_unreachable_cache_is_a_warning_without_credentials(keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.aws_fakes import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCACHETESTKEY0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cache-test-secret-not-real")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    cache = open_cache(config(f"http://127.0.0.1:{free_port()}", "nowhere", keys["ci"], (keys["ci.pub"],)))
    said = Said()
    assert cache.fetch(Store(tmp_path / "s"), "tree", STEP_ID, said) is None
    cache.push(built_entry(Store(tmp_path / "b")), said)
    assert len(said.lines) == 2
    assert said.lines[0].startswith(f"warning: shared cache entry tree-{STEP_ID[:12]} not fetched: ") and said.lines[0].endswith("; building it here")
    assert said.lines[1].startswith("warning: not pushed to the shared cache: ")
    assert not any("cache-test-secret-not-real" in line or "AKIDCACHETESTKEY0000" in line for line in said.lines)


def test_status_shows_the_shared_cache(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crust.cli import main

    pushed(moto_url, bucket, keys, tmp_path)
    argv = ["--store", str(tmp_path / "store"), "status", "--cache", f"s3://{bucket}/team/steps", "--cache-endpoint", moto_url]
    assert main([*argv, "--trust", str(keys["ci.pub"])]) == 0
    assert re.search(r"^shared cache: 1 entries, \d+ B compressed$", capsys.readouterr().out, re.MULTILINE)
    assert main([*argv[:-4], "--cache", f"s3://{bucket}/team/steps", "--cache-endpoint", "http://127.0.0.1:1", "--trust", str(keys["ci.pub"])]) == 0
    captured = capsys.readouterr()
    assert "shared cache:" not in captured.out and captured.err.startswith("warning: shared cache s3://") and captured.err.count("\n") == 1


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"manifest": "x", "signature": "y"}'], ids=["garbage", "list", "manifest-not-a-table"])
def test_marker_that_is_no_manifest_is_refused(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path, body: bytes) -> None:
    cache = reader(moto_url, bucket, keys)
    cache.client.put_object(Bucket=bucket, Key=cache.marker_key("tree", STEP_ID), Body=body)
    assert refusal(moto_url, bucket, keys, tmp_path).endswith("refused: not a Crust cache manifest; building it here")


def test_signed_manifest_without_its_digest_is_refused(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    from crust.cache.keys import load_signer
    from crust.cache.remote import canonical

    cache, _ = pushed(moto_url, bucket, keys, tmp_path)
    signer = load_signer(keys["ci"])

    def drop_digest(envelope: dict[str, Any]) -> None:
        del envelope["manifest"]["sha256"]
        envelope["signature"] = signer.sign(canonical(envelope["manifest"]))

    edit_manifest(cache, drop_digest)
    assert "its signed manifest has no sha256 or size" in refusal(moto_url, bucket, keys, tmp_path)


def test_fetching_builder_takes_the_pushers_early_cut_off(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    """A step whose output equals an earlier step's is pushed with that step's id; a builder that
    fetches it plans the steps after it from the same id (so it fetches them too), and an output
    its own store already knows keeps its own canonical step."""
    from crust.build.equivalence import canonical_id, record_output

    older = "cd" * 32
    entry = built_entry(Store(tmp_path / "ci"))
    open_cache(config(moto_url, bucket, keys["ci"])).push(entry, Said(), older)
    store = Store(tmp_path / "pr")
    assert reader(moto_url, bucket, keys).fetch(store, "tree", STEP_ID, Said()) is not None
    state = store.root / "state"
    made = entry.meta["output_digest"]
    assert record_output(state, "tree", STEP_ID, made) == older
    assert canonical_id(state, "tree", STEP_ID) == older

    other = Store(tmp_path / "laptop")
    mine = "ef" * 32
    assert record_output(other.root / "state", "tree", mine, made) == mine
    assert reader(moto_url, bucket, keys).fetch(other, "tree", STEP_ID, Said()) is not None
    assert record_output(other.root / "state", "tree", STEP_ID, made) == mine


def test_record_naming_a_path_is_refused(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> None:
    """Even a trusted signer's record cannot name a path for the store's early cut-off state:
    its output digest must be a sha256 (it becomes state/outputs/KIND-DIGEST)."""
    store = Store(tmp_path / "builder")
    with store.building("tree", STEP_ID) as tmp:
        (tmp / "tree").mkdir()
        (tmp / "tree" / "hostname").write_text("appliance\n")
        meta = {"kind": "tree", "name": "wsgi", "id": STEP_ID, "duration_s": 1.0, "created": "2026-11-30T00:00:00+00:00", "outputs": {}}
        meta["output_digest"] = "../../../../escaped"
        entry = store.commit("tree", STEP_ID, tmp, meta)
    open_cache(config(moto_url, bucket, keys["ci"])).push(entry, Said())
    cache, said, pr = reader(moto_url, bucket, keys), Said(), Store(tmp_path / "pull-request")
    assert cache.peek("tree", STEP_ID) is None
    assert cache.fetch(pr, "tree", STEP_ID, said) is None
    assert said.lines == [f"warning: shared cache entry tree-{STEP_ID[:12]} refused: its record's output digest is not a sha256; building it here"]
    assert pr.get("tree", STEP_ID) is None and not (tmp_path / "escaped").exists() and not list(tmp_path.rglob("*escaped*"))
