"""The libvirt target against this machine's real libvirtd: upload into a storage pool the test
makes (a directory pool under tmp_path), read back through libvirt, idempotence by digest,
interrupted uploads, launch of a persistent domain that boots and takes its user data, and
terminate, through the real command line."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, build_py, need, need_root

pytestmark = pytest.mark.integration

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICrustTestKeyCrustTestKeyCrustTestKey0 test@crust"
Built = Callable[[str], dict[str, Any]]
POOLS = Path("/var/lib/crust/test-pools")


def libvirt_conn() -> Any:
    import libvirt

    try:
        return libvirt.open("qemu:///system")
    except libvirt.libvirtError as exc:
        need(False, f"no libvirtd answers at qemu:///system: {exc}")


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Any]:
    """A fresh directory storage pool, removed with all its volumes afterwards."""
    need_root()
    conn = libvirt_conn()
    name = f"crust-test-{os.getpid()}-{tmp_path.name[-12:]}"[:60].replace("_", "-")
    # Where qemu (libvirt's qemu user) can reach the volumes: pytest's tmp_path is root-only.
    path = POOLS / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o755)
    xml = f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"
    pool = conn.storagePoolCreateXML(xml, 0)  # transient: gone with destroy()
    try:
        yield pool
    finally:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith("wsgi-"):
                xml_desc = dom.XMLDesc(0)
                if f"pool='{name}'" in xml_desc or f'pool="{name}"' in xml_desc:
                    if dom.isActive():
                        dom.destroy()
                    dom.undefineFlags(4)  # VIR_DOMAIN_UNDEFINE_NVRAM
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
        conn.close()
        shutil.rmtree(path, ignore_errors=True)


class Workspace:
    """appliances/ (wsgi.toml + its checks), targets.toml pointing at the test pool, out/wsgi with
    the session's built wsgi (hard links and its manifest), a store."""

    def __init__(self, root: Path, built: dict[str, Any], pool_name: str) -> None:
        self.root = root
        self.appliances = root / "appliances"
        self.appliances.mkdir(parents=True)
        for name in ("wsgi.toml", "wsgi_checks.py"):
            shutil.copy(ROOT / "appliances" / name, self.appliances / name)
        (root / "targets.toml").write_text(f'[libvirt]\npool = "{pool_name}"\nnetwork = "user"\nwait_timeout = 900\n', encoding="utf-8")
        self.out = root / "out"
        (self.out / "wsgi").mkdir(parents=True)
        manifest = json.loads((ROOT / "build" / "wsgi" / "manifest.json").read_text())
        manifest.pop("cloud", None)  # records of earlier uploads of the session's image
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
        self.built = built

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "wsgi" / "manifest.json").read_text())
        return data

    def artifact(self, fmt: str) -> dict[str, Any]:
        return next(a for a in self.manifest()["artifacts"] if a["format"] == fmt)

    def argv(self, *args: str) -> list[str]:
        return ["--appliances", str(self.appliances), "--output", str(self.out), "--store", str(self.store), *args]

    def crust(self, *args: str, env: dict[str, str | None] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return build_py(*self.argv(*args), env=env, timeout=timeout)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "build.py"), *self.argv(*args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )


@pytest.fixture
def ws(built: Built, pool: Any, tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws", built("wsgi"), pool.name())


def read_back(pool: Any, volume: str) -> str:
    """sha256 of a volume's bytes as libvirt's download stream gives them."""
    import libvirt

    conn = pool.connect()
    vol = pool.storageVolLookupByName(volume)
    digest = hashlib.sha256()
    stream = conn.newStream(0)
    vol.download(stream, 0, 0, 0)
    stream.recvAll(lambda _s, data, _o: digest.update(data) or len(data), None)
    stream.finish()
    assert isinstance(conn, libvirt.virConnect)
    return digest.hexdigest()


def volumes(pool: Any) -> set[str]:
    pool.refresh(0)
    return set(pool.listVolumes())


def upload_json(ws: Workspace) -> dict[str, Any]:
    out = ws.crust("upload", "wsgi", "--target", "libvirt", "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_upload_reads_back_identical_and_a_second_sends_nothing(ws: Workspace, pool: Any) -> None:
    qcow2 = ws.artifact("qcow2")
    report = upload_json(ws)
    assert report["reused"] is False
    volume = report["volume"]
    assert volume == f"crust-wsgi-{ws.manifest()['version']}-{ws.manifest()['artifacts'][0]['sha256'][:12]}.qcow2"
    assert read_back(pool, volume) == qcow2["sha256"]
    allocated = os.stat(qcow2["path"]).st_blocks * 512
    assert 0 < report["bytes_sent"] <= allocated
    assert report["bytes_sent"] + report["holes_skipped"] == qcow2["size"]
    recorded = ws.manifest()["cloud"]["libvirt"][f"qemu:///system#{pool.name()}"]
    assert recorded["volume"] == volume and recorded["image_digest"] == ws.manifest()["artifacts"][0]["sha256"]

    again = upload_json(ws)
    assert again["reused"] is True and again["bytes_sent"] == 0
    assert volumes(pool) == {volume, volume + ".crust.json"}

    out = ws.crust("resources", "wsgi", "--target", "libvirt", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"kind": "image", "id": volume, "digest": ws.manifest()["artifacts"][0]["sha256"], "orphan": False}]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_upload_leaves_nothing(ws: Workspace, pool: Any, sig: str) -> None:
    out = ws.crust("upload", "wsgi", "--target", "libvirt", env={"CRUST_FAULT": f"libvirt.upload:{sig}"})
    assert out.returncode != 0
    assert "fault point libvirt.upload" in out.stderr
    assert "removed crust-wsgi-" in out.stderr, out.stderr
    assert volumes(pool) == set()
    assert "libvirt" not in ws.manifest().get("cloud", {})


def test_a_killed_upload_is_an_orphan_the_rerun_replaces(ws: Workspace, pool: Any) -> None:
    out = ws.crust("upload", "wsgi", "--target", "libvirt", env={"CRUST_FAULT": "libvirt.upload:SIGKILL"})
    assert out.returncode == -signal.SIGKILL or out.returncode == 128 + signal.SIGKILL, out.returncode
    left = volumes(pool)
    assert len(left) == 2  # the image volume and its record, which says incomplete
    listed = json.loads(ws.crust("resources", "wsgi", "--target", "libvirt", "--json").stdout)
    assert [(e["kind"], e["orphan"]) for e in listed] == [("image", True)]

    report = upload_json(ws)
    assert report["reused"] is False
    assert read_back(pool, report["volume"]) == ws.artifact("qcow2")["sha256"]

    out = ws.crust("resources", "wsgi", "--target", "libvirt", "--remove-orphans")
    assert out.returncode == 0 and "orphan" not in out.stdout, out.stdout


def test_bad_settings_are_one_line(ws: Workspace) -> None:
    (ws.root / "targets.toml").write_text('[libvirt]\npool = "no such pool"\n')
    out = ws.crust("upload", "wsgi", "--target", "libvirt")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "libvirt.pool" in out.stderr and "targets.toml:2" in out.stderr, out.stderr
    (ws.root / "targets.toml").write_text('[libvirt]\npool = "crust-no-such-pool"\n')
    out = ws.crust("upload", "wsgi", "--target", "libvirt")
    assert out.returncode == 2
    assert "no storage pool 'crust-no-such-pool' at qemu:///system" in out.stderr and "virsh pool-define-as" in out.stderr
    out = ws.crust("upload", "wsgi", "--target", "libvirt", "--workers", "2")
    assert out.returncode == 2 and "--workers (aws): not an option of --target libvirt" in out.stderr, out.stderr


def agent(dom: Any, command: str, args: list[str]) -> str:
    """Run a command in the guest through its agent; its stdout."""
    import base64

    import libvirt_qemu

    started = json.loads(
        libvirt_qemu.qemuAgentCommand(
            dom, json.dumps({"execute": "guest-exec", "arguments": {"path": command, "arg": args, "capture-output": True}}), 30, 0
        )
    )
    pid = started["return"]["pid"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-exec-status", "arguments": {"pid": pid}}), 30, 0))[
            "return"
        ]
        if status["exited"]:
            return base64.b64decode(status.get("out-data", "")).decode()
        time.sleep(0.5)
    raise AssertionError(f"{command} did not finish in the guest")


def test_launch_boots_a_persistent_domain_and_terminate_removes_it(ws: Workspace, pool: Any) -> None:
    import libvirt

    upload_json(ws)
    out = ws.crust("launch", "wsgi", "--target", "libvirt", "--ssh-key", str(ws.key), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout)
    machine = record["id"]
    assert record["address"].startswith("10.0.2.")  # qemu user networking, as its agent reports
    conn = pool.connect()
    dom = conn.lookupByName(machine)
    assert dom.isPersistent() and dom.isActive()
    assert volumes(pool) >= {f"{machine}.qcow2", f"{machine}-seed.img"}
    # The guest took its NoCloud seed: the host name and the SSH key of the user data.
    assert agent(dom, "/usr/bin/hostname", []).strip() == machine
    keys = agent(dom, "/bin/sh", ["-c", "cat /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys 2>/dev/null"])
    assert PUBLIC_KEY in keys
    # The appliance answers as its smoke test asks: the page through nginx names this build.
    build_id = ws.manifest()["build_id"]
    deadline = time.monotonic() + 600
    page = ""
    while build_id not in page and time.monotonic() < deadline:
        page = agent(dom, "/bin/sh", ["-c", "curl -fsS --max-time 5 http://127.0.0.1/ || sleep 2"])
    assert build_id in page, f"the page never showed build {build_id}: {page[:300]!r}"

    listed = json.loads(ws.crust("resources", "wsgi", "--target", "libvirt", "--json").stdout)
    assert {(e["kind"], e["id"], e["orphan"]) for e in listed if e["kind"] == "domain"} == {("domain", machine, False)}

    out = ws.crust("terminate", "wsgi", "--target", "libvirt")
    assert out.returncode == 0, out.stderr
    assert f"{machine} terminated" in out.stdout
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(machine)
    assert not any(v.startswith(machine) for v in volumes(pool))


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_launch_leaves_no_domain_or_volume(ws: Workspace, pool: Any, sig: str) -> None:
    image = upload_json(ws)["volume"]
    out = ws.crust("launch", "wsgi", "--target", "libvirt", "--ssh-key", str(ws.key), env={"CRUST_FAULT": f"libvirt.launch:{sig}"})
    assert out.returncode != 0 and "fault point libvirt.launch" in out.stderr, out.stderr
    assert "removed domain wsgi-" in out.stderr and "removed volume wsgi-" in out.stderr, out.stderr
    conn = pool.connect()
    assert not [d.name() for d in conn.listAllDomains(0) if d.name().startswith("wsgi-")]
    assert volumes(pool) == {image, image + ".crust.json"}
    out = ws.crust("terminate", "wsgi", "--target", "libvirt")
    assert out.returncode == 2 and "no launched machine of wsgi is recorded" in out.stderr, out.stderr
