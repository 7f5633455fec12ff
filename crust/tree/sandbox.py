"""The build sandbox: every command that works inside a tree runs in bubblewrap, with the tree
as its root and no way back to the host (as osbuild runs its stages).

- the tree is bound at / (pivot_root: nothing of the host's file system is reachable; in the
  new PID namespace /proc/1/root is the tree);
- a minimal /dev (null, zero, random, urandom, tty, pts, shm), its own /proc, an empty /run
  (tmpfs);
- its own IPC, UTS (host name crust-build), cgroup and PID namespaces, and network namespace
  (loopback only) unless the step fetches from the mirror (the packages step's apt);
- host directories only as given, read-only unless said otherwise (the wheel cache is read-only);
- root without the capabilities that reach beyond the tree: no mounts, modules, raw I/O,
  ptrace, reboot, clock, network administration or device nodes;
- it dies with Crust (--die-with-parent).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

DROPPED_CAPS = (
    "CAP_SYS_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_BOOT",
    "CAP_SYS_TIME",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_TTY_CONFIG",
    "CAP_NET_ADMIN",
    "CAP_MKNOD",
    "CAP_SYSLOG",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_AUDIT_CONTROL",
    "CAP_LINUX_IMMUTABLE",
    "CAP_BLOCK_SUSPEND",
    "CAP_WAKE_ALARM",
)
HOSTNAME = "crust-build"


def bwrap_options(*, network: bool = False, ro_binds: Sequence[tuple[Path, str]] = (), binds: Sequence[tuple[Path, str]] = ()) -> list[str]:
    """bwrap's options after the tree's own `--bind TREE /`."""
    options = ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/run"]
    options += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try", "--hostname", HOSTNAME]
    if not network:
        options.append("--unshare-net")
    options += ["--die-with-parent", "--new-session"]
    for cap in DROPPED_CAPS:
        options += ["--cap-drop", cap]
    for source, target in ro_binds:
        options += ["--ro-bind", os.fspath(source), target]
    for source, target in binds:
        options += ["--bind", os.fspath(source), target]
    return options


def in_sandbox(
    tree: Path,
    argv: Sequence[str | os.PathLike[str]],
    *,
    network: bool = False,
    ro_binds: Sequence[tuple[Path, str]] = (),
    binds: Sequence[tuple[Path, str]] = (),
    read_only: bool = False,
) -> list[str]:
    """argv wrapped to run in the tree, in the sandbox. read_only: a finished tree (the store's),
    which the command reads but never changes, its temporary files too (/tmp, /var/tmp: tmpfs)."""
    scratch = ["--tmpfs", "/tmp", "--tmpfs", "/var/tmp"] if read_only else []
    return [
        "bwrap",
        "--ro-bind" if read_only else "--bind",
        os.fspath(tree),
        "/",
        *scratch,
        *bwrap_options(network=network, ro_binds=ro_binds, binds=binds),
        "--",
        *(os.fspath(a) for a in argv),
    ]


def chroot_wrapper(path: Path, *, ro_binds: Sequence[tuple[Path, str]] = (), binds: Sequence[tuple[Path, str]] = ()) -> Path:
    """An executable that stands in for chroot(8) (`WRAPPER TREE COMMAND...`), running the
    command in the sandbox: what Ansible's chroot connection runs for each task."""
    options = shlex.join(bwrap_options(ro_binds=ro_binds, binds=binds))
    path.write_text(
        f'#!/bin/sh\n# Crust: chroot into the build sandbox (crust/tree/sandbox.py).\ntree=$1\nshift\nexec bwrap --bind "$tree" / {options} -- "$@"\n'
    )
    path.chmod(0o700)
    return path
