"""Port reservations: a lock whose file is removed between open and flock is not a reservation."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from crust.boot import ports


def dead_pid() -> int:
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(out.stdout)


def assert_guarded(lock_dir: Path, port: int) -> None:
    """The port's lock file is at its path, names this process, and nobody else can lock it."""
    path = lock_dir / f"{port}.lock"
    assert path.read_text() == str(os.getpid())
    with open(path) as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_lock_file_swept_between_open_and_flock_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file a reservation opened held a killed run's pid; another process's stale-lock
    sweep removed it before the flock. The lock on the removed file guards nothing (a third
    process would create the path anew and take the same port): the reservation retries."""
    real_flock = fcntl.flock
    swept: list[str] = []

    def flock_after_a_sweep(fh: IO[str], how: int) -> Any:
        if not swept and isinstance(fh.name, str) and fh.name.endswith(".lock") and Path(fh.name).parent == tmp_path:
            swept.append(fh.name)
            Path(fh.name).write_text(str(dead_pid()))  # the file a killed owner left
            ports.remove_stale_locks(tmp_path)  # "another process" sweeps now
            assert not Path(fh.name).exists()
        return real_flock(fh, how)

    monkeypatch.setattr(ports.fcntl, "flock", flock_after_a_sweep)
    with ports.reserved_ports(2, tmp_path) as got:
        assert swept, "the sweep ran between open and flock"
        monkeypatch.setattr(ports.fcntl, "flock", real_flock)
        assert len(set(got)) == 2
        for port in got:
            assert_guarded(tmp_path, port)
    assert list(tmp_path.glob("*.lock")) == []


def test_a_lock_of_a_dead_owner_is_swept_and_a_live_one_kept(tmp_path: Path) -> None:
    stale = tmp_path / "1.lock"
    stale.write_text(str(dead_pid()))
    held = tmp_path / "2.lock"
    with open(held, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(str(dead_pid()))  # a holder's lock counts, whatever pid the file names
        fh.flush()
        ports.remove_stale_locks(tmp_path)
        assert not stale.exists() and held.exists()
