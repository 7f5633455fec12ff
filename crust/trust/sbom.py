"""The software bill of materials of an image, in CycloneDX JSON, written by cyclonedx-python-lib.

Components: every Debian package dpkg lists as installed in the tree (pkg:deb purls with the
architecture and the distribution, e.g. ``pkg:deb/debian/nginx@1.26.3-3?arch=amd64&distro=debian-13``)
and every Python distribution installed anywhere in it (``*.dist-info`` and ``*.egg-info`` in any
site-packages or dist-packages directory: the system's and the applications' venvs), with
pkg:pypi purls. The BOM's subject (metadata.component) is the appliance, with the sha256 of the
raw disk image as its hash: the SBOM says what is inside that exact image.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

from crust import __version__
from crust.distros import Package, PackageDatabase, database_of
from crust.tree.paths import inside

SCHEMA_VERSION = SchemaVersion.V1_6
SITE_DIRS = ("site-packages", "dist-packages")
NOT_WALKED = ("proc", "sys", "dev")
SERIAL_NAMESPACE = uuid.UUID("2b0c3f7e-58a4-4d7a-9f34-6f1e1c7d3a90")


@dataclass(frozen=True)
class PythonDistribution:
    name: str
    version: str
    summary: str
    location: str  # the metadata directory in the image: ".../site-packages/gunicorn-23.0.0.dist-info"


@dataclass(frozen=True)
class Subject:
    """What the SBOM describes: the appliance and its image."""

    name: str
    version: str
    description: str
    image_sha256: str
    properties: Mapping[str, str] = field(default_factory=dict)  # e.g. build id, distribution
    epoch: int = 0  # the build's SOURCE_DATE_EPOCH: the SBOM's timestamp (never the clock)


def os_release(root: Path) -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        target = inside(root, path, follow=True)
        if target.is_file() and target.is_relative_to(root.resolve()):
            values = {}
            for line in target.read_text(encoding="utf-8", errors="replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    values[key.strip()] = value.strip().strip("\"'")
            return values
    return {}


def distro_qualifier(root: Path) -> str:
    """purl's distro qualifier: "debian-13" (or the codename when there is no version)."""
    release = os_release(root)
    name = release.get("ID", "debian")
    version = release.get("VERSION_ID") or release.get("VERSION_CODENAME", "")
    return f"{name}-{version}" if version else name


def find_python_distributions(root: Path) -> list[PythonDistribution]:
    """Every *.dist-info / *.egg-info in any site-packages or dist-packages directory."""
    found = []
    for site in site_dirs(root):
        for meta in sorted(site.iterdir()):
            dist = read_distribution(root, meta)
            if dist is not None:
                found.append(dist)
    return sorted(found, key=lambda d: (d.name.lower(), d.version, d.location))


def site_dirs(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, _files in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d not in NOT_WALKED]
        for name in dirnames:
            if name in SITE_DIRS and not os.path.islink(os.path.join(dirpath, name)):
                yield Path(dirpath, name)


def read_distribution(root: Path, meta: Path) -> PythonDistribution | None:
    """A distribution from its metadata: dist-info/METADATA, egg-info/PKG-INFO, or an
    egg-info file (the metadata itself)."""
    if meta.name.endswith(".dist-info"):
        source = meta / "METADATA"
    elif meta.name.endswith(".egg-info"):
        source = meta / "PKG-INFO" if meta.is_dir() else meta
    else:
        return None
    if not source.is_file():
        return None
    headers = HeaderParser().parsestr(source.read_text(encoding="utf-8", errors="replace"), headersonly=True)
    stem = meta.name.rsplit(".", 1)[0]
    name = headers.get("Name") or stem.split("-", 1)[0]
    version = headers.get("Version") or (stem.split("-", 2)[1] if "-" in stem else "")
    location = "/" + str(meta.relative_to(root))
    return PythonDistribution(str(name), str(version), str(headers.get("Summary") or ""), location)


def deb_component(pkg: Package, distro: str) -> Component:
    purl = PackageURL(type="deb", namespace="debian", name=pkg.name, version=pkg.version, qualifiers={"arch": pkg.architecture, "distro": distro})
    properties = [Property(name="crust:package-type", value="deb")]
    if pkg.source and pkg.source != pkg.name:
        properties.append(Property(name="crust:deb:source", value=pkg.source))  # what Debian's security tracker lists
    return Component(
        type=ComponentType.LIBRARY,  # as other SBOM tools mark packages: CycloneDX has no "package" type
        name=pkg.name,
        version=pkg.version,
        purl=purl,
        bom_ref=purl.to_string(),
        publisher=pkg.maintainer or None,
        properties=properties,
    )


def python_component(dist: PythonDistribution) -> Component:
    purl = PackageURL(type="pypi", name=re.sub(r"[-_.]+", "-", dist.name).lower(), version=dist.version)
    return Component(
        type=ComponentType.LIBRARY,
        name=dist.name,
        version=dist.version,
        description=dist.summary or None,
        purl=purl,
        bom_ref=f"{purl.to_string()}#{dist.location}",  # a distribution can be in several venvs
        properties=[Property(name="crust:package-type", value="python"), Property(name="crust:location", value=dist.location)],
    )


def build_sbom(root: Path, subject: Subject, database: PackageDatabase | None = None) -> Bom:
    """The BOM of the tree at root (the image's content), for subject; database is the tree's
    package database (found from the tree when None)."""
    distro = distro_qualifier(root)
    components = [deb_component(p, distro) for p in (database or database_of(root)).packages]
    components += [python_component(d) for d in find_python_distributions(root)]
    appliance = Component(
        type=ComponentType.APPLICATION,
        name=subject.name,
        version=subject.version,
        description=subject.description or None,
        bom_ref=f"appliance:{subject.name}@{subject.version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=subject.image_sha256)],
        properties=[
            Property(name="crust:image:sha256", value=subject.image_sha256),
            *(Property(name=f"crust:{k}", value=v) for k, v in sorted(subject.properties.items())),
        ],
    )
    metadata = BomMetaData(component=appliance, timestamp=dt.datetime.fromtimestamp(subject.epoch, dt.UTC))
    metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="crust", version=__version__))
    bom = Bom(
        components=components,
        metadata=metadata,
        serial_number=uuid.uuid5(SERIAL_NAMESPACE, f"{subject.name}/{subject.image_sha256}"),
    )
    bom.register_dependency(appliance, components)
    return bom


def sbom_json(bom: Bom) -> str:
    """CycloneDX 1.6 JSON, as the library serializes it."""
    return JsonV1Dot6(bom).output_as_string(indent=2)


def write_sbom(root: Path, subject: Subject, out: Path, database: PackageDatabase | None = None) -> dict[str, int]:
    """Write the tree's SBOM to out; return counts for the manifest."""
    bom = build_sbom(root, subject, database)
    out.write_text(sbom_json(bom) + "\n", encoding="utf-8")
    kinds = [p.value for c in bom.components for p in c.properties if p.name == "crust:package-type"]
    return {"deb_packages": kinds.count("deb"), "python_distributions": kinds.count("python")}
