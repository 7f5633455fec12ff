"""Free loopback ports for guest port forwards, reserved so that concurrent runs never collide.

A port is taken only if it can be bound on 127.0.0.1 and its lock file can be flocked; the
lock is held until release(), so two Crust processes never hand out the same port.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LOCK_DIR = Path(os.environ.get("CRUST_PORT_LOCKS", "/run/crust/ports"))


@contextlib.contextmanager
def reserved_ports(count: int, lock_dir: Path = LOCK_DIR) -> Iterator[list[int]]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    held: list[IO[str]] = []
    ports: list[int] = []
    try:
        attempts = 0
        while len(ports) < count:
            attempts += 1
            if attempts > 200:
                raise RuntimeError("could not reserve a free loopback port")
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            fh: IO[str] = open(lock_dir / f"{port}.lock", "w")  # held until release
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            held.append(fh)
            ports.append(port)
        yield ports
    finally:
        for fh in held:
            with contextlib.suppress(OSError):
                os.unlink(fh.name)
            fh.close()
