"""A full disk, told apart from other failures: one line naming the directory and the fix."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from crust.errors import NO_SPACE, CommandError, DiskFull

# Words in a failed command's output that let low free space explain the failure.
SPACE_WORDS = ("space", "writ", "enospc", "quota")  # writ: write, writing, written


def disk_full(exc: BaseException, folder: Path, what: str) -> DiskFull | None:
    """A DiskFull error when exc comes from a full disk under folder: ENOSPC, or a command
    that says so, or one that failed writing (its output speaks of space or writes: tools word
    ENOSPC differently) with less than 32 MiB left there. Any other failure keeps its own
    message, however little space is left."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if isinstance(exc, OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    elif isinstance(exc, CommandError):
        tail = exc.tail.lower()
        writing = any(word in tail for word in SPACE_WORDS)
        full = NO_SPACE in tail or (writing and free < 32 * 1024 * 1024)
    else:
        full = False
    return DiskFull(what, folder, free) if full else None
