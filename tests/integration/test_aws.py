"""The AWS target against moto_server over HTTP: upload (EBS direct APIs), idempotence, copies,
shares, launch/terminate, failure and interruption cleanup, through the real command line.

What moto does not store or check (register_image's block device mapping, architecture and
ENA; checksums and block sizes; import-snapshot, which it does not implement) is checked on the
request Crust sends, in the tests named test_request_shape_*.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crust.define.project import Project
from tests.conftest import ROOT, build_py
from tests.integration.aws_fakes import BlockProxy, reset, venv_moto

pytestmark = pytest.mark.integration

BLOCK = 512 * 1024
REGION = "eu-west-1"
OTHER = "us-east-1"
ACCOUNT = "111122223333"
KEY_ID = "AKIACRUSTTEST0000001"
SECRET = "crust/Test/Secret/Key/0123456789abcdefghij"
TAG = "crust:image-digest"
DATA_BLOCKS = (0, 1, 2, 9, 10, 11, 25, 40, 47)
ZERO_BLOCKS = (5, 6)  # written, all zero: read and skipped
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrustTestKeyCrustTestKeyCrustTestKey0 test@crust"

Built = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from venv_moto(tmp_path_factory.mktemp("moto"))


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A wiped moto and an environment that points boto3 at it with fake credentials only."""
    reset(moto_url)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_url


def client(service: str, region: str = REGION) -> Any:
    import boto3

    return boto3.session.Session().client(service, region_name=region)


class Workspace:
    """appliances/ (wsgi.toml + its checks), targets.toml beside it, out/wsgi/{wsgi.raw,manifest.json}, a store."""

    def __init__(self, root: Path, targets: str) -> None:
        self.root = root
        self.appliances = root / "appliances"
        self.appliances.mkdir(parents=True)
        for name in ("wsgi.toml", "wsgi_checks.py"):
            shutil.copy(ROOT / "appliances" / name, self.appliances / name)
        (root / "targets.toml").write_text(targets, encoding="utf-8")
        self.out = root / "out"
        (self.out / "wsgi").mkdir(parents=True)
        self.store = root / "store"
        self.image = self.out / "wsgi" / "wsgi.raw"

    @property
    def manifest_path(self) -> Path:
        return self.out / "wsgi" / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest_path.read_text())
        return data

    def small_image(self, blocks: int = 48, data_blocks: tuple[int, ...] = DATA_BLOCKS) -> bytes:
        """A sparse test image: random data blocks (one only partly filled), zero blocks, holes."""
        with open(self.image, "wb") as fh:
            fh.truncate(blocks * BLOCK)
            for index in ZERO_BLOCKS:
                fh.seek(index * BLOCK)
                fh.write(bytes(BLOCK))
            for index in data_blocks:
                fh.seek(index * BLOCK)
                fh.write(os.urandom(BLOCK if index != 10 else 1000))
        content = self.image.read_bytes()
        self.write_manifest(hashlib.sha256(content).hexdigest(), len(content))
        return content

    def write_manifest(self, digest: str, size: int, extra: dict[str, Any] | None = None) -> None:
        manifest = {
            "appliance": "wsgi",
            "version": "1.0.0",
            "build_id": "0123456789ab",
            "artifacts": [{"format": "raw", "path": str(self.image), "sha256": digest, "size": size}],
            "packages": {"cloud-init": "25.1.4-1", "openssh-server": "1:10.0p1-7"},  # as a build lists them
            **(extra or {}),
        }
        self.manifest_path.write_text(json.dumps(manifest, indent=2))

    def argv(self, *args: str) -> list[str]:
        return ["--appliances", str(self.appliances), "--output", str(self.out), "--store", str(self.store), *args]

    def crust(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        out = build_py(*self.argv(*args), env=env, timeout=600)
        no_secrets(out.stdout + out.stderr)
        return out

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "build.py"), *self.argv(*args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def files_have_no_secrets(self) -> None:
        for path in [*self.out.rglob("*.json"), *self.store.rglob("*.json")]:
            no_secrets(path.read_text())


def no_secrets(text: str) -> None:
    assert KEY_ID not in text and SECRET not in text


TARGETS = f'[aws]\nregion = "{REGION}"\ntags = {{ team = "web" }}\n'


@pytest.fixture
def ws(aws_env: str, tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws", TARGETS)


def digest_of(ws: Workspace) -> str:
    return str(ws.manifest()["artifacts"][0]["sha256"])


def snapshots(digest: str, region: str = REGION) -> list[dict[str, Any]]:
    found = client("ec2", region).describe_snapshots(OwnerIds=["self"], Filters=[{"Name": f"tag:{TAG}", "Values": [digest]}])
    return list(found["Snapshots"])


def images(digest: str, region: str = REGION) -> list[dict[str, Any]]:
    return list(client("ec2", region).describe_images(Owners=["self"], Filters=[{"Name": f"tag:{TAG}", "Values": [digest]}])["Images"])


def read_back(snapshot_id: str) -> dict[int, bytes]:
    """Every stored block of a snapshot (list_snapshot_blocks, paginated + get_snapshot_block)."""
    ebs = client("ebs")
    blocks: dict[int, bytes] = {}
    token: str | None = None
    while True:
        page = ebs.list_snapshot_blocks(SnapshotId=snapshot_id, **({"NextToken": token} if token else {}))
        for block in page["Blocks"]:
            got = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=block["BlockIndex"], BlockToken=block["BlockToken"])
            blocks[block["BlockIndex"]] = got["BlockData"].read()
        token = page.get("NextToken")
        if not token:
            return blocks


def assert_identical(stored: dict[int, bytes], image: Path) -> None:
    """The stored blocks are exactly the image's non-zero blocks, byte for byte."""
    size = image.stat().st_size
    with open(image, "rb") as fh:
        for index in range(-(-size // BLOCK)):
            fh.seek(index * BLOCK)
            data = fh.read(BLOCK).ljust(BLOCK, b"\0")
            if data == bytes(BLOCK):
                assert index not in stored, f"zero block {index} was uploaded"
            else:
                assert stored.get(index) == data, f"block {index} differs"


def upload_json(ws: Workspace, *args: str) -> dict[str, Any]:
    out = ws.crust("upload", "wsgi", "--target", "aws", "--json", *args)
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_uploaded_blocks_read_back_identical(ws: Workspace) -> None:
    ws.small_image()
    report = upload_json(ws)
    digest = digest_of(ws)
    assert report["reused"] is False
    assert report["blocks_uploaded"] == len(DATA_BLOCKS)
    assert report["blocks_skipped_zero"] == len(ZERO_BLOCKS)
    assert report["blocks_skipped_hole"] == 48 - len(DATA_BLOCKS) - len(ZERO_BLOCKS)
    entry = ws.manifest()["cloud"]["aws"][REGION]
    assert entry["ami"] == report["regions"][REGION]["ami"]
    assert entry["image_digest"] == digest
    stored = read_back(entry["snapshot"])
    assert sorted(stored) == sorted(set(DATA_BLOCKS))
    assert_identical(stored, ws.image)
    [snapshot] = snapshots(digest)
    assert snapshot["SnapshotId"] == entry["snapshot"]
    assert snapshot["VolumeSize"] == 1
    [image] = images(digest)
    for tags in (snapshot["Tags"], image["Tags"]):
        tag = {t["Key"]: t["Value"] for t in tags}
        assert tag["crust:appliance"] == "wsgi" and tag["crust:version"] == "1.0.0" and tag[TAG] == digest
        assert tag["team"] == "web"
    assert image["Name"] == f"wsgi-1.0.0-{digest[:12]}"
    ws.files_have_no_secrets()


def test_second_upload_creates_no_new_snapshot(ws: Workspace) -> None:
    ws.small_image()
    first = upload_json(ws)
    digest = digest_of(ws)
    before = {s["SnapshotId"] for s in client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    second = upload_json(ws)
    after = {s["SnapshotId"] for s in client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert second["reused"] is True
    assert "blocks_uploaded" not in second
    assert second["regions"][REGION]["ami"] == first["regions"][REGION]["ami"]
    assert after == before
    assert len(images(digest)) == 1 and len(snapshots(digest)) == 1


def test_copy_to_another_region_and_share(ws: Workspace) -> None:
    (ws.root / "targets.toml").write_text(TARGETS + f'copy_to = ["{OTHER}"]\nshare_with = ["{ACCOUNT}"]\n')
    ws.small_image()
    report = upload_json(ws)
    digest = digest_of(ws)
    [copy] = images(digest, OTHER)
    assert copy["ImageId"] == report["regions"][OTHER]["ami"]
    recorded = ws.manifest()["cloud"]["aws"]
    assert recorded[OTHER]["ami"] == copy["ImageId"] and recorded[OTHER]["copied_from"] == REGION
    for region in (REGION, OTHER):
        assert recorded[region]["shared_with"] == [ACCOUNT]
        ami = recorded[region]["ami"]
        permissions = client("ec2", region).describe_image_attribute(ImageId=ami, Attribute="launchPermission")["LaunchPermissions"]
        assert permissions == [{"UserId": ACCOUNT}]
    # Idempotent in every region: a rerun copies nothing more.
    again = upload_json(ws)
    assert again["regions"][OTHER]["ami"] == copy["ImageId"]
    assert len(images(digest, OTHER)) == 1


def test_launch_reaches_running_and_terminate_stops_it(ws: Workspace) -> None:
    ws.small_image()
    (ws.appliances / "id_test.pub").write_text(PUBLIC_KEY + "\n")
    (ws.appliances / "wsgi.toml").write_text(
        (ws.appliances / "wsgi.toml").read_text()
        + '\n[targets.aws]\ninstance_type = "t3.micro"\nssh_key = "id_test.pub"\n\n[targets.aws.cloud_config]\npackage_update = false\n'
    )
    out = ws.crust("launch", "wsgi", "--target", "aws")
    assert out.returncode == 2 and "no AMI of the current image is recorded" in out.stderr
    upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "aws", "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    ec2 = client("ec2")
    instance = ec2.describe_instances(InstanceIds=[record["id"]])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] == "running"
    assert instance["ImageId"] == ws.manifest()["cloud"]["aws"][REGION]["ami"]
    assert instance["InstanceType"] == "t3.micro"
    assert record["address"] in (instance.get("PublicIpAddress"), instance.get("PrivateIpAddress"))
    user_data = ec2.describe_instance_attribute(InstanceId=record["id"], Attribute="userData")["UserData"]["Value"]
    text = base64.b64decode(user_data).decode()
    assert text.startswith("#cloud-config\n") and PUBLIC_KEY in text and "package_update: false" in text
    out = ws.crust("terminate", "wsgi", "--target", "aws")
    assert out.returncode == 0, out.stderr
    assert f"{record['id']} terminated" in out.stdout
    instance = ec2.describe_instances(InstanceIds=[record["id"]])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] == "terminated"
    out = ws.crust("terminate", "wsgi", "--target", "aws")
    assert out.returncode == 2 and "no launched instance of wsgi is recorded" in out.stderr
    ws.files_have_no_secrets()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_failed_upload_leaves_nothing_and_a_rerun_completes(ws: Workspace) -> None:
    ws.small_image(blocks=96, data_blocks=tuple(range(0, 96, 2)))
    digest = digest_of(ws)
    with BlockProxy(ws_url(), fail_after=6) as proxy:
        out = ws.crust("upload", "wsgi", "--target", "aws", "--workers", "2", env={"AWS_ENDPOINT_URL_EBS": proxy.url})
    assert out.returncode == 1, out.stderr  # AWS refused a block: a failure (2 is for bad input)
    [line] = error_lines(out.stderr)
    assert "upload wsgi: ebs PutSnapshotBlock on snap-" in line
    assert "failed: ValidationException: injected by the test proxy" in line
    assert "Traceback" not in out.stderr
    assert "removed snapshot snap-" in out.stderr
    assert snapshots(digest) == [] and images(digest) == []
    assert "cloud" not in ws.manifest()
    report = upload_json(ws)
    assert report["reused"] is False and report["blocks_uploaded"] == 48
    assert len(snapshots(digest)) == 1 and len(images(digest)) == 1


def ws_url() -> str:
    return os.environ["AWS_ENDPOINT_URL"]


def test_interrupted_upload_leaves_nothing_and_a_rerun_completes(ws: Workspace) -> None:
    ws.small_image(blocks=128, data_blocks=tuple(range(128)))
    digest = digest_of(ws)
    with BlockProxy(ws_url(), delay=0.1) as proxy:
        proc = ws.popen("upload", "wsgi", "--target", "aws", "--workers", "2", env={"AWS_ENDPOINT_URL_EBS": proxy.url})
        assert proxy.reached.wait(60), "the upload never reached the 8th block"
        assert len(snapshots(digest)) == 1  # half-written
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    no_secrets(stderr)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "removed snapshot snap-" in stderr
    assert proxy.puts < 128
    assert snapshots(digest) == [] and images(digest) == []
    report = upload_json(ws)
    assert report["reused"] is False and report["blocks_uploaded"] == 128
    assert len(snapshots(digest)) == 1


def test_snapshot_of_a_killed_upload_is_removed_by_the_rerun(ws: Workspace) -> None:
    ws.small_image(blocks=128, data_blocks=tuple(range(128)))
    digest = digest_of(ws)
    with BlockProxy(ws_url(), delay=0.1) as proxy:
        proc = ws.popen("upload", "wsgi", "--target", "aws", "--workers", "2", env={"AWS_ENDPOINT_URL_EBS": proxy.url})
        assert proxy.reached.wait(60)
        proc.kill()  # no chance to clean up
        proc.communicate(timeout=60)
    [left] = snapshots(digest)
    out = ws.crust("upload", "wsgi", "--target", "aws")
    assert out.returncode == 0, out.stderr
    assert f"removed {left['SnapshotId']}, left by an interrupted upload" in out.stderr
    [snapshot] = snapshots(digest)
    assert snapshot["SnapshotId"] != left["SnapshotId"]


def test_resources_lists_an_orphan_snapshot_and_removes_it(ws: Workspace) -> None:
    ws.small_image(blocks=128, data_blocks=tuple(range(128)))
    digest = digest_of(ws)
    with BlockProxy(ws_url(), delay=0.1) as proxy:
        proc = ws.popen("upload", "wsgi", "--target", "aws", "--workers", "2", env={"AWS_ENDPOINT_URL_EBS": proxy.url})
        assert proxy.reached.wait(60)
        proc.kill()  # no chance to clean up
        proc.communicate(timeout=60)
    [left] = snapshots(digest)
    out = ws.crust("resources", "wsgi", "--target", "aws", "--json")
    assert out.returncode == 0, out.stderr
    assert [(e["kind"], e["id"], e["orphan"]) for e in json.loads(out.stdout)] == [("snapshot", left["SnapshotId"], True)]
    out = ws.crust("resources", "wsgi", "--target", "aws", "--remove-orphans")
    assert out.returncode == 0, out.stderr
    assert f"removed {left['SnapshotId']}, used by no AMI" in out.stderr
    assert snapshots(digest) == []
    report = upload_json(ws)
    listed = json.loads(ws.crust("resources", "wsgi", "--target", "aws", "--json").stdout)
    assert sorted((e["kind"], e["orphan"]) for e in listed) == [("image", False), ("snapshot", False)]
    assert {e["id"] for e in listed} == {report["regions"][REGION]["ami"], report["regions"][REGION]["snapshot"]}


def test_without_credentials_one_line_before_any_call(ws: Workspace) -> None:
    ws.small_image()
    out = ws.crust("upload", "wsgi", "--target", "aws", env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert out.returncode == 2
    [line] = error_lines(out.stderr)
    assert "no AWS credentials found" in line and "instance role" in line
    assert len(out.stderr.strip().splitlines()) == 1


def test_s3_import_against_moto_fails_cleanly(ws: Workspace) -> None:
    """moto does not implement ImportSnapshot (HTTP 500): the error is one line naming the call,
    the staging object is deleted and no snapshot is left."""
    (ws.root / "targets.toml").write_text(TARGETS + 'bucket = "crust-images"\nmax_attempts = 1\n')
    client("s3").create_bucket(Bucket="crust-images", CreateBucketConfiguration={"LocationConstraint": REGION})
    ws.small_image()
    out = ws.crust("upload", "wsgi", "--target", "aws", "--method", "s3-import")
    assert out.returncode == 1, out.stderr
    [line] = error_lines(out.stderr)
    assert f"upload wsgi: ec2 ImportSnapshot on s3://crust-images/crust/wsgi/{digest_of(ws)}.raw failed" in line
    assert client("s3").list_objects_v2(Bucket="crust-images").get("KeyCount") == 0
    assert snapshots(digest_of(ws)) == []


class Recorder:
    """Records the serialized requests of chosen operations (botocore before-call hooks); can
    answer an operation itself (for what moto does not implement)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.requests: dict[str, list[dict[str, Any]]] = {}

    def watch(self, event: str, answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        def hook(params: dict[str, Any], model: Any, **_: Any) -> Any:
            self.requests.setdefault(model.name, []).append(params)
            if answer is None:
                return None
            return types.SimpleNamespace(status_code=200, headers={}), answer(params)

        self.session.events.register(f"before-call.{event}", hook)


def in_process_upload(ws: Workspace, monkeypatch: pytest.MonkeyPatch, session: Any) -> dict[str, Any]:
    from crust.build.store import Store
    from crust.cloud.aws.upload import upload
    from crust.cloud.targets import load_aws_target

    target = load_aws_target(Project.at(ROOT, appliances=ws.appliances), "wsgi")  # targets.toml beside it
    return upload(target, ws.out, Store(ws.store), "wsgi", session=session, stream=io.StringIO())


def test_request_shape_register_image_uefi_ena_x86_64_gp3(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    (ws.root / "targets.toml").write_text(TARGETS + "root_volume_size = 8\n")
    ws.small_image()
    session = boto3.session.Session()
    recorder = Recorder(session)
    recorder.watch("ec2.RegisterImage")
    report = in_process_upload(ws, monkeypatch, session)
    [request] = recorder.requests["RegisterImage"]
    body = request["body"]
    assert body["BootMode"] == "uefi"
    assert body["EnaSupport"] == "true"
    assert body["Architecture"] == "x86_64"
    assert body["VirtualizationType"] == "hvm"
    assert body["RootDeviceName"] == body["BlockDeviceMapping.1.DeviceName"] == "/dev/xvda"
    assert body["BlockDeviceMapping.1.Ebs.SnapshotId"] == report["regions"][REGION]["snapshot"]
    assert body["BlockDeviceMapping.1.Ebs.VolumeType"] == "gp3"
    assert body["BlockDeviceMapping.1.Ebs.VolumeSize"] == 8
    assert body["BlockDeviceMapping.1.Ebs.DeleteOnTermination"] == "true"
    assert body["TagSpecification.1.ResourceType"] == "image"


def test_request_shape_ebs_blocks_checksums_and_completion(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto accepts any checksum and block size: check what Crust sends."""
    import boto3

    content = ws.small_image()
    session = boto3.session.Session()
    recorder = Recorder(session)
    for op in ("StartSnapshot", "PutSnapshotBlock", "CompleteSnapshot"):
        recorder.watch(f"ebs.{op}")
    in_process_upload(ws, monkeypatch, session)
    [start] = recorder.requests["StartSnapshot"]
    assert json.loads(start["body"])["VolumeSize"] == 1
    digests = {}
    for put in recorder.requests["PutSnapshotBlock"]:
        index = int(put["url_path"].rsplit("/", 1)[1])
        body = put["body"]
        assert body == content[index * BLOCK : (index + 1) * BLOCK]
        headers = {k.lower(): v for k, v in put["headers"].items()}
        assert headers["x-amz-data-length"] == str(BLOCK)
        assert headers["x-amz-checksum-algorithm"] == "SHA256"
        digest = hashlib.sha256(body).digest()
        assert headers["x-amz-checksum"] == base64.b64encode(digest).decode()
        digests[index] = digest
    assert sorted(digests) == sorted(DATA_BLOCKS)
    [complete] = recorder.requests["CompleteSnapshot"]
    headers = {k.lower(): v for k, v in complete["headers"].items()}
    linear = hashlib.sha256(b"".join(digests[i] for i in sorted(digests))).digest()
    assert headers["x-amz-checksum"] == base64.b64encode(linear).decode()
    assert headers["x-amz-checksum-algorithm"] == "SHA256"
    assert headers["x-amz-checksum-aggregation-method"] == "LINEAR"
    assert headers["x-amz-changedblockscount"] == str(len(DATA_BLOCKS))


def test_request_shape_s3_import_snapshot(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 multipart upload is real (moto); ImportSnapshot, which moto lacks, is answered by the
    test after checking the staged object byte for byte."""
    import boto3

    (ws.root / "targets.toml").write_text(TARGETS + 'method = "s3-import"\nbucket = "crust-images"\nimport_role = "crust-import"\n')
    s3 = client("s3")
    s3.create_bucket(Bucket="crust-images", CreateBucketConfiguration={"LocationConstraint": REGION})
    content = ws.small_image(blocks=40)  # 20 MiB: three 8 MiB parts
    digest = digest_of(ws)
    ec2 = client("ec2")
    volume = ec2.create_volume(Size=1, AvailabilityZone=f"{REGION}a")
    imported = ec2.create_snapshot(VolumeId=volume["VolumeId"])["SnapshotId"]
    staged: list[bytes] = []

    def import_snapshot(params: dict[str, Any]) -> dict[str, Any]:
        body = params["body"]
        staged.append(s3.get_object(Bucket=body["DiskContainer.UserBucket.S3Bucket"], Key=body["DiskContainer.UserBucket.S3Key"])["Body"].read())
        return {"ImportTaskId": "import-snap-0123456789abcdef0"}

    def describe(params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ImportSnapshotTasks": [
                {"ImportTaskId": "import-snap-0123456789abcdef0", "SnapshotTaskDetail": {"Status": "completed", "SnapshotId": imported}}
            ]
        }

    session = boto3.session.Session()
    recorder = Recorder(session)
    recorder.watch("ec2.ImportSnapshot", import_snapshot)
    recorder.watch("ec2.DescribeImportSnapshotTasks", describe)
    recorder.watch("s3.UploadPart")
    report = in_process_upload(ws, monkeypatch, session)
    [request] = recorder.requests["ImportSnapshot"]
    body = request["body"]
    assert body["DiskContainer.Format"] == "RAW"
    assert body["DiskContainer.UserBucket.S3Bucket"] == "crust-images"
    assert body["DiskContainer.UserBucket.S3Key"] == f"crust/wsgi/{digest}.raw"
    assert body["RoleName"] == "crust-import"
    assert body["TagSpecification.1.ResourceType"] == "import-snapshot-task"
    assert staged == [content]  # the multipart upload stored the image byte for byte
    assert len(recorder.requests["UploadPart"]) == 3
    assert s3.list_objects_v2(Bucket="crust-images").get("KeyCount") == 0  # staging object deleted
    assert report["regions"][REGION]["snapshot"] == imported
    [image] = images(digest)
    assert image["ImageId"] == report["regions"][REGION]["ami"]
    tags = {t["Key"]: t["Value"] for t in ec2.describe_snapshots(SnapshotIds=[imported])["Snapshots"][0]["Tags"]}
    assert tags[TAG] == digest


def test_a_failure_after_registration_removes_the_ami_and_the_snapshot(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.exceptions import ClientError

    from crust.errors import CloudError

    ws.small_image()
    digest = digest_of(ws)
    session = boto3.session.Session()

    def fail_on_ami(params: dict[str, Any], **_: Any) -> None:
        if str(params["body"].get("ResourceId.1", "")).startswith("ami-"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "CreateTags")

    session.events.register("before-call.ec2.CreateTags", fail_on_ami)
    with pytest.raises(CloudError) as err:  # a cloud failure (exit 1), not bad input
        in_process_upload(ws, monkeypatch, session)
    assert err.value.exit_status == 1
    assert "upload wsgi: ec2 CreateTags on ami-" in err.value.one_line() and "InternalError: injected" in err.value.one_line()
    assert client("ec2").describe_images(Owners=["self"])["Images"] == []
    assert snapshots(digest) == []
    assert "cloud" not in ws.manifest()


def real_image_workspace(root: Path, manifest: dict[str, Any]) -> Workspace:
    """A workspace whose out/wsgi holds the built wsgi image (linked) and a copy of its manifest."""
    ws = Workspace(root, TARGETS)
    raw = next(a for a in manifest["artifacts"] if a["format"] == "raw")
    ws.image.symlink_to(raw["path"])
    ws.manifest_path.write_text(json.dumps({k: v for k, v in manifest.items() if not k.startswith("_")}))
    return ws


def upload_real_image_and_read_back(ws: Workspace) -> dict[str, Any]:
    report = upload_json(ws)
    stored = read_back(report["regions"][REGION]["snapshot"])
    assert len(stored) == report["blocks_uploaded"]
    assert_identical(stored, ws.image)
    return report


def test_real_wsgi_image_blocks_read_back_identical(built: Built, aws_env: str, tmp_path: Path) -> None:
    """The built WSGI raw image: every block in the snapshot is the image's, zero blocks absent."""
    ws = real_image_workspace(tmp_path / "ws", built("wsgi"))
    report = upload_real_image_and_read_back(ws)
    assert report["blocks_skipped_hole"] + report["blocks_skipped_zero"] > 0
