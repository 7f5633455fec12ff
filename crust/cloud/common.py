"""What every cloud target shares: the image to upload, the first-boot agent requirement, undo
of what a failed operation made, errors named by verb, and records in the manifest."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crust.build.manifest import Manifest
from crust.build.store import Store
from crust.errors import Problem, UserError

FIRST_BOOT_AGENTS = ("cloud-init",)


@dataclass(frozen=True)
class RawImage:
    path: Path
    digest: str
    size: int
    allocated: int


def require_first_boot_agent(manifest: Manifest) -> None:
    """Refuse an image that cannot take the launch's SSH key and user data (no cloud-init).

    Such an image would boot in the cloud with no way in: nobody could log in, and user data
    would be ignored. The manifest lists the image's packages.
    """
    if any(agent in manifest.packages for agent in FIRST_BOOT_AGENTS):
        return
    name = manifest.appliance
    raise UserError(
        f"{manifest.path}: {name}'s image has no cloud-init, so a cloud instance of it would take no SSH key and no user data",
        hint=f'add cloud-init to %packages in its kickstart and "cloud_init" to roles in the appliance file of {name}, then rebuild',
    )


def raw_image(manifest: Manifest) -> RawImage:
    """The raw artifact the manifest records (beside the manifest), checked against its size."""
    raw = manifest.artifact("raw")
    name = manifest.appliance
    if raw is None:
        raise UserError(f"{manifest.path}: no raw artifact recorded", hint=f"rebuild: ./build.py build {name}")
    path = manifest.located(raw)
    if not path.is_file():
        raise UserError(f"{name}: the raw image {path} is missing", hint=f"rebuild: ./build.py build {name}")
    st = path.stat()
    if st.st_size != raw.size:
        raise UserError(f"{name}: {path} is {st.st_size} bytes, the manifest says {raw.size}", hint=f"rebuild: ./build.py build {name}")
    return RawImage(path, raw.sha256, st.st_size, st.st_blocks * 512)


def stored_digest(fd: int, manifest: Manifest, store: Store) -> str | None:
    """The sha256 the store recorded for this very file, when it is a hard link of an entry of
    one of the manifest's steps (entries never change: no need to hash it again), else None."""
    st = os.fstat(fd)
    for step in manifest.steps:
        entry = store.get(str(step.get("kind")), str(step.get("id")))
        if entry is None:
            continue
        for name, facts in entry.meta.get("outputs", {}).items():
            try:
                other = (entry.path / name).stat()
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino) and isinstance(facts, dict):
                return str(facts.get("sha256"))
    return None


class Undo:
    """Cleanups for resources made so far, run in reverse order unless the work completes."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, action: Callable[[], None]) -> None:
        self.steps.append((what, action))

    def commit(self) -> None:
        self.steps.clear()

    def run(self) -> None:
        while self.steps:
            what, action = self.steps.pop()
            try:
                action()
                self.say(f"removed {what}")
            except Exception as exc:
                text = exc.one_line() if isinstance(exc, Problem) else str(exc)
                self.say(f"could not remove {what}: {text} (remove it by hand)")


@contextlib.contextmanager
def prefixed(prefix: str) -> Iterator[None]:
    """Problems inside name the verb and appliance: 'upload wsgi: ec2 RegisterImage ...'."""
    try:
        yield
    except Problem as exc:
        raise exc.prefixed(prefix) from exc


def record(manifest_path: Path, target: str, digest: str, locations: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge per-location results of an upload into the manifest (atomic rewrite), if it still
    describes the same image (a build may have replaced it meanwhile)."""
    manifest = Manifest.read(manifest_path)
    if manifest.raw_digest != digest:
        raise Problem(f"{manifest_path} changed during the upload (a new build?)", hint="rerun the upload for the new image")
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for location, entry in locations.items():
        manifest.record_cloud(target, location, {**entry, "image_digest": digest, "recorded": when})
    manifest.save()
