"""The SBOM of a tree: dpkg packages and Python distributions, valid CycloneDX 1.6 JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cyclonedx.validation.json import JsonStrictValidator

from crust.distros.debian.dpkg import DpkgDatabase
from crust.trust.sbom import SCHEMA_VERSION, Subject, build_sbom, find_python_distributions, sbom_json, write_sbom

STATUS = """\
Package: nginx
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 1.26.3-3+deb13u1
Maintainer: Debian Nginx Maintainers <pkg-nginx-maintainers@alioth-lists.debian.net>
Description: small, powerful, scalable web/proxy server
 Nginx ("engine X") is a high-performance web and reverse proxy server.

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.41-12
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>

Package: tzdata
Status: install ok installed
Architecture: all
Version: 1:2025b-4

Package: old-removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""

SUBJECT = Subject("wsgi", "1.0.0", "A WSGI application", "ab" * 32, {"distribution": "debian-13"})
SITE = "opt/wsgi/venv/lib/python3.13/site-packages"


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    write(root, "var/lib/dpkg/status", STATUS)
    write(root, "etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n')
    write(
        root,
        f"{SITE}/gunicorn-23.0.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: gunicorn\nVersion: 23.0.0\nSummary: WSGI HTTP Server for UNIX\n\nlong text\n",
    )
    write(root, f"{SITE}/packaging-25.0.dist-info/METADATA", "Metadata-Version: 2.4\nName: packaging\nVersion: 25.0\n")
    write(root, "srv/other/venv/lib/python3.13/site-packages/packaging-25.0.dist-info/METADATA", "Name: packaging\nVersion: 25.0\n")
    write(root, "usr/lib/python3/dist-packages/python_apt-3.0.0.egg-info", "Metadata-Version: 1.1\nName: python-apt\nVersion: 3.0.0\n")
    write(root, "usr/lib/python3/dist-packages/zstandard-0.23.0.egg-info/PKG-INFO", "Metadata-Version: 2.1\nName: zstandard\nVersion: 0.23.0\n")
    write(root, "usr/lib/python3/dist-packages/apt/__init__.py", "")
    return root


def test_dpkg_status_lists_installed_packages(tree: Path) -> None:
    pkgs = {p.name: p for p in DpkgDatabase(tree).packages}
    assert sorted(pkgs) == ["libc6", "nginx", "tzdata"]
    assert (pkgs["libc6"].source, pkgs["tzdata"].version, pkgs["tzdata"].architecture) == ("glibc", "1:2025b-4", "all")


def test_python_distributions_everywhere(tree: Path) -> None:
    found = [(d.name, d.version, d.location.split("/")[1]) for d in find_python_distributions(tree)]
    assert found == [
        ("gunicorn", "23.0.0", "opt"),
        ("packaging", "25.0", "opt"),
        ("packaging", "25.0", "srv"),
        ("python-apt", "3.0.0", "usr"),
        ("zstandard", "0.23.0", "usr"),
    ]


def test_sbom_validates_and_lists_everything(tree: Path) -> None:
    text = sbom_json(build_sbom(tree, SUBJECT))
    assert JsonStrictValidator(SCHEMA_VERSION).validate_str(text) is None
    doc = json.loads(text)
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
    purls = {c["purl"] for c in doc["components"]}
    assert "pkg:deb/debian/nginx@1.26.3-3%2Bdeb13u1?arch=amd64&distro=debian-13" in purls
    assert "pkg:deb/debian/tzdata@1:2025b-4?arch=all&distro=debian-13" in purls
    assert "pkg:pypi/gunicorn@23.0.0" in purls
    assert "pkg:pypi/python-apt@3.0.0" in purls
    versions = {(c["name"], c["version"]) for c in doc["components"]}
    assert {("nginx", "1.26.3-3+deb13u1"), ("gunicorn", "23.0.0"), ("zstandard", "0.23.0")} <= versions
    assert len(doc["components"]) == 3 + 5  # the same packaging in two venvs: two components
    subject = doc["metadata"]["component"]
    assert (subject["name"], subject["version"]) == ("wsgi", "1.0.0")
    assert subject["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert {"name": "crust:image:sha256", "value": "ab" * 32} in subject["properties"]
    [root_deps] = [d for d in doc["dependencies"] if d["ref"] == subject["bom-ref"]]
    assert len(root_deps["dependsOn"]) == 8


def test_same_image_same_serial(tree: Path) -> None:
    first = json.loads(sbom_json(build_sbom(tree, SUBJECT)))
    second = json.loads(sbom_json(build_sbom(tree, SUBJECT)))
    assert first["serialNumber"] == second["serialNumber"]


def test_write_sbom_counts(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    assert write_sbom(tree, SUBJECT, out) == {"deb_packages": 3, "python_distributions": 5}
    assert json.loads(out.read_text())["metadata"]["component"]["name"] == "wsgi"


def test_empty_tree(tmp_path: Path) -> None:
    text = sbom_json(build_sbom(tmp_path, SUBJECT))
    assert JsonStrictValidator(SCHEMA_VERSION).validate_str(text) is None
    assert json.loads(text).get("components", []) == []


def test_the_sbom_is_the_same_bytes_and_dated_by_the_epoch(tree: Path, tmp_path: Path) -> None:
    subject = dataclasses.replace(SUBJECT, epoch=1762595483)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_sbom(tree, subject, first)
    write_sbom(tree, subject, second)
    assert first.read_bytes() == second.read_bytes()
    data = json.loads(first.read_text())
    assert data["metadata"]["timestamp"].startswith("2025-11-08T09:51:23")
