"""The base step: a distribution tree from mmdebstrap, shared by every appliance on it."""

from __future__ import annotations

from pathlib import Path

from crust.define.distribution import Distribution
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


def write_initramfs_config(distro: Distribution, workdir: Path) -> list[str]:
    """Host files that make the kernel's initramfs small: only the modules to find the root.

    MODULES=most (Debian's default) packs every storage and file system driver (35 MB, and
    seconds of boot under emulation); an appliance needs its root disk's drivers, listed per
    distribution (virtio, NVMe, Xen, Hyper-V, SCSI/ATA for the clouds). They go in through a
    hook (manual_add_modules), not a modules list: initramfs-tools loads every listed module at
    every boot, while udev in the initramfs loads a hook's modules only for the devices found
    (virtio_blk on KVM, nvme on Nitro; under TCG the kernel and initramfs took 4.8 s instead of 5.8 s, 3 boots each). Copied in
    after the essential packages, before the kernel and initramfs-tools are installed.
    """
    if not distro.initramfs_modules:
        return []
    conf = workdir / "etc" / "initramfs-tools"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "conf.d" / "crust.conf").write_text("# Crust: only the modules its hook adds (hooks/crust)\nMODULES=list\n", encoding="utf-8")
    (conf / "hooks").mkdir()
    hook = conf / "hooks" / "crust"
    hook.write_text(
        "#!/bin/sh\n# Crust: the root disk's drivers, loaded by udev for the devices present.\n"
        'case "$1" in prereqs) exit 0 ;; esac\n'
        ". /usr/share/initramfs-tools/hook-functions\n"
        f"manual_add_modules {' '.join(distro.initramfs_modules)}\n",
        encoding="utf-8",
    )
    hook.chmod(0o755)
    return [f"--essential-hook=copy-in {conf} /etc/"]


def mmdebstrap_argv(distro: Distribution, target: Path, sources: Path, hooks: list[str]) -> list[str]:
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=directory",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        '--aptopt=APT::Install-Recommends "false"',
        f"--keyring={distro.keyring}",
        "--include=" + ",".join(distro.base_packages),
        # Keep the package lists: the packages step installs from them without an update.
        # (Sealing removes them from every image.)
        "--skip=cleanup/apt/lists",
    ]
    argv += [f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES]
    # Manual pages are left out, but their sections' directories stay: update-alternatives
    # links a manual page there and fails without them (openjdk's postinst: "error creating
    # symbolic link '/usr/share/man/man1/java.1.gz.dpkg-tmp'"), failing the packages step.
    argv.append("--essential-hook=mkdir -p " + " ".join(f'"$1/usr/share/man/man{n}"' for n in range(1, 9)))
    return [*argv, *hooks, distro.suite, str(target), str(sources)]


def build_base(distro: Distribution, workdir: Path, target: Path) -> None:
    """mmdebstrap in its own mount and PID namespaces: nothing survives an interruption."""
    sources = workdir / "crust.sources"
    sources.write_text(distro.deb822(), encoding="utf-8")
    hooks = write_initramfs_config(distro, workdir)
    run(sandboxed(mmdebstrap_argv(distro, target, sources, hooks)))
