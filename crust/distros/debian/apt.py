"""apt in a tree: the packages step's sources, pins, installs and exclusions, and what sealing
removes of apt (lists, caches, build-only sources, the service guard)."""

from __future__ import annotations

from pathlib import Path

from crust.define.distribution import Distribution
from crust.define.kickstart import KickstartConfig, Repo
from crust.errors import CommandError
from crust.log import log_line
from crust.tree.files import clear_dir, in_tree, remove, write_file
from crust.tree.paths import inside

POLICY_RC_D = "/usr/sbin/policy-rc.d"
MMDEBSTRAP_OPTIONS = "/etc/apt/apt.conf.d/99mmdebstrap"  # the --aptopt options of the build
CRUST_SOURCES = "/etc/apt/sources.list.d/crust-{suite}.sources"
CRUST_PREFS = "/etc/apt/preferences.d/crust-{suite}.pref"
HOST_RESOLV = Path("/etc/resolv.conf")
APT = ("apt-get", "-o", "Acquire::Check-Valid-Until=false", "-o", "APT::Install-Recommends=false", "-o", "Dpkg::Use-Pty=0")


def guard_services(tree: Path) -> None:
    """policy-rc.d: packages must not start services in the tree during the build."""
    write_file(tree, POLICY_RC_D, "#!/bin/sh\n# Crust build guard: no service starts in the tree.\nexit 101\n", 0o755)


def use_host_resolver(tree: Path) -> None:
    """Give the chroot the host's DNS for the build (seal puts the image's own back)."""
    content = HOST_RESOLV.read_text(encoding="utf-8") if HOST_RESOLV.exists() else ""
    write_file(tree, "/etc/resolv.conf", content)


def implied_packages(ks: KickstartConfig) -> tuple[str, ...]:
    """Packages that a kickstart setting needs (a locale needs `locales`, a zone needs tzdata)."""
    extra = ["tzdata"]
    if ks.lang not in ("C", "C.UTF-8", "POSIX"):
        extra.append("locales")
    return tuple(p for p in extra if p not in ks.excluded)


def package_set(ks: KickstartConfig, distro: Distribution) -> list[str]:
    """What the packages step installs: %packages, what settings imply, the grow tools."""
    extra = [*implied_packages(ks), *(distro.grow_packages if ks.root_grow else ())]
    return [*ks.packages, *[p for p in extra if p not in ks.packages]]


def write_repos(tree: Path, repos: tuple[Repo, ...], keyring: str) -> None:
    for repo in repos:
        write_file(
            tree,
            CRUST_SOURCES.format(suite=repo.suite),
            f"Types: deb\nURIs: {repo.uri}\nSuites: {repo.suite}\nComponents: {' '.join(repo.components)}\nSigned-By: {keyring}\n",
        )
        stanzas = []
        if repo.pinned:
            stanzas.append(f"Package: {' '.join(repo.pinned)}\nPin: release n={repo.suite}\nPin-Priority: 990\n")
        if repo.excluded:
            stanzas.append(f"Package: {' '.join(repo.excluded)}\nPin: release n={repo.suite}\nPin-Priority: -1\n")
        if stanzas:
            write_file(tree, CRUST_PREFS.format(suite=repo.suite), "\n".join(stanzas))


def install_packages(tree: Path, ks: KickstartConfig, packages: list[str], installed: set[str]) -> None:
    """apt-get install the package set (pinned ones from their repo) and remove exclusions.

    The base tree keeps the package lists it was built with (its id includes the mirror
    state they came from), so no update is needed unless an extra repo is added or the
    mirror has dropped a file since (then apt updates and tries again).
    """
    pinned = {name: repo.suite for repo in ks.repos for name in repo.pinned}
    wanted = [f"{p}/{pinned[p]}" if p in pinned and "/" not in p and "=" not in p else p for p in packages]
    have_lists = any(inside(tree, "/var/lib/apt/lists", follow=True).glob("*_InRelease"))
    if ks.repos or not have_lists:
        in_tree(tree, [*APT, "update", "-q"], network=True)
    removals = [f"{p}-" for p in ks.excluded if p in installed]
    if wanted or removals:
        try:
            in_tree(tree, [*APT, "install", "-y", "-q", *wanted, *removals], network=True)
        except CommandError:
            log_line("# apt-get install failed with the base's package lists: updating them and trying again")
            in_tree(tree, [*APT, "update", "-q"], network=True)
            in_tree(tree, [*APT, "install", "-y", "-q", *wanted, *removals], network=True)
    in_tree(tree, [*APT, "clean"])


def install(tree: Path, ks: KickstartConfig, distro: Distribution) -> None:
    """The packages step on a copy of the base tree: guards, sources, the package set."""
    from crust.distros.debian.dpkg import DpkgDatabase

    guard_services(tree)
    use_host_resolver(tree)
    write_repos(tree, ks.repos, distro.keyring)
    install_packages(tree, ks, package_set(ks, distro), set(DpkgDatabase(tree).installed()))


def remove_build_repos(tree: Path, ks: KickstartConfig) -> None:
    for repo in ks.repos:
        if not repo.keep:
            remove(tree, CRUST_SOURCES.format(suite=repo.suite))
            remove(tree, CRUST_PREFS.format(suite=repo.suite))


def clean_apt(tree: Path) -> None:
    clear_dir(tree, "/var/lib/apt/lists", keep=("partial", "lock"))
    clear_dir(tree, "/var/lib/apt/lists/partial")
    clear_dir(tree, "/var/cache/apt", keep=("archives",))
    clear_dir(tree, "/var/cache/apt/archives", keep=("partial", "lock"))
    clear_dir(tree, "/var/cache/apt/archives/partial")
    for folder in ("/var/cache/debconf", "/var/lib/dpkg"):
        for old in inside(tree, folder, follow=True).glob("*-old"):
            old.unlink()


def seal(tree: Path, ks: KickstartConfig) -> None:
    """What the build left of apt in the tree: the service guard, build-only sources, the
    build's apt options (mmdebstrap's Check-Valid-Until "false" must not ship), lists, caches."""
    remove(tree, POLICY_RC_D)
    remove(tree, MMDEBSTRAP_OPTIONS)
    remove_build_repos(tree, ks)
    clean_apt(tree)
