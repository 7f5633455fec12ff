"""Runs inside the build sandbox (see crust/sandbox.py), before the command that needs secrets.

    python secretfs.py TREE/run/crust-secrets -- COMMAND...

Reads the secrets from stdin (JSON: {ID: base64}), mounts a tmpfs at the given directory,
which must lie on the namespace's private /run tmpfs (never on the tree's disk), writes each
secret there as a file of mode 0400, then becomes COMMAND with stdin on /dev/null. The tmpfs
belongs to the namespace and vanishes with it. Standard library only: run as a script.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys

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
    parent = os.path.dirname(target)
    if os.path.islink(parent) or mount_type(os.path.realpath(parent)) != "tmpfs":
        print(f"secretfs: {parent} is not a tmpfs of this namespace: refusing to write secrets there", file=sys.stderr)
        return 2
    secrets = json.loads(sys.stdin.read() or "{}")
    os.mkdir(target, 0o700)
    size = max(1, sum(len(v) for v in secrets.values()) // 1024 + 64)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0700,nosuid,nodev,noexec,size={size}k", "crust-secrets", target], check=True)
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
