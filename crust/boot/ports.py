"""Free loopback ports for guest port forwards, reserved so that concurrent runs never collide.

A port is taken only if it can be bound on 127.0.0.1 and its lock file can be flocked; the
lock is held until release(), so two Crust processes never hand out the same port. A lock file
holds its owner's pid: files of killed owners are removed by the next reservation.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from crust.errors import CrustError

LOCK_DIR = Path(os.environ.get("CRUST_PORT_LOCKS", "/run/crust/ports"))


def remove_stale_locks(lock_dir: Path) -> None:
    """Lock files left by killed runs: nobody holds them and their pid is gone (or, without
    a pid, they are older than a minute, so not a reservation between open and flock)."""
    from crust.build.store import pid_alive

    for path in lock_dir.glob("*.lock"):
        try:
            with open(path) as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                owner = fh.read().strip()
                stale = not pid_alive(int(owner)) if owner.isdigit() else time.time() - os.fstat(fh.fileno()).st_mtime > 60
                if stale:
                    path.unlink()
        except (OSError, ValueError):
            continue


def same_file(fh: IO[str], path: Path) -> bool:
    """Whether the open file is still the one at path: a lock on a file that another process
    removed (remove_stale_locks, a release) guards nothing, as a third process would create
    and lock a new file at the same path."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fh.fileno())
    return (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino)


@contextlib.contextmanager
def reserved_ports(count: int, lock_dir: Path = LOCK_DIR) -> Iterator[list[int]]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_locks(lock_dir)
    held: list[IO[str]] = []
    ports: list[int] = []
    try:
        attempts = 0
        while len(ports) < count:
            attempts += 1
            if attempts > 200:
                raise CrustError("could not reserve a free loopback port for the guest's forwards (200 attempts)")
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            path = lock_dir / f"{port}.lock"
            fh: IO[str] = open(path, "a+")  # held until release; "a+" keeps a holder's pid
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            if not same_file(fh, path):  # unlinked between open and flock (a sweep, a release)
                fh.close()
                continue
            fh.truncate(0)
            fh.write(str(os.getpid()))
            fh.flush()
            held.append(fh)
            ports.append(port)
        yield ports
    finally:
        for fh in held:
            with contextlib.suppress(OSError):
                os.unlink(fh.name)
            fh.close()
