"""Runs in the Ansible controller's private mount namespace (crust/tree/ansible.py), before it.

    python secretfs.py DIR -- COMMAND...

Reads the secrets from stdin (JSON: {ID: base64}), makes DIR and mounts a tmpfs on it (and
checks it is one: never the disk), writes each secret there as a file of mode 0400, then
becomes COMMAND with stdin on /dev/null. The tmpfs belongs to the namespace and vanishes with
it; each task's sandbox sees it read-only at /run/crust-secrets. Standard library only: run as
a script.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import subprocess
import sys

CLONE_NEWNS = 0x00020000
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as crust.buildsecrets.ID_RE


def mount_type(path: str) -> str | None:
    """The file system type mounted exactly at path, from this namespace's mount table."""
    found = None
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[1].replace("\\040", " ") == path:
                found = fields[2]  # the last one listed is the one on top
    return found


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 1 or len(argv) < 3:
        print("usage: python secretfs.py DIR -- COMMAND...", file=sys.stderr)
        return 2
    target, command = argv[0], argv[2:]
    # A mount namespace of its own, private, whoever the caller: the tmpfs is seen by this
    # process and what it starts, never by the host, and goes away with them.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        print(f"secretfs: cannot make a private mount namespace: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 2
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    secrets = json.loads(sys.stdin.read() or "{}")
    os.mkdir(target, 0o700)
    size = max(1, sum(len(v) for v in secrets.values()) // 1024 + 64)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0700,nosuid,nodev,noexec,size={size}k", "crust-secrets", target], check=True)
    if os.path.islink(target) or mount_type(os.path.realpath(target)) != "tmpfs":
        print(f"secretfs: {target} is not a tmpfs of this namespace: refusing to write secrets there", file=sys.stderr)
        return 2
    for sid, encoded in secrets.items():
        if not ID_RE.fullmatch(sid):
            print(f"secretfs: {sid!r} is not a secret ID", file=sys.stderr)
            return 2
        fd = os.open(os.path.join(target, sid), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64decode(encoded))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
