"""What every cloud target shares: the image to upload, the first-boot agent requirement, undo
of what a failed operation made, errors named by verb, and records in the manifest."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from crust.build.manifest import Manifest
from crust.build.store import Store
from crust.errors import CloudError, Problem, UserError

T = TypeVar("T")

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


def artifact_of(manifest: Manifest, fmt: str) -> tuple[Any, Path]:
    """The artifact of format fmt the manifest records, and its file (checked against its size)."""
    artifact = manifest.artifact(fmt)
    name = manifest.appliance
    if artifact is None:
        raise UserError(
            f"{manifest.path}: no {fmt} artifact recorded", hint=f'add "{fmt}" to image.formats of {name}, or ./build.py build {name} --format {fmt}'
        )
    path = manifest.located(artifact)
    if not path.is_file() or path.stat().st_size != artifact.size:
        raise UserError(f"{name}: {path} is missing or not the size the manifest says", hint=f"rebuild: ./build.py build {name}")
    return artifact, path


def qcow2_of(manifest: Manifest) -> tuple[Any, Path]:
    """The qcow2 artifact the manifest records, and its file (checked against its size)."""
    return artifact_of(manifest, "qcow2")


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
        self.steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        """action() undoes it; returning False says there was nothing to remove (a resource
        pushed before it was asked for, never made), and nothing is said."""
        self.steps.append((what, action))

    def commit(self) -> None:
        self.steps.clear()

    def run(self) -> None:
        while self.steps:
            what, action = self.steps.pop()
            try:
                if action() is not False:
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


DEFAULT_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
KEY_TYPES = ("ssh-", "ecdsa-", "sk-")


def ssh_public_key(configured: Path | None, override: Path | None, home: Path | None = None, table: str = "targets.aws") -> str:
    """The public key for the user data: --ssh-key, the target's ssh_key, or ~/.ssh/id_*.pub."""
    if override is not None:
        candidates = [override]
    elif configured is not None:
        candidates = [configured]
    else:
        ssh_dir = (home or Path.home()) / ".ssh"
        candidates = [ssh_dir / n for n in DEFAULT_KEYS]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if "PRIVATE KEY" in text:
            raise UserError(f"{path} is a private key", hint="give the public key (the .pub file)")
        if len(text.splitlines()) != 1 or not text.startswith(KEY_TYPES):
            raise UserError(f"{path} is not an SSH public key", hint="give a one-line OpenSSH public key (ssh-ed25519 AAAA...)")
        return text
    raise UserError(
        "no SSH public key: " + ", ".join(str(p) for p in candidates) + " not found",
        hint=f"pass --ssh-key FILE.pub or set ssh_key in [{table}]",
    )


def user_data(key: str, cloud_config: Mapping[str, Any], limit: int = 16 * 1024, cloud: str = "EC2") -> str:
    """#cloud-config with the target's settings and the key added to ssh_authorized_keys."""
    config = json.loads(json.dumps(dict(cloud_config), default=str))
    keys = config.get("ssh_authorized_keys", [])
    if not isinstance(keys, list):
        raise UserError("cloud_config.ssh_authorized_keys must be a list", hint='write ssh_authorized_keys = ["ssh-ed25519 ..."]')
    config["ssh_authorized_keys"] = [*keys, key] if key not in keys else keys
    text = "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    if len(text.encode()) > limit:
        raise UserError(f"the user data is {len(text.encode())} bytes, over {cloud}'s {limit // 1024} KiB", hint="shorten cloud_config")
    return text


def machines_path(store: Store, target: str, name: str) -> Path:
    return store.root / "state" / target / f"{name}.json"


def read_machines(store: Store, target: str, name: str) -> list[dict[str, Any]]:
    """The machines `launch --target TARGET` recorded for an appliance in this store."""
    path = machines_path(store, target, name)
    if not path.is_file():
        return []
    machines: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")).get("machines", [])
    return machines


def write_machines(store: Store, target: str, name: str, machines: list[dict[str, Any]]) -> None:
    from crust.build.store import write_atomic

    path = machines_path(store, target, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"appliance": name, "machines": machines}, indent=2, sort_keys=True))


def wait_until(what: str, check: Callable[[], T | None], timeout: float, table: str, first: float = 1.0, most: float = 10.0) -> T:
    """check()'s first result that is not None, polled with a growing delay; after timeout
    seconds a one-line error naming the target's settings table."""
    deadline = time.monotonic() + timeout
    delay = first
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise CloudError(f"{what} did not happen in {timeout:.0f} s", hint=f"raise wait_timeout in [{table}]")
        time.sleep(delay)
        delay = min(delay * 1.5, most)
