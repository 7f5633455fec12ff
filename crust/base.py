"""The base step: a distribution tree from mmdebstrap, shared by every appliance on it."""

from __future__ import annotations

from pathlib import Path

from crust.distro import Distribution
from crust.runner import run, sandboxed

# Documentation, manual pages and translations are left out of every image (copyright files
# stay). This is dpkg configuration, so it also applies to packages installed later.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
)


def mmdebstrap_argv(distro: Distribution, target: Path, sources: Path) -> list[str]:
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=directory",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        '--aptopt=APT::Install-Recommends "false"',
        f"--keyring={distro.keyring}",
        "--include=" + ",".join(distro.base_packages),
    ]
    argv += [f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES]
    return [*argv, distro.suite, str(target), str(sources)]


def build_base(distro: Distribution, workdir: Path, target: Path) -> None:
    """mmdebstrap in its own mount and PID namespaces: nothing survives an interruption."""
    sources = workdir / "crust.sources"
    sources.write_text(distro.deb822(), encoding="utf-8")
    run(sandboxed(mmdebstrap_argv(distro, target, sources)))
