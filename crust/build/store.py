"""A content-addressed store of step outputs.

    STORE/steps/KIND-ID/     finished outputs plus step.json (inputs, explanation, timings)
    STORE/tmp/KIND-ID.PID/   a step being built; renamed into steps/ only when complete
    STORE/locks/ID.lock      flock held while a step is built, so concurrent runs wait
    STORE/logs/KIND-ID.log   the log of the run that built the step
    STORE/builds/NAME/*.json one record per build of an appliance (for plan, clean --keep)

An entry exists only if its rename happened, so an interrupted step is never mistaken for a
finished one; leftovers in tmp/ whose process is gone are removed on the next open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crust import faults
from crust.errors import UserError


@dataclass(frozen=True)
class Entry:
    kind: str
    id: str
    path: Path

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads((self.path / "step.json").read_text(encoding="utf-8"))
        return meta


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("steps", "tmp", "locks", "logs", "builds", "state"):
            try:
                (root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(
                    f"store {root}: cannot make {sub}/: {exc.strerror or exc}", hint="give --store (or $CRUST_STORE) a writable directory"
                ) from None

    def entry_path(self, kind: str, step_id: str) -> Path:
        return self.root / "steps" / f"{kind}-{step_id}"

    def get(self, kind: str, step_id: str) -> Entry | None:
        path = self.entry_path(kind, step_id)
        return Entry(kind, step_id, path) if (path / "step.json").is_file() else None

    def log_path(self, kind: str, step_id: str) -> Path:
        return self.root / "logs" / f"{kind}-{step_id}.log"

    @contextlib.contextmanager
    def lock(self, name: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """An exclusive lock across threads and processes (flock on its own open file)."""
        with open(self.root / "locks" / f"{name}.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def building(self, kind: str, step_id: str) -> Iterator[Path]:
        """A fresh temporary directory for the step's outputs; removed unless committed."""
        tmp = self.root / "tmp" / f"{kind}-{step_id}.{os.getpid()}"
        remove_tree(tmp)
        tmp.mkdir(parents=True)
        try:
            yield tmp
        finally:
            remove_tree(tmp)

    def commit(self, kind: str, step_id: str, tmp: Path, meta: dict[str, Any]) -> Entry:
        (tmp / "step.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        faults.point(f"commit:{kind}")
        final = self.entry_path(kind, step_id)
        remove_tree(final)  # an incomplete leftover without step.json
        os.rename(tmp, final)
        return Entry(kind, step_id, final)

    def remove_stale_tmp(self) -> list[Path]:
        """Remove what killed runs left: their step directories in tmp/ and the temporary
        files of write_atomic() in the store's records and state."""
        removed = []
        for path in (self.root / "tmp").iterdir():
            pid = path.name.rsplit(".", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                remove_tree(path)
                removed.append(path)
        for folder in (self.root / "builds", self.root / "state"):
            removed += remove_stale_files(folder, recursive=True)
        return removed

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Held by every build for its whole run: clean (exclusive) waits for builds to end."""
        with open(self.root / "locks" / "store.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with open(self.root / "locks" / "store.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def read_record(self, path: Path) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def record_build(self, appliance: str, record: dict[str, Any]) -> Path:
        folder = self.root / "builds" / appliance
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.time_ns():020d}-{os.getpid()}.json"
        write_atomic(path, json.dumps(record, indent=2, sort_keys=True))
        return path

    def builds(self, appliance: str) -> list[dict[str, Any]]:
        folder = self.root / "builds" / appliance
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]

    def last_build(self, appliance: str) -> dict[str, Any] | None:
        builds = self.builds(appliance)
        return builds[-1] if builds else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


STALE_TMP = re.compile(r"^\..+\.tmp-(\d+)$")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Remove the temporary files (.NAME.tmp-PID, see write_atomic) of processes that are gone."""
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp-*") if recursive else folder.glob(".*.tmp-*"):
        match = STALE_TMP.match(path.name)
        if match and not pid_alive(int(match.group(1))) and (path.is_file() or path.is_symlink()):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
