"""The Google Cloud target through the real command line. The bucket side runs against a real
local Cloud Storage (gcp-storage-emulator, started by the tests: tests/integration/gcs_emulator.py):
the object read back and untarred, reuse by digest, composite uploads, interrupted and killed
uploads. Compute Engine cannot run here: images.insert, instances.insert, operation polling and
deletes are checked on the requests Crust sends to a recording stand-in (FakeCompute).

Most tests upload a small synthetic gce file (a 1 GiB sparse disk with 24 MiB of random data,
made by the format's own converter) recorded in a copy of the session's wsgi manifest; one sends
the real wsgi image, converted by the format."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crust.formats.gce import GIB, write_gce
from tests.conftest import ROOT, build_py, need, need_tool
from tests.integration.gcp_fakes import PROJECT, ZONE, FakeCompute
from tests.integration.gcs_emulator import emulator_available, gcs_emulator

pytestmark = pytest.mark.integration

BUCKET = "crust-images"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrustTestKeyCrustTestKeyCrustTestKey0 test@crust"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need(emulator_available(), "no gcp-storage-emulator (./setup.sh installs the dev extra of pyproject.toml into .venv)")
    with gcs_emulator(tmp_path_factory.mktemp("gcs"), BUCKET) as url:
        yield url


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 1 GiB sparse raw disk with 24 MiB of random data, and its gce file."""
    for tool in ("tar", "gzip", "sfdisk"):
        need_tool(tool)
    work = tmp_path_factory.mktemp("synthetic")
    raw = work / "disk.raw"
    with raw.open("wb") as fh:
        fh.truncate(GIB)
        fh.seek(100 * MIB)
        fh.write(os.urandom(24 * MIB))
    gce = work / "synthetic.gce"
    write_gce(raw, gce, 1_700_000_000)
    return raw, gce


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def compute() -> Iterator[FakeCompute]:
    server = FakeCompute()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# -- a workspace ---------------------------------------------------------------------------------


class Workspace:
    """appliances/, targets.toml (the emulator and the stand-in by endpoint), out/wsgi with a copy
    of the session's wsgi manifest whose gce artifact is the given file, a store."""

    def __init__(self, root: Path, gce: Path, targets: str) -> None:
        self.root = root
        self.appliances = root / "appliances"
        self.appliances.mkdir(parents=True)
        for name in ("wsgi.toml", "wsgi_checks.py"):
            shutil.copy(ROOT / "appliances" / name, self.appliances / name)
        (root / "targets.toml").write_text(targets, encoding="utf-8")
        self.out = root / "out"
        (self.out / "wsgi").mkdir(parents=True)
        manifest = json.loads((ROOT / "build" / "wsgi" / "manifest.json").read_text())
        manifest.pop("cloud", None)
        artifacts = []
        for artifact in manifest["artifacts"]:
            if artifact["format"] == "gce":
                continue
            source = Path(artifact["path"])
            if not source.is_absolute():
                source = ROOT / "build" / "wsgi" / source
            dest = self.out / "wsgi" / source.name
            os.link(source, dest)
            artifacts.append({**artifact, "path": str(dest)})
        dest = self.out / "wsgi" / "wsgi.gce"
        os.link(gce, dest)
        st = dest.stat()
        artifacts.append({"format": "gce", "path": str(dest), "sha256": sha256(dest), "size": st.st_size, "allocated": st.st_blocks * 512})
        manifest["artifacts"] = artifacts
        (self.out / "wsgi" / "manifest.json").write_text(json.dumps(manifest, indent=2))
        self.store = root / "store"
        self.key = root / "id_ed25519.pub"
        self.key.write_text(PUBLIC_KEY + "\n")
        gone = ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG")
        self.env: dict[str, str | None] = {**{k: None for k in gone}, "NO_GCE_CHECK": "True", "CLOUDSDK_CONFIG": str(root / "gcloud")}

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "wsgi" / "manifest.json").read_text())
        return data

    def digest(self) -> str:
        return str(next(a for a in self.manifest()["artifacts"] if a["format"] == "raw")["sha256"])

    def gce(self) -> dict[str, Any]:
        return next(a for a in self.manifest()["artifacts"] if a["format"] == "gce")

    def crust(self, *args: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["--appliances", str(self.appliances), "--output", str(self.out), "--store", str(self.store), *args]
        return build_py(*argv, env={**self.env, **(env or {})}, timeout=900)


def targets(gcs: str, compute: str, extra: str = "") -> str:
    return (
        f'[gcp]\nproject = "{PROJECT}"\nbucket = "{BUCKET}"\nprefix = "images/"\nfamily = "crust-wsgi"\nzone = "{ZONE}"\n'
        f'machine_type = "e2-medium"\nnetwork = "crust-net"\nlabels = {{ team = "web" }}\n'
        f'storage_endpoint = "{gcs}"\ncompute_endpoint = "{compute}"\n' + extra
    )


@pytest.fixture
def ws(built: Any, gcs: str, compute: FakeCompute, synthetic: tuple[Path, Path], tmp_path: Path) -> Iterator[Workspace]:
    built("wsgi")
    workspace = Workspace(tmp_path / "ws", synthetic[1], targets(gcs, compute.url))
    yield workspace
    for blob in bucket_objects(gcs):  # each test starts from an empty bucket
        client_bucket(gcs).blob(blob["name"]).delete()


def client_bucket(gcs: str) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=PROJECT, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=gcs)).bucket(BUCKET)


def bucket_objects(gcs: str) -> list[dict[str, Any]]:
    return [{"name": b.name, "generation": b.generation, "metadata": b.metadata or {}, "size": b.size} for b in client_bucket(gcs).list_blobs()]


def untarred(gcs: str, name: str, into: Path) -> Path:
    """The object downloaded and untarred (sparse); the disk.raw it holds."""
    archive = into / "object.tar.gz"
    client_bucket(gcs).blob(name).download_to_filename(str(archive))
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["disk.raw"]
    subprocess.run(["tar", "--extract", "--sparse", f"--file={archive}", f"--directory={into}"], check=True)
    archive.unlink()
    return into / "disk.raw"


def upload_json(ws: Workspace, *args: str) -> dict[str, Any]:
    out = ws.crust("upload", "wsgi", "--target", "gcp", "--json", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout)
    return report


# -- the bucket, against the emulator ------------------------------------------------------------


@pytest.mark.parametrize("threshold", ["0", '"16MiB"'], ids=["resumable", "composite"])
def test_upload_object_bytes_image_and_reuse(ws: Workspace, gcs: str, compute: FakeCompute, synthetic: tuple[Path, Path], threshold: str) -> None:
    (ws.root / "targets.toml").write_text(targets(gcs, compute.url, f"composite_threshold = {threshold}\ncomposite_parts = 4\n"))
    report = upload_json(ws)
    digest = ws.digest()
    name = f"images/{digest}.tar.gz"
    [obj] = bucket_objects(gcs)  # no part left beside it
    assert obj["name"] == name and obj["size"] == ws.gce()["size"]
    assert obj["metadata"]["crust-gce-sha256"] == ws.gce()["sha256"] and obj["metadata"]["crust-image-digest"] == digest
    assert report["reused"] is False and report["bytes_sent"] == ws.gce()["size"]
    assert (report["parts"] == 0) == (threshold == "0") and report["parts"] != 1, report
    disk = untarred(gcs, name, ws.root)
    assert sha256(disk) == sha256(synthetic[0]), "the object untarred is the raw disk, byte for byte"
    [body] = compute.posts("images")
    assert body["rawDisk"] == {"source": f"https://storage.googleapis.com/{BUCKET}/{name}"}
    assert [f["type"] for f in body["guestOsFeatures"]] == ["UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC"]
    assert body["family"] == "crust-wsgi" and body["name"] == f"crust-wsgi-{ws.manifest()['version'].replace('.', '-')}-{digest[:12]}"
    assert body["labels"] == {"team": "web", "crust-appliance": "wsgi", "crust-digest": digest[:63], "crust-build": body["labels"]["crust-build"]}
    assert f"sha256:{digest}" in body["description"]
    recorded = ws.manifest()["cloud"]["gcp"][PROJECT]
    assert recorded["image"] == body["name"] and recorded["image_digest"] == digest

    # Again: the image with the digest is reused, nothing is sent.
    again = upload_json(ws)
    assert again["reused"] is True and again["bytes_sent"] == 0 and again["image"] == body["name"]
    assert len(compute.posts("images")) == 1 and bucket_objects(gcs) == [obj]


def test_a_complete_object_is_not_sent_again(ws: Workspace, gcs: str, compute: FakeCompute) -> None:
    first = upload_json(ws)
    [obj] = bucket_objects(gcs)
    compute.images.clear()  # the image gone (deleted by hand), the object still there
    again = upload_json(ws)
    assert again["reused"] is False and again["bytes_sent"] == 0 and again["image"] == first["image"]
    assert bucket_objects(gcs) == [obj], "the object is the same generation: nothing was written"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("threshold", ["0", '"16MiB"'], ids=["resumable", "composite"])
def test_an_interrupted_upload_leaves_no_object_and_no_parts(ws: Workspace, gcs: str, compute: FakeCompute, sig: str, threshold: str) -> None:
    (ws.root / "targets.toml").write_text(targets(gcs, compute.url, f"composite_threshold = {threshold}\n"))
    out = ws.crust("upload", "wsgi", "--target", "gcp", env={"CRUST_FAULT": f"gcp.upload:{sig}"})
    assert out.returncode != 0 and "fault point gcp.upload" in out.stderr, out.stderr
    assert bucket_objects(gcs) == [] and compute.posts("images") == []
    assert "cloud" not in ws.manifest()


@pytest.mark.parametrize("threshold", ["0", '"16MiB"'], ids=["resumable", "composite"])
def test_a_killed_upload_leaves_at_most_parts_the_rerun_removes(ws: Workspace, gcs: str, compute: FakeCompute, threshold: str) -> None:
    (ws.root / "targets.toml").write_text(targets(gcs, compute.url, f"composite_threshold = {threshold}\n"))
    out = ws.crust("upload", "wsgi", "--target", "gcp", env={"CRUST_FAULT": "gcp.upload:SIGKILL"})
    assert out.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), out.returncode
    left = bucket_objects(gcs)
    assert all(".part-" in o["name"] for o in left), left  # never the object itself
    assert threshold != "0" or left == [], "an unfinished resumable upload is no object"
    if left:
        listed = json.loads(ws.crust("resources", "wsgi", "--target", "gcp", "--json").stdout)
        assert sorted(e["id"] for e in listed if e["orphan"]) == sorted(f"gs://{BUCKET}/{o['name']}" for o in left)
    report = upload_json(ws)
    [obj] = bucket_objects(gcs)
    assert obj["name"].endswith(".tar.gz") and report["reused"] is False


def test_no_credentials_is_one_line(ws: Workspace) -> None:
    (ws.root / "targets.toml").write_text(f'[gcp]\nbucket = "{BUCKET}"\n')
    out = ws.crust("upload", "wsgi", "--target", "gcp")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "gcloud auth application-default login" in out.stderr


def test_real_wsgi_image_read_back(built: Any, gcs: str, compute: FakeCompute, tmp_path: Path) -> None:
    """The session's wsgi raw image through the format and the upload, untarred again: the same
    partitions, byte for byte, in a disk grown to a whole GiB."""
    manifest = built("wsgi")
    raw = next(
        Path(a["path"]) if Path(a["path"]).is_absolute() else ROOT / "build" / "wsgi" / a["path"]
        for a in manifest["artifacts"]
        if a["format"] == "raw"
    )
    gce = tmp_path / "wsgi.gce"
    write_gce(raw, gce, int(manifest.get("source_date_epoch", 0)))
    ws = Workspace(tmp_path / "ws", gce, targets(gcs, compute.url))
    try:
        report = upload_json(ws)
        assert report["bytes_sent"] == gce.stat().st_size
        disk = untarred(gcs, f"images/{ws.digest()}.tar.gz", tmp_path)
        size = raw.stat().st_size
        assert disk.stat().st_size == -(-size // GIB) * GIB
        check = subprocess.run(["sfdisk", "--verify", str(disk)], capture_output=True, text=True, check=False)
        assert check.returncode == 0 and "No errors detected" in check.stdout, check.stdout + check.stderr
        with raw.open("rb") as a, disk.open("rb") as b:  # past the primary GPT, up to the old backup GPT
            a.seek(34 * 512)
            b.seek(34 * 512)
            left = size - 67 * 512
            while left > 0:
                n = min(left, 8 * MIB)
                assert a.read(n) == b.read(n)
                left -= n
    finally:
        for blob in bucket_objects(gcs):
            client_bucket(gcs).blob(blob["name"]).delete()


# -- Compute Engine, on the requests sent ---------------------------------------------------------


def test_request_shape_a_refused_image_is_one_line_and_leaves_nothing(ws: Workspace, gcs: str, compute: FakeCompute) -> None:
    compute.refuse = "images"
    out = ws.crust("upload", "wsgi", "--target", "gcp")
    assert out.returncode == 1 and "HTTP 403" in out.stderr and "Quota 'IMAGES' exceeded" in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and out.stderr.splitlines()[-1] == errors[0], out.stderr  # one line, after what was undone
    assert "removed gs://" in out.stderr
    assert bucket_objects(gcs) == [] and compute.images == {}


def test_request_shape_launch_resources_and_terminate(ws: Workspace, compute: FakeCompute) -> None:
    image = upload_json(ws)["image"]
    out = ws.crust("launch", "wsgi", "--target", "gcp", "--ssh-key", str(ws.key), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout)
    assert record["address"] == "192.0.2.20"
    [body] = compute.posts("instances")
    assert body["name"] == record["id"] and body["machineType"] == f"zones/{ZONE}/machineTypes/e2-medium"
    [disk] = body["disks"]
    assert disk["boot"] is True and disk["autoDelete"] is True
    assert disk["initializeParams"]["sourceImage"] == f"projects/{PROJECT}/global/images/{image}"
    [nic] = body["networkInterfaces"]
    assert nic["network"] == f"projects/{PROJECT}/global/networks/crust-net" and nic["nicType"] == "GVNIC"
    meta = {item["key"]: item["value"] for item in body["metadata"]["items"]}
    assert meta["ssh-keys"] == f"admin:{PUBLIC_KEY}"
    data = meta["user-data"]
    assert data.startswith("#cloud-config\n") and PUBLIC_KEY in yaml.safe_load(data)["ssh_authorized_keys"]
    assert body["labels"]["crust-appliance"] == "wsgi" and body["labels"]["crust-digest"] == ws.digest()[:63]

    listed = json.loads(ws.crust("resources", "wsgi", "--target", "gcp", "--json").stdout)
    kinds = {(e["kind"], e["id"], e["orphan"]) for e in listed}
    assert ("instance", record["id"], False) in kinds and ("image", image, False) in kinds
    assert ("object", f"gs://{BUCKET}/images/{ws.digest()}.tar.gz", False) in kinds

    out = ws.crust("terminate", "wsgi", "--target", "gcp", "--project", "another-project")
    assert out.returncode == 2 and "are in project crust-test-project, not another-project" in out.stderr, out.stderr
    out = ws.crust("terminate", "wsgi", "--target", "gcp")
    assert out.returncode == 0 and f"{record['id']} terminated" in out.stdout, out.stderr
    assert f"/zones/{ZONE}/instances/{record['id']}" in compute.deletes() and compute.instances == {}


def test_request_shape_a_refused_instance_is_one_line_and_leaves_nothing(ws: Workspace, compute: FakeCompute) -> None:
    upload_json(ws)
    compute.refuse = "instances"
    out = ws.crust("launch", "wsgi", "--target", "gcp", "--ssh-key", str(ws.key))
    assert out.returncode == 1 and "HTTP 403" in out.stderr and "Quota 'INSTANCES' exceeded" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    # Nothing left; the undo, pushed before the insert was asked for, found nothing to delete.
    assert compute.instances == {} and all("/instances/wsgi-" in d for d in compute.deletes())
    out = ws.crust("terminate", "wsgi", "--target", "gcp")
    assert out.returncode == 2 and "no launched instance of wsgi is recorded" in out.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_request_shape_an_interrupted_launch_deletes_its_instance(ws: Workspace, compute: FakeCompute, sig: str) -> None:
    upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "gcp", "--ssh-key", str(ws.key), env={"CRUST_FAULT": f"gcp.launch:{sig}"})
    assert out.returncode != 0 and "removed instance " in out.stderr, out.stderr
    assert compute.instances == {} and compute.deletes()


def test_user_data_is_base64_free_plain_text(ws: Workspace, compute: FakeCompute) -> None:
    """GCE metadata values are plain strings (unlike EC2 and Nova, no base64)."""
    upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "gcp", "--ssh-key", str(ws.key))
    assert out.returncode == 0, out.stderr
    [body] = compute.posts("instances")
    data = next(i["value"] for i in body["metadata"]["items"] if i["key"] == "user-data")
    with pytest.raises(ValueError):
        base64.b64decode(data, validate=True)
