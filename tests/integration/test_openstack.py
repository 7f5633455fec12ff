"""The OpenStack target against a real Glance (glance 33 from PyPI, started by the tests with
SQLite and the file store, no Keystone: tests/integration/glance_server.py), through the real
command line: upload, the image's properties, the bytes read back, reuse by digest, sharing,
interrupted and killed uploads, resources.

Nova and Keystone cannot run here: launch and terminate are checked on the requests Crust sends
to a recording stand-in for the compute API (test_request_shape_*), as the AWS tests do for what
moto ignores."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, build_py, need
from tests.integration.glance_server import glance_available, glance_server

pytestmark = pytest.mark.integration

GLANCE_VENV = ROOT / ".venv-glance"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrustTestKeyCrustTestKeyCrustTestKey0 test@crust"
FLAVOR_ID = "f0000000-0000-4000-8000-000000000001"
NETWORK_ID = "a1b2c3d4-0000-4000-8000-000000000002"


@pytest.fixture(scope="module")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need(glance_available(GLANCE_VENV), f"no Glance in {GLANCE_VENV} (./setup.sh installs glance and pyuwsgi there)")
    with glance_server(GLANCE_VENV, tmp_path_factory.mktemp("glance"), trust_headers=False) as url:
        yield url


class FakeNova(ThreadingHTTPServer):
    """A recording stand-in for the compute API: flavors, and servers that are ACTIVE on their
    second look and gone after DELETE."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), NovaHandler)
        self.requests: list[tuple[str, str, Any]] = []
        self.servers: dict[str, dict[str, Any]] = {}
        self.looks: dict[str, int] = {}
        self.fail_create = False
        self.error_on_create = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v2.1"


class NovaHandler(BaseHTTPRequestHandler):
    server: FakeNova

    def log_message(self, *_args: Any) -> None:
        pass

    def reply(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0].removeprefix("/v2.1")
        self.server.requests.append(("GET", path, None))
        if path in ("", "/"):
            link = [{"rel": "self", "href": self.server.url + "/"}]
            self.reply(200, {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.1", "min_version": "2.1", "links": link}})
        elif path == f"/flavors/{FLAVOR_ID}":
            self.reply(200, {"flavor": {"id": FLAVOR_ID, "name": "m1.small"}})
        elif path.startswith("/flavors/"):
            self.reply(404, {"itemNotFound": {"message": "not found", "code": 404}})
        elif path == "/flavors":
            self.reply(200, {"flavors": [{"id": FLAVOR_ID, "name": "m1.small"}]})
        elif path == "/servers/detail":
            self.reply(200, {"servers": list(self.server.servers.values())})
        elif path.startswith("/servers/"):
            server_id = path.rsplit("/", 1)[1]
            server = self.server.servers.get(server_id)
            if server is None:
                self.reply(404, {"itemNotFound": {"message": "not found", "code": 404}})
                return
            self.server.looks[server_id] = self.server.looks.get(server_id, 0) + 1
            if self.server.looks[server_id] >= 2 and server["status"] == "BUILD":
                server["status"] = "ACTIVE"
                server["addresses"] = {"net": [{"addr": "192.0.2.10", "version": 4}]}
            self.reply(200, {"server": server})
        else:
            self.reply(404, {"itemNotFound": {"message": "not found", "code": 404}})

    def do_POST(self) -> None:
        path = self.path.removeprefix("/v2.1")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("POST", path, body))
        if path != "/servers" or self.server.fail_create:
            self.reply(403, {"forbidden": {"message": "Quota exceeded for instances", "code": 403}})
            return
        server_id = f"5e{len(self.server.requests):06d}-0000-4000-8000-000000000000"
        self.server.servers[server_id] = {"id": server_id, "status": "BUILD", "metadata": body["server"].get("metadata", {}), "addresses": {}}
        if self.server.error_on_create:
            self.server.servers[server_id].update(status="ERROR", fault={"message": "No valid host was found.", "code": 500})
        self.reply(202, {"server": {"id": server_id}})

    def do_DELETE(self) -> None:
        path = self.path.removeprefix("/v2.1")
        self.server.requests.append(("DELETE", path, None))
        server_id = path.rsplit("/", 1)[1]
        self.reply(204 if self.server.servers.pop(server_id, None) is not None else 404)


@pytest.fixture
def nova() -> Iterator[FakeNova]:
    server = FakeNova()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Workspace:
    """appliances/, targets.toml, clouds.yaml (auth none: Glance and the compute stand-in by
    endpoint), out/wsgi with the session's built wsgi (hard links and its manifest), a store."""

    def __init__(self, root: Path, glance: str, nova: str, targets: str) -> None:
        self.root = root
        self.appliances = root / "appliances"
        self.appliances.mkdir(parents=True)
        for name in ("wsgi.toml", "wsgi_checks.py"):
            shutil.copy(ROOT / "appliances" / name, self.appliances / name)
        (root / "targets.toml").write_text(targets, encoding="utf-8")
        clouds = {
            "clouds": {
                "crust-test": {
                    "auth_type": "none",
                    "auth": {"endpoint": glance},
                    "image_endpoint_override": glance,
                    "compute_endpoint_override": nova,
                    "region_name": "RegionOne",
                }
            }
        }
        (root / "clouds.yaml").write_text(yaml.safe_dump(clouds))
        self.out = root / "out"
        (self.out / "wsgi").mkdir(parents=True)
        manifest = json.loads((ROOT / "build" / "wsgi" / "manifest.json").read_text())
        manifest.pop("cloud", None)
        for artifact in manifest["artifacts"]:
            source = Path(artifact["path"])
            if not source.is_absolute():
                source = ROOT / "build" / "wsgi" / source
            dest = self.out / "wsgi" / source.name
            os.link(source, dest)
            artifact["path"] = str(dest)
        (self.out / "wsgi" / "manifest.json").write_text(json.dumps(manifest, indent=2))
        self.store = root / "store"
        self.key = root / "id_ed25519.pub"
        self.key.write_text(PUBLIC_KEY + "\n")
        self.env: dict[str, str | None] = {**{k: None for k in os.environ if k.startswith("OS_")}, "OS_CLIENT_CONFIG_FILE": str(root / "clouds.yaml")}

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "wsgi" / "manifest.json").read_text())
        return data

    def artifact(self, fmt: str) -> dict[str, Any]:
        return next(a for a in self.manifest()["artifacts"] if a["format"] == fmt)

    def crust(self, *args: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["--appliances", str(self.appliances), "--output", str(self.out), "--store", str(self.store), *args]
        return build_py(*argv, env={**self.env, **(env or {})}, timeout=900)


TARGETS = '[openstack]\ncloud = "crust-test"\nflavor = "m1.small"\nnetwork = "' + NETWORK_ID + '"\nmin_ram = "1GiB"\nproperties = { team = "web" }\n'


@pytest.fixture
def ws(built: Any, glance: str, nova: FakeNova, tmp_path: Path) -> Iterator[Workspace]:
    built("wsgi")
    workspace = Workspace(tmp_path / "ws", glance, nova.url, TARGETS)
    yield workspace
    for image in glance_images(glance):  # each test starts from an empty Glance
        urllib.request.urlopen(urllib.request.Request(f"{glance}/v2/images/{image['id']}", method="DELETE"), timeout=30).close()


def glance_images(glance: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{glance}/v2/images?member_status=all&visibility=all", timeout=30) as resp:
        images: list[dict[str, Any]] = json.loads(resp.read())["images"]
    return images


def read_back(glance: str, image_id: str) -> str:
    digest = hashlib.sha256()
    with urllib.request.urlopen(f"{glance}/v2/images/{image_id}/file", timeout=300) as resp:
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def upload_json(ws: Workspace, *args: str) -> dict[str, Any]:
    out = ws.crust("upload", "wsgi", "--target", "openstack", "--json", *args)
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_upload_properties_bytes_and_reuse(ws: Workspace, glance: str) -> None:
    report = upload_json(ws)
    assert report["reused"] is False
    [image] = glance_images(glance)
    assert image["id"] == report["image"] and image["status"] == "active"
    digest = ws.manifest()["artifacts"][0]["sha256"]
    assert image["name"] == f"crust-wsgi-{ws.manifest()['version']}-{digest[:12]}"
    expected = {
        "disk_format": "qcow2",
        "container_format": "bare",
        "visibility": "private",
        "hw_firmware_type": "uefi",
        "hw_machine_type": "q35",
        "os_distro": "debian",
        "os_type": "linux",
        "crust_appliance": "wsgi",
        "crust_image_digest": digest,
        "crust_qcow2_sha256": ws.artifact("qcow2")["sha256"],
        "team": "web",
        "min_ram": 1024,
        "min_disk": -(-ws.artifact("raw")["size"] // 2**30),
    }
    assert {k: image.get(k) for k in expected} == expected
    assert read_back(glance, image["id"]) == ws.artifact("qcow2")["sha256"]
    assert report["bytes_sent"] == ws.artifact("qcow2")["size"]
    recorded = ws.manifest()["cloud"]["openstack"]["crust-test:RegionOne"]  # the region clouds.yaml gives
    assert recorded["image"] == image["id"] and recorded["image_digest"] == digest

    again = upload_json(ws)
    assert again["reused"] is True and again["bytes_sent"] == 0 and again["image"] == image["id"]
    assert len(glance_images(glance)) == 1


def test_shared_with_members(ws: Workspace, glance: str) -> None:
    (ws.root / "targets.toml").write_text(TARGETS + 'visibility = "shared"\nmembers = ["project-b", "project-c"]\n')
    report = upload_json(ws)
    assert report["members"] == ["project-b", "project-c"]
    with urllib.request.urlopen(f"{glance}/v2/images/{report['image']}/members", timeout=30) as resp:
        members = sorted(m["member_id"] for m in json.loads(resp.read())["members"])
    assert members == ["project-b", "project-c"]
    assert glance_images(glance)[0]["visibility"] == "shared"
    # The same image again with other members: reused, its members brought to the settings.
    (ws.root / "targets.toml").write_text(TARGETS + 'visibility = "shared"\nmembers = ["project-c"]\n')
    again = upload_json(ws)
    assert again["reused"] is True and again["members"] == ["project-c"]


def test_reuse_brings_visibility_to_the_settings(ws: Workspace, glance: str) -> None:
    first = upload_json(ws)
    assert glance_images(glance)[0]["visibility"] == "private"
    (ws.root / "targets.toml").write_text(TARGETS + 'visibility = "community"\n')
    again = upload_json(ws)
    assert again["reused"] is True and again["image"] == first["image"]
    assert glance_images(glance)[0]["visibility"] == "community"


def test_members_without_shared_visibility_is_one_line(ws: Workspace) -> None:
    (ws.root / "targets.toml").write_text(TARGETS + 'members = ["project-b"]\n')
    out = ws.crust("upload", "wsgi", "--target", "openstack")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert 'set visibility = "shared"' in out.stderr, out.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_upload_leaves_no_image(ws: Workspace, glance: str, sig: str) -> None:
    out = ws.crust("upload", "wsgi", "--target", "openstack", env={"CRUST_FAULT": f"openstack.upload:{sig}"})
    assert out.returncode != 0 and "fault point openstack.upload" in out.stderr
    assert "removed image " in out.stderr, out.stderr
    assert glance_images(glance) == []


def test_a_killed_upload_is_an_orphan_the_rerun_replaces(ws: Workspace, glance: str) -> None:
    out = ws.crust("upload", "wsgi", "--target", "openstack", env={"CRUST_FAULT": "openstack.upload:SIGKILL"})
    assert out.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), out.returncode
    [left] = glance_images(glance)
    assert left["status"] in ("queued", "saving")  # killed mid-PUT: Glance may still be ending it
    out = ws.crust("resources", "wsgi", "--target", "openstack", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [(e["kind"], e["id"], e["orphan"]) for e in listed] == [("image", left["id"], True)]
    out = ws.crust("upload", "wsgi", "--target", "openstack", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"removed {left['id']}, left queued by an interrupted upload" in out.stderr
    report = json.loads(out.stdout)
    [image] = glance_images(glance)
    assert image["id"] == report["image"] != left["id"] and image["status"] == "active"


def test_no_credentials_is_one_line(ws: Workspace) -> None:
    (ws.root / "targets.toml").write_text("[openstack]\n")
    out = ws.crust("upload", "wsgi", "--target", "openstack", env={"OS_CLIENT_CONFIG_FILE": str(ws.root / "none.yaml")})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "OS_AUTH_URL" in out.stderr


def test_request_shape_launch_and_terminate(ws: Workspace, nova: FakeNova, glance: str) -> None:
    report = upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "openstack", "--ssh-key", str(ws.key), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout)
    assert record["address"] == "192.0.2.10"
    [(_, _, body)] = [r for r in nova.requests if r[0] == "POST"]
    server = body["server"]
    assert server["imageRef"] == report["image"] and server["flavorRef"] == FLAVOR_ID
    assert server["networks"] == [{"uuid": NETWORK_ID}] and server["config_drive"] is True
    assert server["metadata"] == {"crust_appliance": "wsgi", "crust_image_digest": ws.manifest()["artifacts"][0]["sha256"]}
    data = base64.b64decode(server["user_data"]).decode()
    assert data.startswith("#cloud-config\n") and PUBLIC_KEY in yaml.safe_load(data)["ssh_authorized_keys"]

    listed = json.loads(ws.crust("resources", "wsgi", "--target", "openstack", "--json").stdout)
    assert ("server", record["id"], False) in [(e["kind"], e["id"], e["orphan"]) for e in listed]

    out = ws.crust("terminate", "wsgi", "--target", "openstack")
    assert out.returncode == 0 and f"{record['id']} terminated" in out.stdout, out.stderr
    assert ("DELETE", f"/servers/{record['id']}", None) in nova.requests and nova.servers == {}


def test_request_shape_a_refused_server_is_one_line_and_leaves_nothing(ws: Workspace, nova: FakeNova) -> None:
    upload_json(ws)
    nova.fail_create = True
    out = ws.crust("launch", "wsgi", "--target", "openstack", "--ssh-key", str(ws.key))
    assert out.returncode == 1 and "HTTP 403" in out.stderr and "Quota exceeded" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1
    assert len([r for r in nova.requests if r[0] == "POST"]) == 1 and not [r for r in nova.requests if r[0] == "DELETE"]
    out = ws.crust("terminate", "wsgi", "--target", "openstack")
    assert out.returncode == 2 and "no launched server of wsgi is recorded" in out.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_request_shape_an_interrupted_launch_deletes_its_server(ws: Workspace, nova: FakeNova, sig: str) -> None:
    upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "openstack", "--ssh-key", str(ws.key), env={"CRUST_FAULT": f"openstack.launch:{sig}"})
    assert out.returncode != 0 and "removed server " in out.stderr, out.stderr
    assert nova.servers == {} and [r for r in nova.requests if r[0] == "DELETE"]


def test_request_shape_a_server_in_error_is_one_line_and_deleted(ws: Workspace, nova: FakeNova) -> None:
    upload_json(ws)
    nova.error_on_create = True
    out = ws.crust("launch", "wsgi", "--target", "openstack", "--ssh-key", str(ws.key))
    assert out.returncode == 1, out.stderr
    assert "went to ERROR: No valid host was found." in out.stderr and "removed server " in out.stderr, out.stderr
    [(_, path, _)] = [r for r in nova.requests if r[0] == "DELETE"]
    assert path.startswith("/servers/") and nova.servers == {}
    out = ws.crust("terminate", "wsgi", "--target", "openstack")
    assert out.returncode == 2 and "no launched server of wsgi is recorded" in out.stderr
