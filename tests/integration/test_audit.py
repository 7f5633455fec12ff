"""The audit of real images (read with debugfs: no boot, no mount) and the SBOM of a real build.

Faults are planted one at a time into a sparse copy of the built wsgi image, straight into its
ext4 root with `debugfs -w`, and `build.py audit --image COPY wsgi` must fail naming each.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.validation.json import JsonStrictValidator

from crust.disk.imagefs import check_copy, extracted_root, root_partition
from crust.trust.audit import AuditPolicy, audit_image
from crust.trust.sbom import SCHEMA_VERSION
from tests.conftest import ROOT, build_py, need_tool
from tests.unit.test_audit import AWS_KEY_ID, GITHUB_TOKEN, make_clean_tree, pem

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"


def need_image_tools() -> None:
    for tool in ("sfdisk", "mkfs.ext4", "debugfs"):
        need_tool(tool)


def debugfs_source(image: Path) -> str:
    return f"{image}?offset={root_partition(image).offset}"


def debugfs(image: Path, commands: list[str], write: bool = False) -> None:
    """Run debugfs commands on the image's root file system; fail on any error it reports."""
    out = subprocess.run(
        ["debugfs", *(["-w"] if write else []), "-f", "-", debugfs_source(image)],
        input="\n".join(commands) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    errors = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("debugfs 1.")]
    assert not errors, errors


def cat(image: Path, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"cat {path}", debugfs_source(image)], capture_output=True, text=True, check=True).stdout


def make_image(tree: Path, image: Path) -> None:
    """A GPT disk with an ext4 root partition made from tree, as Crust assembles images."""
    size_mib = 64
    with open(image, "wb") as fh:
        fh.truncate((size_mib + 2) * 1024 * 1024)
    table = f"label: gpt\nstart=2048, size={size_mib * 2048}, type={ROOT_TYPE}, name=root\n"
    subprocess.run(["sfdisk", "--quiet", str(image)], input=table, text=True, check=True, capture_output=True)
    offset = 2048 * 512
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", f"offset={offset}", "-d", str(tree), str(image), f"{size_mib}M"], check=True, capture_output=True)


def test_small_image_is_read_with_its_modes(tmp_path: Path) -> None:
    need_image_tools()
    tree = make_clean_tree(tmp_path / "tree")
    image = tmp_path / "disk.raw"
    make_image(tree, image)
    work = tmp_path / "work"
    with extracted_root(image, work) as root:
        assert (root / "usr/bin/su").stat().st_mode & 0o7777 == 0o4755  # rdump alone loses the setuid bit
        assert (root / "usr/lib/dbus-1.0/dbus-daemon-launch-helper").stat().st_mode & 0o7777 == 0o4754
        assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
        assert (root / "bin").is_symlink()
    assert list(work.iterdir()) == []  # removed afterwards
    assert audit_image(image, AuditPolicy(), work) == []


def test_an_incomplete_copy_is_noticed(tmp_path: Path) -> None:
    need_image_tools()
    image = tmp_path / "disk.raw"
    make_image(make_clean_tree(tmp_path / "tree"), image)
    copy = tmp_path / "copy"
    copy.mkdir()
    source = debugfs_source(image)
    subprocess.run(["debugfs", "-R", f"rdump / {copy}", source], check=True, capture_output=True)
    assert check_copy(source, copy) == []
    (copy / "etc/passwd").unlink()
    (copy / "etc/shadow").write_text("root:")
    assert sorted(check_copy(source, copy)) == ["/etc/passwd", "/etc/shadow"]


def test_small_image_with_faults(tmp_path: Path) -> None:
    need_image_tools()
    tree = make_clean_tree(tmp_path / "tree")
    (tree / "usr/local/bin").mkdir(parents=True)
    (tree / "usr/local/bin/rootshell").write_text("sh")
    os.chmod(tree / "usr/local/bin/rootshell", 0o4755)
    (tree / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    image = tmp_path / "disk.raw"
    make_image(tree, image)
    findings = audit_image(image, AuditPolicy(), tmp_path / "work")
    assert [(f.rule, f.path) for f in findings] == [("machine-id", "/etc/machine-id"), ("setuid", "/usr/local/bin/rootshell")]


def test_bad_images_are_user_errors(tmp_path: Path) -> None:
    need_image_tools()
    blank = tmp_path / "blank.raw"
    blank.write_bytes(b"\0" * 1024 * 1024)
    out = build_py("audit", "--image", str(blank))
    assert out.returncode == 2, out.stderr
    assert "not a raw disk image with a partition table" in out.stderr
    out = build_py("audit", "--image", str(tmp_path / "missing.raw"))
    assert (out.returncode, "no such image file" in out.stderr) == (2, True)


# ---- the built wsgi appliance -------------------------------------------------------------


@pytest.fixture(scope="module")
def wsgi(built: Built) -> dict[str, Any]:
    need_image_tools()
    return built("wsgi")


def raw_image(manifest: dict[str, Any]) -> Path:
    return Path(next(a["path"] for a in manifest["artifacts"] if a["format"] == "raw"))


def test_built_image_passes_its_audit(wsgi: dict[str, Any]) -> None:
    assert wsgi["audit"] == {"passed": True, "findings": []}
    out = build_py("audit", "wsgi")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed" in out.stdout
    assert not list((ROOT / ".crust/tmp").glob("audit-*"))


def test_built_image_has_a_valid_sbom(wsgi: dict[str, Any]) -> None:
    sbom = Path(wsgi["sbom"]["path"])
    assert sbom == ROOT / "build/wsgi/wsgi.cdx.json"
    text = sbom.read_text()
    assert JsonStrictValidator(SCHEMA_VERSION).validate_str(text) is None
    doc = json.loads(text)
    raw_sha256 = next(a["sha256"] for a in wsgi["artifacts"] if a["format"] == "raw")
    assert doc["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": raw_sha256}]
    versions = {c["name"]: c.get("version") for c in doc["components"]}
    assert versions["nginx"] and versions["gunicorn"]  # a Debian package, and the app venv's distribution
    purls = {c["purl"] for c in doc["components"]}
    assert any(p.startswith("pkg:deb/debian/nginx@") and "distro=debian-13" in p for p in purls)
    assert any(p.startswith("pkg:pypi/gunicorn@") for p in purls)
    debs = {c["name"]: c["version"] for c in doc["components"] if c["purl"].startswith("pkg:deb/")}
    assert debs == wsgi["packages"]  # every installed package, at the version dpkg-query reports
    assert wsgi["sbom"]["deb_packages"] == len(debs)


def put(tmp_path: Path, text: str, path: str, mode: str = "") -> list[str]:
    """debugfs commands that write a new file (text) at path in the image, with mode."""
    local = tmp_path / f"planted-{len(list(tmp_path.glob('planted-*')))}"
    local.write_text(text)
    return [f"write {local} {path}", *([f"sif {path} mode {mode}"] if mode else [])]


def replace(tmp_path: Path, image: Path, path: str, edit: Callable[[str], str], mode: str) -> list[str]:
    """debugfs commands that replace a file of the image with an edited copy."""
    return [f"rm {path}", *put(tmp_path, edit(cat(image, path)), path, mode)]


def unlock_root(shadow: str) -> str:
    lines = [("root:$6$planted$hash:" + line.split(":", 2)[2]) if line.startswith("root:") else line for line in shadow.splitlines()]
    return "\n".join(lines) + "\n"


def add_match_block(config: str) -> str:
    return config + "Match User admin\n    PasswordAuthentication yes\n"


# (case, debugfs commands that plant the fault, words of the one finding the audit prints)
FAULTS: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    ("root unlocked", lambda t, i: replace(t, i, "/etc/shadow", unlock_root, "0100640"), "accounts: /etc/shadow: root is not locked"),
    ("host key", lambda t, i: put(t, "key\n", "/etc/ssh/ssh_host_ed25519_key", "0100600"), "host-keys: /etc/ssh/ssh_host_ed25519_key"),
    ("tls private key", lambda t, i: put(t, pem("PRIVATE KEY"), "/etc/ssl/private/server.key"), "secrets: /etc/ssl/private/server.key: private key"),
    ("aws key", lambda t, i: put(t, f"KEY={AWS_KEY_ID}\n", "/etc/app.env"), "secrets: /etc/app.env: AWS access key id"),
    ("github token", lambda t, i: put(t, f"{GITHUB_TOKEN}\n", "/srv/token"), "secrets: /srv/token: GitHub token"),
    ("machine-id", lambda t, i: ["rm /etc/machine-id", *put(t, "ab" * 16 + "\n", "/etc/machine-id")], "machine-id: /etc/machine-id"),
    (
        "password logins",
        lambda t, i: put(t, "PasswordAuthentication yes\n", "/etc/ssh/sshd_config.d/10-local.conf"),
        "sshd: /etc/ssh/sshd_config.d/10-local.conf: PasswordAuthentication yes",
    ),
    (
        "password logins in a match block",
        lambda t, i: replace(t, i, "/etc/ssh/sshd_config", add_match_block, "0100644"),
        "PasswordAuthentication yes in `Match User admin`",
    ),
    ("world-writable file", lambda t, i: put(t, "x\n", "/etc/app.conf", "0100666"), "world-writable: /etc/app.conf"),
    ("setuid file", lambda t, i: put(t, "#!/bin/sh\n", "/usr/local/bin/rootsh", "0104755"), "setuid: /usr/local/bin/rootsh"),
]


@pytest.fixture
def image_copy(wsgi: dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "copy.raw"
    subprocess.run(["cp", "--sparse=always", str(raw_image(wsgi)), str(copy)], check=True)
    try:
        yield copy
    finally:
        copy.unlink()  # a GiB (sparse) each: do not leave them for pytest's kept tmp dirs


@pytest.mark.parametrize(("plant", "words"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_planted_fault_fails_the_audit(image_copy: Path, tmp_path: Path, plant: Callable[[Path, Path], list[str]], words: str) -> None:
    debugfs(image_copy, plant(tmp_path, image_copy), write=True)
    out = build_py("audit", "--image", str(image_copy), "wsgi")
    assert out.returncode == 1, out.stdout + out.stderr
    assert words in out.stdout, out.stdout
    assert "FAILED, 1 finding " in out.stdout, out.stdout  # the planted fault, nothing else
