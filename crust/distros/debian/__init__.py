"""Debian: mmdebstrap for the base, apt for packages, dpkg's database, InRelease mirror state."""

from __future__ import annotations

from crust.distros import Backend
from crust.distros.debian import apt
from crust.distros.debian.bootstrap import build_base
from crust.distros.debian.dpkg import DpkgDatabase
from crust.distros.debian.mirror import mirror_state

BACKEND = Backend(
    name="apt",
    purl_type="deb",
    bootstrap_tools=("mmdebstrap", "unshare", "mount"),
    install_tools=("bwrap", "cp"),
    mirror_state=mirror_state,
    bootstrap=build_base,
    install=apt.install,
    package_set=apt.package_set,
    database=DpkgDatabase,
    seal=apt.seal,
)
