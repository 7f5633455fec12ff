"""Runs as PID 1 of a private PID + mount namespace (see runner.sandboxed).

Mounts the API filesystems into a tree, then runs the command (optionally chrooted into the
tree). The mounts belong to the namespace and vanish with it: nothing is left to unmount.
"""

from __future__ import annotations

import os
import subprocess
import sys


def mount_api_filesystems(root: str) -> None:
    mounts = [
        ["mount", "-t", "proc", "proc", f"{root}/proc"],
        ["mount", "-t", "sysfs", "sysfs", f"{root}/sys"],
        ["mount", "--rbind", "/dev", f"{root}/dev"],
        ["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", f"{root}/run"],
    ]
    for argv in mounts:
        os.makedirs(argv[-1], exist_ok=True)
        subprocess.run(argv, check=True)


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: python -m crust.sandbox ROOT [--chroot] [--bind=SRC:DST]... -- COMMAND...", file=sys.stderr)
        return 2
    sep = argv.index("--")
    opts, command = argv[:sep], argv[sep + 1 :]
    root = opts[0]
    mount_api_filesystems(root)
    for opt in opts[1:]:
        if opt.startswith("--bind="):
            source, target = opt[len("--bind=") :].split(":", 1)
            subprocess.run(["mount", "--bind", source, f"{root}/{target.lstrip('/')}"], check=True)
    if "--chroot" in opts:
        command = ["chroot", root, *command]
    # Run the command as a child: as PID 1 we must stay to reap it and pass on its status.
    proc = subprocess.run(command, check=False)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
