"""Pure logic of the AWS target: error lines, redaction, requests, user data, manifest records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from crust import redact as redaction
from crust.build.manifest import Manifest
from crust.cloud.aws import client as aws
from crust.cloud.aws.launch import run_params, ssh_public_key, user_data
from crust.cloud.aws.upload import recorded_ami
from crust.cloud.common import Undo, raw_image, record
from crust.cloud.targets import load_aws_target
from crust.define.project import Project
from crust.errors import Problem, UserError
from tests.conftest import build_py

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEx0crustcrustcrustcrustcrustcrustcrustcrust test@crust"


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Op")


@pytest.mark.parametrize(
    ("exc", "words", "hint", "status"),
    [
        (
            client_error("AuthFailure", "AWS was not able to validate the provided access credentials"),
            "AuthFailure: AWS was not able",
            "check the AWS credentials",
            2,
        ),
        (client_error("AccessDeniedException", "not allowed"), "AccessDeniedException: not allowed", "use --method s3-import", 2),
        (client_error("RequestLimitExceeded", "slow down"), "RequestLimitExceeded", "rerun later", 1),  # transient: retried, then a failure
        (client_error("InvalidAMIName.Duplicate", "name in use"), "InvalidAMIName.Duplicate", "change the name pattern", 2),
        (client_error("InternalError", "oops"), "InternalError: oops", "then rerun", 1),
        (NoCredentialsError(), "no usable AWS credentials", "instance role", 2),
        (EndpointConnectionError(endpoint_url="https://ebs.eu-west-1.amazonaws.com/"), "Could not connect", "check the network", 1),
    ],
)
def test_errors_are_one_line_with_the_call_the_resource_and_a_fix(exc: Exception, words: str, hint: str, status: int) -> None:
    error = aws.describe_error("ebs", "PutSnapshotBlock", "snap-123 block 7", exc)
    line = error.one_line()
    assert line.startswith("ebs PutSnapshotBlock on snap-123 block 7 failed: ")
    assert words in line
    assert hint in (error.hint or "")
    assert "\n" not in line
    assert error.exit_status == status  # 2: the user's configuration to fix; 1: a failure


def test_credentials_never_reach_an_error_line() -> None:
    redaction.add({"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})
    message = "The security token AKIAIOSFODNN7EXAMPLE with secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY is invalid"
    line = aws.describe_error("ec2", "RegisterImage", "snap-1", client_error("InvalidClientTokenId", message)).one_line()
    assert "AKIAIOSFODNN7EXAMPLE" not in line
    assert "wJalrXUtnFEMI" not in line
    assert "<access key id>" in line and "<redacted>" in line


def test_register_request_uefi_ena_x86_64_gp3() -> None:
    params = aws.register_params("demo-1.0-abc", "demo", "snap-1", 3, {"crust:image-digest": "abc"})
    assert params["BootMode"] == "uefi"
    assert params["EnaSupport"] is True
    assert params["Architecture"] == "x86_64"
    assert params["RootDeviceName"] == params["BlockDeviceMappings"][0]["DeviceName"]
    assert params["BlockDeviceMappings"][0]["Ebs"] == {"SnapshotId": "snap-1", "VolumeType": "gp3", "VolumeSize": 3, "DeleteOnTermination": True}
    assert params["TagSpecifications"] == [{"ResourceType": "image", "Tags": [{"Key": "crust:image-digest", "Value": "abc"}]}]


def test_user_data_adds_the_key_to_the_cloud_config() -> None:
    text = user_data(KEY, {"package_update": False, "ssh_authorized_keys": ["ssh-rsa AAAA other"], "runcmd": [["echo", "hi"]]})
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    assert config == {"package_update": False, "ssh_authorized_keys": ["ssh-rsa AAAA other", KEY], "runcmd": [["echo", "hi"]]}
    with pytest.raises(UserError, match="over EC2's 16 KiB"):
        user_data(KEY, {"write_files": [{"path": "/x", "content": "x" * 20000}]})


def test_ssh_key_choice(tmp_path: Path, project: Path) -> None:
    (project / "appliances" / "demo.toml").write_text('name = "demo"\nversion = "1"\ndescription = "d"\nkickstart = "wsgi.ks.j2"\n', encoding="utf-8")
    target = load_aws_target(Project.at(project), "demo")
    (tmp_path / ".ssh").mkdir()
    with pytest.raises(UserError, match="no SSH public key"):
        ssh_public_key(target, None, home=tmp_path)
    (tmp_path / ".ssh" / "id_rsa.pub").write_text(KEY.replace("ed25519", "rsa") + "\n")
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text(KEY + "\n")
    assert ssh_public_key(target, None, home=tmp_path) == KEY  # ed25519 first
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(UserError, match="is a private key"):
        ssh_public_key(target, private)
    junk = tmp_path / "junk.pub"
    junk.write_text("hello\n")
    with pytest.raises(UserError, match="not an SSH public key"):
        ssh_public_key(target, junk)


def test_run_request(project: Path) -> None:
    (project / "appliances" / "demo.toml").write_text(
        'name = "demo"\nversion = "1"\ndescription = "d"\nkickstart = "wsgi.ks.j2"\n[targets.aws]\nsecurity_groups = ["sg-0123456789abcdef0"]\n',
        encoding="utf-8",
    )
    target = load_aws_target(Project.at(project), "demo")
    params = run_params(target, "ami-1", "#cloud-config\n", {"crust:appliance": "demo"}, None, "subnet-0123456789abcdef0")
    assert (params["ImageId"], params["InstanceType"], params["MinCount"], params["MaxCount"]) == ("ami-1", "t3.small", 1, 1)
    assert params["SubnetId"] == "subnet-0123456789abcdef0"
    assert params["SecurityGroupIds"] == ["sg-0123456789abcdef0"]
    assert params["MetadataOptions"]["HttpTokens"] == "required"


def manifest_dir(tmp_path: Path, size: int = 4096) -> Path:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "demo.raw").write_bytes(b"\1" * size)
    manifest = {"appliance": "demo", "artifacts": [{"format": "raw", "path": "/elsewhere/demo.raw", "sha256": "d" * 64, "size": 4096}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / "manifest.json"


def test_raw_image_is_the_file_beside_the_manifest(tmp_path: Path) -> None:
    path = manifest_dir(tmp_path)
    image = raw_image(Manifest.read(path))
    assert (image.path, image.digest, image.size) == (tmp_path / "demo" / "demo.raw", "d" * 64, 4096)
    (tmp_path / "demo" / "demo.raw").write_bytes(b"\1" * 10)
    with pytest.raises(UserError, match="is 10 bytes, the manifest says 4096"):
        raw_image(Manifest.read(path))


def test_record_keeps_the_manifest_and_adds_regions(tmp_path: Path) -> None:
    path = manifest_dir(tmp_path)
    record(path, "aws", "d" * 64, {"eu-west-1": {"ami": "ami-1", "snapshot": "snap-1"}})
    record(path, "aws", "d" * 64, {"us-east-1": {"ami": "ami-2", "snapshot": "snap-2", "copied_from": "eu-west-1"}})
    data = json.loads(path.read_text())
    assert data["artifacts"][0]["sha256"] == "d" * 64
    assert set(data["cloud"]["aws"]) == {"eu-west-1", "us-east-1"}
    manifest = Manifest.read(path)
    assert recorded_ami(manifest, "eu-west-1") == "ami-1"
    assert recorded_ami(manifest, "ap-south-1") is None
    with pytest.raises(Problem, match="changed during the upload") as raised:
        record(path, "aws", "e" * 64, {"eu-west-1": {"ami": "ami-3"}})
    assert raised.value.exit_status == 1  # a failure to rerun, not bad input
    data["artifacts"][0]["sha256"] = "f" * 64  # a new build: the old AMI is not this image
    assert recorded_ami(Manifest.from_json(data), "eu-west-1") is None


def test_undo_runs_in_reverse_and_reports_failures() -> None:
    said: list[str] = []
    done: list[str] = []
    undo = Undo(said.append)
    undo.push("snapshot snap-1", lambda: done.append("snap-1"))

    def fail() -> None:
        raise UserError("ec2 DeregisterImage on ami-1 failed: boom")

    undo.push("AMI ami-1", fail)
    undo.run()
    assert done == ["snap-1"]
    assert said == ["could not remove AMI ami-1: ec2 DeregisterImage on ami-1 failed: boom (remove it by hand)", "removed snapshot snap-1"]
    undo.push("x", lambda: done.append("x"))
    undo.commit()
    undo.run()
    assert done == ["snap-1"]


def test_a_store_entry_hard_link_needs_no_hashing(tmp_path: Path) -> None:
    from crust.build.store import Store
    from crust.cloud.common import stored_digest

    store = Store(tmp_path / "store")
    entry = store.entry_path("image", "abc")
    entry.mkdir(parents=True)
    (entry / "disk.raw").write_bytes(b"\1" * 100)
    (entry / "step.json").write_text(json.dumps({"outputs": {"disk.raw": {"sha256": "d" * 64, "size": 100}}}))
    manifest = Manifest("demo", steps=[{"kind": "tree", "id": "zzz"}, {"kind": "image", "id": "abc"}])
    linked = tmp_path / "demo.raw"
    linked.hardlink_to(entry / "disk.raw")
    copied = tmp_path / "copy.raw"
    copied.write_bytes((entry / "disk.raw").read_bytes())
    with open(linked, "rb") as fh:
        assert stored_digest(fh.fileno(), manifest, store) == "d" * 64
    with open(copied, "rb") as fh:
        assert stored_digest(fh.fileno(), manifest, store) is None  # a copy is hashed while uploading


@pytest.mark.parametrize("verb", ["upload", "launch"])
def test_an_image_without_cloud_init_is_refused(tmp_path: Path, project: Path, verb: str) -> None:
    (project / "appliances" / "demo.toml").write_text(
        'name = "demo"\nversion = "1"\ndescription = "d"\nkickstart = "wsgi.ks.j2"\n[targets.aws]\nregion = "eu-west-1"\n',
        encoding="utf-8",
    )
    path = manifest_dir(tmp_path)
    manifest = json.loads(path.read_text())
    manifest["packages"] = {"openssh-server": "1:10.0p1-7", "systemd": "257.9-1"}
    path.write_text(json.dumps(manifest))
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": ""}
    out = build_py("--appliances", str(project / "appliances"), "--output", str(tmp_path), verb, "demo", "--target", "aws", env=env)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"{path}: demo's image has no cloud-init" in line
    assert 'fix: add cloud-init to %packages in its kickstart and "cloud_init" to roles in the appliance file of demo' in line
    manifest["packages"]["cloud-init"] = "25.1.4-1"
    path.write_text(json.dumps(manifest))
    out = build_py("--appliances", str(project / "appliances"), "--output", str(tmp_path), verb, "demo", "--target", "aws", env=env)
    assert "no cloud-init" not in out.stderr and out.returncode == 2, "with cloud-init the verb goes on (to its next check)"
