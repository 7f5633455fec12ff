"""The Azure target through the real command line: the VHD to a real blob service (Azurite,
started by the tests) and the management calls (images, VMs, NICs) to a recording stand-in for
Azure Resource Manager (tests/integration/arm_standin.py), signed in through the SDK's usual
chain (a fake `az` answers AzureCliCredential).

The appliance is wsgi's definition with a synthetic build: a small fixed VHD (qemu-img) and a
manifest naming it, so that every case runs in seconds. test_upload_of_the_built_wsgi_vhd sends
the real wsgi VHD when the build has one."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crust.build.manifest import Artifact, Manifest
from tests.conftest import ROOT, build_py, need
from tests.integration.arm_standin import TOKEN, FakeArm, fake_arm, write_fake_az
from tests.integration.azurite_server import KEY, azurite_available, azurite_server
from tests.integration.test_azure_blob import make_vhd

pytestmark = pytest.mark.integration

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrustTestKeyCrustTestKeyCrustTestKey0 test@crust"
SUB = "00000000-0000-4000-8000-00000000c0de"
GROUP = "rg-crust"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default"
IMAGES = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Compute/images"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need(azurite_available(), "no Azurite in .azurite/ (./setup.sh installs the npm package azurite)")
    with azurite_server(tmp_path_factory.mktemp("azurite")) as connection:
        yield connection


@pytest.fixture
def arm() -> Iterator[FakeArm]:
    with fake_arm() as server:
        yield server


class Workspace:
    """appliances/ (wsgi's), targets.toml, out/wsgi with a VHD and its manifest, a store, a key,
    and an environment with Azurite's connection string and a signed-in fake `az`."""

    def __init__(self, root: Path, azurite: str, arm: FakeArm, vhd: Path | None = None) -> None:
        self.root = root
        self.appliances = root / "appliances"
        self.appliances.mkdir(parents=True)
        for name in ("wsgi.toml", "wsgi_checks.py"):
            shutil.copy(ROOT / "appliances" / name, self.appliances / name)
        self.targets(public_ip=False)
        self.out = root / "out"
        (self.out / "wsgi").mkdir(parents=True)
        if vhd is None:
            vhd = make_vhd(root)
        digest = hashlib.sha256(vhd.read_bytes()[:-512]).hexdigest()  # stands for the raw image's
        self.vhd = self.out / "wsgi" / "wsgi.vhd"
        os.link(vhd, self.vhd)
        size = vhd.stat().st_size
        manifest = Manifest("wsgi", version="1.0", build_id="fe6262b53ca7", distribution="debian-13", packages={"cloud-init": "25.1"})
        manifest.artifacts = [Artifact("raw", self.out / "wsgi" / "wsgi.raw", digest, size - 512), Artifact("vhd", self.vhd, "cd" * 32, size)]
        manifest.save(self.out / "wsgi" / "manifest.json")
        self.digest = digest
        self.store = root / "store"
        self.key = root / "id_ed25519.pub"
        self.key.write_text(PUBLIC_KEY + "\n")
        write_fake_az(root / "bin")
        self.env: dict[str, str | None] = {
            **{k: None for k in os.environ if k.startswith("AZURE_")},
            "AZURE_STORAGE_CONNECTION_STRING": azurite,
            "AZURE_TOKEN_CREDENTIALS": "AzureCliCredential",
            "HOME": str(root),
            "PATH": f"{root / 'bin'}:{os.environ['PATH']}",
        }
        self.arm = arm

    def targets(self, public_ip: bool, endpoint: str = "") -> None:
        text = f'[azure]\nsubscription = "{SUB}"\nresource_group = "{GROUP}"\nlocation = "westeurope"\nsubnet = "{SUBNET}"\n'
        text += f"public_ip = {'true' if public_ip else 'false'}\n"
        if endpoint:
            text += f'management_endpoint = "{endpoint}"\n'
        (self.root / "targets.toml").write_text(text, encoding="utf-8")

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "wsgi" / "manifest.json").read_text())
        return data

    def crust(self, *args: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["--appliances", str(self.appliances), "--output", str(self.out), "--store", str(self.store), *args]
        return build_py(*argv, env={**self.env, **(env or {})}, timeout=600)


@pytest.fixture
def ws(azurite: str, arm: FakeArm, tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace(tmp_path / "ws", azurite, arm)
    workspace.targets(public_ip=False, endpoint=arm.url)
    yield workspace
    for blob in blobs(azurite):
        container(azurite).delete_blob(blob.name)


def container(connection: str) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(connection).get_container_client("crust-images")


def blobs(connection: str) -> list[Any]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return list(container(connection).list_blobs(include=["metadata"]))
    except ResourceNotFoundError:
        return []


def upload_json(ws: Workspace, *args: str) -> dict[str, Any]:
    out = ws.crust("upload", "wsgi", "--target", "azure", "--json", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert KEY not in out.stdout + out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_upload_bytes_image_request_and_reuse(ws: Workspace, azurite: str, arm: FakeArm) -> None:
    report = upload_json(ws)
    [blob] = blobs(azurite)
    assert blob.name == f"{ws.digest}.vhd" and blob.blob_type == "PageBlob"
    assert blob.metadata["crust_complete"] == ws.digest and blob.metadata["crust_appliance"] == "wsgi"
    data = container(azurite).get_blob_client(blob.name).download_blob().readall()
    assert data == ws.vhd.read_bytes()
    assert 6 * 2**20 <= report["bytes_sent"] < 8 * 2**20 and report["reused"] is False
    [(path, body)] = arm.writes()
    assert path == f"{IMAGES}/crust-wsgi-1.0-{ws.digest[:12]}" and report["image"] == path
    assert body["location"] == "westeurope" and body["tags"]["crust_image_digest"] == ws.digest
    assert body["properties"]["hyperVGeneration"] == "V2"
    assert body["properties"]["storageProfile"]["osDisk"] == {
        "osType": "Linux",
        "osState": "Generalized",
        "blobUri": report["blob"],
        "caching": "ReadWrite",
    }
    assert report["blob"].endswith(f"/devstoreaccount1/crust-images/{ws.digest}.vhd") and "sig=" not in report["blob"]
    assert arm.tokens == {f"Bearer {TOKEN}"}  # signed in through the SDK's chain
    recorded = ws.manifest()["cloud"]["azure"][f"{SUB}/{GROUP}/westeurope"]
    assert recorded["image"] == report["image"] and recorded["image_digest"] == ws.digest

    etag = container(azurite).get_blob_client(blob.name).get_blob_properties().etag
    again = upload_json(ws)
    assert again["reused"] is True and again["bytes_sent"] == 0 and again["image"] == report["image"]
    assert container(azurite).get_blob_client(blob.name).get_blob_properties().etag == etag
    assert len(arm.writes()) == 1


GALLERY = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Compute/galleries/crustgallery"


def test_request_shape_gallery_image_version(ws: Workspace, azurite: str, arm: FakeArm) -> None:
    with open(ws.root / "targets.toml", "a", encoding="utf-8") as fh:
        fh.write('gallery = "crustgallery"\n')
    out = ws.crust("upload", "wsgi", "--target", "azure")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "no image definition wsgi in gallery crustgallery (fix: az sig image-definition create" in out.stderr
    assert blobs(azurite) == [] and arm.writes() == []  # checked before anything is sent

    properties = {"hyperVGeneration": "V2", "osType": "Linux", "osState": "Generalized", "provisioningState": "Succeeded"}
    arm.add(f"{GALLERY}/images/wsgi", {"location": "westeurope", "properties": properties})
    report = upload_json(ws)
    [(path, body)] = arm.writes()
    assert path.startswith(f"{GALLERY}/images/wsgi/versions/") and report["image"] == path and report["kind"] == "gallery image version"
    source = body["properties"]["storageProfile"]["osDiskImage"]["source"]
    assert source == {
        "storageAccountId": f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "uri": report["blob"],
    }
    assert body["properties"]["publishingProfile"]["targetRegions"] == [{"name": "westeurope", "regionalReplicaCount": 1}]
    assert body["tags"]["crust_image_digest"] == ws.digest
    again = upload_json(ws)
    assert again["reused"] is True and again["image"] == report["image"] and len(arm.writes()) == 1


def test_no_vhd_is_one_line_naming_the_fix(ws: Workspace) -> None:
    manifest = ws.manifest()
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["format"] != "vhd"]
    (ws.out / "wsgi" / "manifest.json").write_text(json.dumps(manifest))
    out = ws.crust("upload", "wsgi", "--target", "azure")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert 'add "vhd" to image.formats of wsgi, or ./build.py build wsgi --format vhd' in out.stderr


def test_no_credentials_is_one_line(ws: Workspace) -> None:
    out = ws.crust("upload", "wsgi", "--target", "azure", env={"AZURE_STORAGE_CONNECTION_STRING": None})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "AZURE_STORAGE_CONNECTION_STRING" in out.stderr
    out = ws.crust("upload", "wsgi", "--target", "azure", env={"PATH": "/usr/bin:/bin"})  # no az: no sign-in
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "az login" in out.stderr and KEY not in out.stderr


def test_a_refused_storage_key_is_one_line_and_never_shown(ws: Workspace, azurite: str) -> None:
    wrong = base64.b64encode(b"not the account key of devstoreaccount1, 64 bytes long.........").decode()
    out = ws.crust("upload", "wsgi", "--target", "azure", env={"AZURE_STORAGE_CONNECTION_STRING": azurite.replace(KEY, wrong)})
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "HTTP 403" in out.stderr and wrong not in out.stderr + out.stdout, out.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_upload_leaves_no_blob(ws: Workspace, azurite: str, arm: FakeArm, sig: str) -> None:
    out = ws.crust("upload", "wsgi", "--target", "azure", env={"CRUST_FAULT": f"azure.upload:{sig}"})
    assert out.returncode != 0 and "fault point azure.upload" in out.stderr
    assert f"removed blob {ws.digest}.vhd" in out.stderr, out.stderr
    assert blobs(azurite) == [] and arm.writes() == []


def test_a_killed_upload_is_an_orphan_the_rerun_replaces(ws: Workspace, azurite: str) -> None:
    out = ws.crust("upload", "wsgi", "--target", "azure", env={"CRUST_FAULT": "azure.upload:SIGKILL"})
    assert out.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), out.returncode
    [left] = blobs(azurite)
    assert "crust_complete" not in left.metadata
    out = ws.crust("resources", "wsgi", "--target", "azure", "--json")
    assert out.returncode == 0, out.stderr
    assert [(e["kind"], e["id"], e["orphan"]) for e in json.loads(out.stdout)] == [("blob", left.name, True)]
    out = ws.crust("upload", "wsgi", "--target", "azure", "--json")
    assert out.returncode == 0 and f"removed blob {left.name}, left incomplete by an interrupted upload" in out.stderr, out.stderr
    report = json.loads(out.stdout)
    [blob] = blobs(azurite)
    assert blob.metadata["crust_complete"] == ws.digest and report["reused"] is False
    assert container(azurite).get_blob_client(blob.name).download_blob().readall() == ws.vhd.read_bytes()


def test_remove_orphans_removes_a_killed_uploads_blob(ws: Workspace, azurite: str) -> None:
    out = ws.crust("upload", "wsgi", "--target", "azure", env={"CRUST_FAULT": "azure.upload:SIGKILL"})
    assert out.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), out.returncode
    out = ws.crust("resources", "wsgi", "--target", "azure", "--remove-orphans", "--json")
    assert out.returncode == 0, out.stderr
    assert [(e["kind"], e["orphan"], e.get("removed")) for e in json.loads(out.stdout)] == [("blob", True, True)]
    assert blobs(azurite) == []


def test_request_shape_launch_and_terminate(ws: Workspace, arm: FakeArm) -> None:
    ws.targets(public_ip=True, endpoint=arm.url)
    report = upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "azure", "--ssh-key", str(ws.key), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout)
    assert record["address"] == "203.0.113.7"
    puts = {path.rsplit("/", 2)[1]: body for path, body in arm.writes()}
    nic, ip, vm = puts["networkInterfaces"], puts["publicIPAddresses"], puts["virtualMachines"]
    assert ip["sku"] == {"name": "Standard"} and ip["properties"]["publicIPAllocationMethod"] == "Static"
    config = nic["properties"]["ipConfigurations"][0]["properties"]
    assert config["subnet"] == {"id": SUBNET} and config["publicIPAddress"]["id"].endswith(f"/publicIPAddresses/{record['name']}-ip")
    props = vm["properties"]
    assert props["storageProfile"]["imageReference"] == {"id": report["image"]}
    assert props["networkProfile"]["networkInterfaces"][0]["id"].endswith(f"/networkInterfaces/{record['name']}-nic")
    linux = props["osProfile"]["linuxConfiguration"]
    assert linux["ssh"]["publicKeys"] == [{"path": "/home/crust/.ssh/authorized_keys", "keyData": PUBLIC_KEY}]
    data = base64.b64decode(props["osProfile"]["customData"]).decode()
    assert data.startswith("#cloud-config\n") and PUBLIC_KEY in yaml.safe_load(data)["ssh_authorized_keys"]
    assert vm["tags"]["crust_image_digest"] == ws.digest and nic["tags"]["crust_appliance"] == "wsgi"

    listed = json.loads(ws.crust("resources", "wsgi", "--target", "azure", "--json").stdout)
    kinds = sorted(e["kind"] for e in listed)
    assert kinds == ["blob", "image", "nic", "public ip", "vm"]
    assert [e["recorded"] for e in listed if e["kind"] == "vm"] == [True]

    out = ws.crust("terminate", "wsgi", "--target", "azure")
    assert out.returncode == 0, out.stderr
    deleted = [path.rsplit("/", 2)[1] for path, _ in arm.writes("DELETE")]
    assert deleted == ["virtualMachines", "disks", "networkInterfaces", "publicIPAddresses"]
    assert [r for r in arm.resources if "/images/" not in r] == []


def test_request_shape_a_refused_vm_is_one_line_and_leaves_nothing(ws: Workspace, arm: FakeArm) -> None:
    upload_json(ws)
    arm.refuse = "virtualMachines"
    out = ws.crust("launch", "wsgi", "--target", "azure", "--ssh-key", str(ws.key))
    assert out.returncode == 1 and "HTTP 403 QuotaExceeded" in out.stderr, out.stderr
    assert [line for line in out.stderr.splitlines() if line.startswith("error:")] == out.stderr.splitlines()[-1:]
    assert "removed nic " in out.stderr, out.stderr
    assert [r for r in arm.resources if "/images/" not in r] == []
    out = ws.crust("terminate", "wsgi", "--target", "azure")
    assert out.returncode == 2 and "no launched VM of wsgi is recorded" in out.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_request_shape_an_interrupted_launch_deletes_what_it_made(ws: Workspace, arm: FakeArm, sig: str) -> None:
    upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "azure", "--ssh-key", str(ws.key), env={"CRUST_FAULT": f"azure.launch:{sig}"})
    assert out.returncode != 0 and "removed vm " in out.stderr and "removed nic " in out.stderr, out.stderr
    assert [r for r in arm.resources if "/images/" not in r] == []


def test_request_shape_terminate_removes_what_a_killed_launch_left(ws: Workspace, arm: FakeArm) -> None:
    upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "azure", "--ssh-key", str(ws.key), env={"CRUST_FAULT": "azure.launch:SIGKILL"})
    assert out.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), out.returncode
    left = sorted(path.rsplit("/", 2)[1] for path in arm.resources if "/images/" not in path)
    assert left == ["networkinterfaces", "virtualmachines"]
    out = ws.crust("terminate", "wsgi", "--target", "azure")
    assert out.returncode == 0, out.stderr
    assert [r for r in arm.resources if "/images/" not in r] == []


def test_upload_of_the_built_wsgi_vhd(built: Callable[[str], dict[str, Any]], azurite: str, arm: FakeArm, tmp_path: Path) -> None:
    """The session's wsgi, its fixed VHD converted by the build (only that step runs), to Azurite."""
    built("wsgi")
    out = build_py("--output", str(tmp_path / "out"), "build", "wsgi", "--format", "vhd")
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "wsgi" / "manifest.json").read_text())
    vhd = tmp_path / "out" / "wsgi" / next(Path(a["path"]).name for a in manifest["artifacts"] if a["format"] == "vhd")
    ws = Workspace(tmp_path / "ws", azurite, arm, vhd=vhd)
    ws.targets(public_ip=False, endpoint=arm.url)
    report = upload_json(ws)
    assert report["bytes_sent"] <= vhd.stat().st_blocks * 512
    blob = container(azurite).get_blob_client(f"{ws.digest}.vhd")
    digest = hashlib.sha256()
    for chunk in blob.download_blob().chunks():
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(vhd.read_bytes()).hexdigest()
    assert upload_json(ws)["bytes_sent"] == 0
