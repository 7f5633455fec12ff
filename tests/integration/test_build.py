"""The build pipeline for real: mmdebstrap, Ansible, assembly, and a boot under qemu."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crust.tree.sandbox import in_sandbox
from tests.conftest import ROOT, build_py, need_tool
from tests.integration.conftest import store_entry
from tests.integration.qemu import booted, wait_http

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize(("name", "distribution"), [("wsgi", "debian-13"), ("wsgi-debian12", "debian-12")])
def test_manifest_describes_the_artifacts(built: Built, name: str, distribution: str) -> None:
    manifest = built(name)
    assert manifest["distribution"] == distribution
    assert [s["kind"] for s in manifest["steps"]] == ["base", "packages", "role", "role", "role", "tree", "image", "convert"]
    assert [s["name"] for s in manifest["steps"] if s["kind"] == "role"] == [f"{name}+{role}" for role in ("common", "cloud_init", "wsgi")]
    formats = {a["format"]: a for a in manifest["artifacts"]}
    assert set(formats) == {"raw", "qcow2"}
    for artifact in formats.values():
        path = Path(artifact["path"])
        assert path.parent == ROOT / "build" / name
        assert path.stat().st_size == artifact["size"]
        assert sha256(path) == artifact["sha256"]
    assert "nginx" in manifest["packages"] and "linux-image-cloud-amd64" in manifest["packages"]
    assert re.fullmatch(r"[0-9a-f]{12}", manifest["build_id"])
    assert all(s["duration_s"] > 0 for s in manifest["steps"])
    assert manifest["kernel_cmdline"].endswith("console=ttyS0,115200")


@pytest.mark.parametrize("name", ["wsgi", "wsgi-debian12", "turbogears2"])
def test_tree_is_sealed(built: Built, name: str) -> None:
    manifest = built(name)
    tree = store_entry("tree", next(s["id"] for s in manifest["steps"] if s["kind"] == "tree")) / "tree"
    shadow = {line.split(":")[0]: line.split(":")[1] for line in (tree / "etc/shadow").read_text().splitlines()}
    assert shadow["root"].startswith(("!", "*")), "root must be locked"
    assert all(h.startswith(("!", "*")) for h in shadow.values()), "no account may have a password"
    assert not list((tree / "etc/ssh").glob("ssh_host_*"))
    assert (tree / "etc/machine-id").read_text() == ""
    assert not (tree / "usr/sbin/policy-rc.d").exists()
    assert [p.name for p in (tree / "var/lib/apt/lists").iterdir() if p.name not in ("partial", "lock")] == []
    assert not list((tree / "var/cache/apt").glob("*.bin"))
    assert not list((tree / "var/log").rglob("*.log"))
    assert not (tree / "root/.ansible").exists() and not (tree / "var/tmp/crust-wheels").exists()
    assert list((tree / "tmp").iterdir()) == []
    release = (tree / "etc/crust-release").read_text()
    assert f"APPLIANCE={name}\n" in release and f"BUILD_ID={manifest['build_id']}\n" in release
    assert (tree / "etc/systemd/system/multi-user.target.wants/wsgi.service").is_symlink()
    assert (tree / "etc/systemd/system/multi-user.target.wants/crust-ssh-keygen.service").is_symlink()
    assert (tree / "opt/wsgi/venv/bin/gunicorn").exists()
    assert (tree / "etc/motd").read_text().startswith("Crust appliance")
    # No private key of any kind is baked in (TLS snakeoil keys included).
    private = tree / "etc/ssl/private"
    assert not private.exists() or not list(private.iterdir())
    # Database credentials are made at first boot, never at build time.
    assert not (tree / "etc/crust-tg2/database.env").exists()
    # Built by a caller with umask 077 (the shared builds are): what Crust, its commands and the
    # roles made is still readable by the image's services (was 0700/0600 before issue 13).
    for path, mode in [
        ("opt/wsgi", 0o755),
        ("opt/wsgi/venv/bin", 0o755),
        ("etc/systemd/journald.conf.d", 0o755),
        ("etc/initramfs-tools/conf.d/crust.conf", 0o644),
    ]:
        assert (tree / path).stat().st_mode & 0o777 == mode, path
    # (Directories only: a role may make a root-only file on purpose, turbogears2's setup script.)
    private = [
        p
        for top in ("opt", "usr", "etc/systemd")
        for p in (tree / top).rglob("*")
        if p.is_dir() and not p.is_symlink() and p.stat().st_mode & 0o005 != 0o005
    ]
    assert private == []


@pytest.mark.parametrize("name", ["wsgi", "wsgi-debian12"])
def test_boot_work_no_appliance_needs_is_left_out(built: Built, name: str) -> None:
    """The root disk's drivers are in the initramfs but not in a list it loads at every boot
    (udev loads what the devices need); the distribution's masked units are masked."""
    manifest = built(name)
    tree = store_entry("tree", next(s["id"] for s in manifest["steps"] if s["kind"] == "tree")) / "tree"
    initrd = "/boot/" + next((tree / "boot").glob("initrd.img-*")).name
    listing = subprocess.run(in_sandbox(tree, ["lsinitramfs", initrd], read_only=True), capture_output=True, text=True, check=True).stdout
    assert re.search(r"/virtio_blk\.ko", listing) and re.search(r"/xen-blkfront\.ko", listing), listing[-2000:]
    # conf/modules lists what the initramfs's init loads whatever the hardware: nothing.
    unpack = 'd=$(mktemp -d) && unmkinitramfs "$1" $d && cat $d/conf/modules $d/main/conf/modules 2>/dev/null || true'
    loaded = subprocess.run(in_sandbox(tree, ["sh", "-c", unpack, "sh", initrd], read_only=True), capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "", loaded.stdout
    for unit in ("modprobe@drm.service", "sys-kernel-debug.mount", "kmod-static-nodes.service"):
        assert os.readlink(tree / "etc/systemd/system" / unit) == "/dev/null", unit


def test_every_entry_still_holds_what_its_step_made(built: Built) -> None:
    """Issue 21: the tree step links the packages tree's files instead of copying them, and role
    steps mount it under overlayfs. Nothing may write a stored file through such a link: each
    tree entry of wsgi's build (base, packages, the role layers, the tree) still digests to the
    output its step recorded. (Not the image and qcow2: libvirt's DAC driver chowns a smoke
    boot's backing qcow2 to libvirt-qemu, through the published link, and leaves it so.)"""
    from crust.build.equivalence import digest_output

    manifest = built("wsgi")
    for step in (s for s in manifest["steps"] if s["kind"] in ("base", "packages", "role", "tree")):
        entry = store_entry(step["kind"], step["id"])
        recorded = json.loads((entry / "step.json").read_text())["output_digest"]
        assert digest_output(entry) == recorded, f"{step['kind']} {step['name']}: its entry changed after its commit"


def test_without_overlayfs_the_same_image(built: Built, tmp_path: Path) -> None:
    """Where overlayfs cannot be mounted (CRUST_OVERLAY=0 takes that path on any host), role
    layers come from comparing whole copies and the tree step copies the packages tree: the
    same steps make the same image, bit for bit. A store holding wsgi's base and packages
    entries (linked: entries are never written) and the main store's state."""
    import subprocess

    manifest = built("wsgi")
    store = tmp_path / "store"
    (store / "steps").mkdir(parents=True)
    for step in manifest["steps"]:
        if step["kind"] in ("base", "packages"):
            subprocess.run(["cp", "-al", str(store_entry(step["kind"], step["id"])), str(store / "steps")], check=True)
    subprocess.run(["cp", "-a", str(ROOT / ".crust" / "state"), str(store / "state")], check=True)
    out_dir = tmp_path / "out"
    out = build_py("--store", str(store), "--output", str(out_dir), "build", "wsgi", env={"CRUST_OVERLAY": "0"})
    assert out.returncode == 0, out.stderr[-3000:]
    again = json.loads((out_dir / "wsgi" / "manifest.json").read_text())
    assert [(s["kind"], s["id"]) for s in again["steps"]] == [(s["kind"], s["id"]) for s in manifest["steps"]]
    assert [s["reused"] for s in again["steps"]] == [s["kind"] in ("base", "packages") for s in again["steps"]]
    for step in again["steps"]:
        phases = [
            name
            for name, _ in json.loads((store / "steps" / f"{step['kind']}-{step['id']}" / "step.json").read_text())["outputs"].get("phases_s", [])
        ]
        if step["kind"] == "role":
            assert "copy the view" in phases and "compare into a layer" in phases, phases
        if step["kind"] == "tree":
            assert "copy the packages tree" in phases, phases
    assert {a["format"]: a["sha256"] for a in again["artifacts"]} == {a["format"]: a["sha256"] for a in manifest["artifacts"]}


def test_roles_modules_run_forked_from_the_module_server(built: Built) -> None:
    """Issue 21: a fresh interpreter per Ansible module spends most of its time importing
    module_utils. crust/tree/ansible_boot.py keeps their compiled code, and its module server
    imports ansible.module_utils.basic once per playbook and forks each module run from there."""
    manifest = built("wsgi")
    role_id = next(s["id"] for s in manifest["steps"] if s["name"] == "wsgi+wsgi")  # the role with the most tasks
    log = (ROOT / ".crust" / "logs" / f"role-{role_id}.log").read_text()
    found = re.search(
        r"crust: ansible module imports: (\d+) served compiled, (\d+) compiled; "
        r"module runs: (\d+) forked with the server's imports, (\d+) forked with their own, (\d+) alone",
        log,
    )
    assert found is not None, "the role step's log has no module report"
    served, compiled, forked, own, alone = (int(g) for g in found.groups())
    assert served > 0 and compiled > 0
    assert forked >= 10 and (own, alone) == (0, 0), found.group(0)


def test_wsgi_boots_and_serves_its_page(built: Built, tmp_path: Path) -> None:
    """Issue 2: the qcow2 boots under plain qemu (TCG, OVMF) and answers on a forwarded port."""
    need_tool("qemu-system-x86_64")
    manifest = built("wsgi")
    qcow2 = ROOT / "build" / "wsgi" / "wsgi.qcow2"
    with booted(qcow2, tmp_path, 80) as (port, serial):
        seconds, status, body = wait_http(port, "/", 240, serial)
        assert status == 200
        assert "Crust WSGI appliance" in body and manifest["build_id"] in body
        _, status, body = wait_http(port, "/healthz", 30, serial)
        assert (status, body) == (200, "ok\n")
    print(f"qemu start to HTTP 200: {seconds:.1f}s")


def test_rebuild_is_a_no_op(built: Built) -> None:
    before = built("wsgi")
    out = build_py("build", "wsgi")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("up to date") == len(before["steps"]) == 8, out.stderr  # base, packages, 3 roles, tree, image, qcow2
    after = json.loads((ROOT / "build" / "wsgi" / "manifest.json").read_text())
    assert [s["id"] for s in after["steps"]] == [s["id"] for s in before["steps"]]
    assert all(s["reused"] for s in after["steps"])
