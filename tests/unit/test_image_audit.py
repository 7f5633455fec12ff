"""The image step audits the sealed tree (a finding fails the step, nothing is stored) and
writes the SBOM next to the disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from crust.build.executor import ensure
from crust.build.plan import Step
from crust.build.progress import Progress
from crust.build.store import Entry, Store
from crust.define.kickstart import load
from crust.disk import assemble
from crust.errors import StepFailed
from crust.steps import KINDS, Job
from crust.trust.audit import privileged_files
from tests.unit.test_audit import make_clean_tree

KS = load("network --hostname=x\npart / --size=1024\nrootpw --lock\n", allow_plaintext=False)


PACKAGES = Step("packages", "demo", "0" * 64, {})
TREE = Step("tree", "demo", "1" * 64, {})
IMAGE = Step("image", "demo", "2" * 64, {"tree": "1" * 64})


def fake_plan() -> Any:
    spec = SimpleNamespace(name="demo", version="1.2.3", description="a demo appliance")
    steps = {"packages": PACKAGES, "tree": TREE, "image": IMAGE}
    return SimpleNamespace(
        spec=spec, ks=KS, layout=None, epoch=1762595483, step=steps.__getitem__, distro=SimpleNamespace(name="debian-13", backend="apt")
    )


def make_image(plan: Any, tree: Entry) -> Callable[[Path], dict[str, Any]]:
    """The image step kind's action on a tree entry, as the executor runs it."""
    packages = tree.path.parent / "packages"
    packages.mkdir(exist_ok=True)
    # what the packages step recorded: the setuid files the packages made (su, the dbus helper)
    baseline = privileged_files(tree.path / "tree")
    (packages / "step.json").write_text(json.dumps({"outputs": {"packages": {}, "privileged": baseline}}))
    entries = {TREE.key: tree, PACKAGES.key: Entry("packages", PACKAGES.id, packages)}
    return lambda tmp: KINDS["image"].run(Job(plan, IMAGE, tmp, None, None, entries))  # type: ignore[arg-type]


@pytest.fixture
def tree_entry(tmp_path: Path) -> Entry:
    make_clean_tree(tmp_path / "entry/tree")
    (tmp_path / "entry/tree/var/lib/dpkg/status").write_text("Package: nginx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.26\n")
    return Entry("tree", TREE.id, tmp_path / "entry")


@pytest.fixture
def fake_assemble(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def write_disk(tree: Path, layout: Any, workdir: Path, disk: Path, image_id: str, epoch: int) -> None:
        calls.append(tree)
        disk.write_bytes(b"disk image")
        (workdir / "BOOTX64.EFI").write_bytes(b"MZ a unified kernel image")

    monkeypatch.setattr(assemble, "assemble", write_disk)
    return calls


def test_clean_tree_gets_an_image_and_an_sbom(tree_entry: Entry, fake_assemble: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    outputs = make_image(fake_plan(), tree_entry)(out)
    assert fake_assemble == [tree_entry.path / "tree"]
    assert outputs["audit"] == {"passed": True, "findings": []}
    sbom = json.loads((out / "sbom.cdx.json").read_text())
    assert sbom["metadata"]["component"]["hashes"][0]["content"] == outputs["disk.raw"]["sha256"]
    assert [c["name"] for c in sbom["components"]] == ["nginx"]  # pkg-1.0.dist-info has no METADATA
    assert outputs["sbom.cdx.json"]["deb_packages"] == 1 and outputs["sbom.cdx.json"]["python_distributions"] == 0
    assert (out / "sbom.cdx.json").stat().st_mode & 0o777 == 0o444


def test_a_finding_fails_the_step_and_nothing_is_stored(tree_entry: Entry, fake_assemble: list[Path], tmp_path: Path) -> None:
    (tree_entry.path / "tree/etc/machine-id").write_text("0123456789abcdef\n")
    (tree_entry.path / "tree/etc/ssh/ssh_host_rsa_key").write_text("key")
    store = Store(tmp_path / "store")
    step = IMAGE
    with pytest.raises(StepFailed) as failed:
        ensure(store, step, make_image(fake_plan(), tree_entry), Progress())
    message = str(failed.value)
    assert message.startswith("image step of demo failed: the audit found 2 problems: host-keys: /etc/ssh/ssh_host_rsa_key: ")
    assert "machine-id: /etc/machine-id: not empty" in message and "\n" not in message
    # The disk is assembled while the tree is audited; a finding discards it with the step's temp dir.
    assert store.get("image", step.id) is None  # nothing stored, so nothing can be published
    assert not list((store.root / "tmp").iterdir())
    log = store.log_path("image", step.id).read_text()
    assert "audit: host-keys: /etc/ssh/ssh_host_rsa_key" in log
