"""verify: a build's artifacts are what their inputs make, and nothing else.

Without a rebuild, the published files are checked against the digests their manifest records.
With one, each appliance is built again from nothing, one at a time (the next one shares the base): in a throw-away store and output directory
beside the store, from a copy of the definitions at another path, under another umask, time zone
and locale, with the same mirror state (the original store's). Every artifact (each format, the
UKI, the SBOM) is compared by digest. When the raw images differ, both root file systems are read
(debugfs, no mount) and the first file that differs (in path order: kind, mode, owner, size,
content, link target, time) gets a diffoscope report. The throw-away directory goes on success,
failure, SIGTERM and Ctrl-C alike.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from crust.build.manifest import Manifest
from crust.digest import digest_file
from crust.errors import CrustError
from crust.log import logging_to
from crust.runner import run

# What the rebuild runs under: nothing here may change a byte of the output.
OTHER_ENV = {"TZ": "Pacific/Kiritimati", "LANG": "de_DE.UTF-8", "LC_ALL": "C", "CRUST_MIRROR_TTL": str(10 * 365 * 86400)}
OTHER_UMASK = 0o077
DEFINITIONS = ("appliances", "kickstarts", "roles", "distributions")
CODE = ("build.py", "crust")


@dataclass(frozen=True)
class Comparison:
    artifact: str  # a format, "uki" or "sbom"
    original: str  # sha256 ("" when the build has none)
    rebuilt: str

    @property
    def same(self) -> bool:
        return self.original == self.rebuilt != ""


def digests(manifest: Manifest) -> dict[str, str]:
    """Artifact -> sha256, as the manifest records them: each format, the UKI and the SBOM."""
    found = {a.format: a.sha256 for a in manifest.artifacts}
    for name, record in (("uki", manifest.uki), ("sbom", manifest.sbom)):
        if record.get("sha256"):
            found[name] = str(record["sha256"])
    return found


def check_published(manifest: Manifest) -> list[Comparison]:
    """Each published file against the digest recorded when it was built."""
    rows = []
    for artifact in manifest.artifacts:
        path = manifest.located(artifact)
        rows.append(Comparison(artifact.format, artifact.sha256, digest_file(path) if path.is_file() else ""))
    sbom = manifest.sbom.get("path")
    if sbom and manifest.sbom.get("sha256"):
        path = Path(sbom)
        rows.append(Comparison("sbom", str(manifest.sbom["sha256"]), digest_file(path) if path.is_file() else ""))
    return rows


def compare(original: Manifest, rebuilt: Manifest) -> list[Comparison]:
    """Each artifact of the original build against the rebuild's (which may have more formats)."""
    a, b = digests(original), digests(rebuilt)
    return [Comparison(name, a[name], b.get(name, "")) for name in sorted(a, key=order_of)]


def order_of(name: str) -> tuple[int, str]:
    from crust.formats import FORMATS

    return (FORMATS.index(name), name) if name in FORMATS else (len(FORMATS), name)


def copy_checkout(root: Path, dest: Path) -> Path:
    """Crust and the definitions at another path (what a second checkout would hold)."""
    dest.mkdir(parents=True)
    for name in (*CODE, *DEFINITIONS):
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def prepare_rebuild(root: Path, work: Path, state_dir: Path) -> Path:
    """Another checkout and an empty store under work/, with the same mirror state and the same
    early cut-off map; the checkout.

    The map (state/outputs, state/equivalent: which output digest was first made by which step)
    decides the ids steps are planned from, and so the BUILD_ID written into the image. A store
    that made a base under older code maps today's identical base to that older step; an empty
    store would not, and the rebuilt image would differ by its /etc/crust-release alone. With
    the map, a rebuilt step whose output is the same digest plans its successors as this store
    did; one whose output differs is its own canonical step, and the comparison shows it."""
    checkout = copy_checkout(root, work / "checkout")
    (work / "store" / "state").mkdir(parents=True)
    for mirror in state_dir.glob("mirror-*.json"):  # the same mirror state: the premise of the comparison
        shutil.copy2(mirror, work / "store" / "state" / mirror.name)
    for folder in ("outputs", "equivalent"):
        if (state_dir / folder).is_dir():
            shutil.copytree(state_dir / folder, work / "store" / "state" / folder)
    return checkout


def rebuild(root: Path, checkout: Path, work: Path, name: str, formats: Sequence[str], options: Sequence[str], log: Path) -> Manifest:
    """Build one appliance (and the formats besides raw) from nothing under work/ (the other
    checkout and store, another environment). Appliances are rebuilt one at a time, each
    released after its comparison (release_rebuild), so that the disk holds one at once."""
    store, output = work / "store", work / "build"
    argv = [sys.executable, str(checkout / "build.py"), "--store", str(store), "--output", str(output), "--allow-path", str(root)]
    argv += [*options, "build", name, *(f"--format={f}" for f in formats)]
    old = os.umask(OTHER_UMASK)
    try:
        with open(log, "a", encoding="utf-8") as fh, logging_to(fh):
            result = run(argv, env=OTHER_ENV, cwd=work, check=False)
    finally:
        os.umask(old)
    if result.status != 0:  # the child's own one-line error, else its last line
        lines = log.read_text(encoding="utf-8").strip().splitlines() or [""]
        said = next((line for line in reversed(lines) if line.startswith("error: ")), lines[-1])
        raise CrustError(f"the rebuild of {name} failed (exit {result.status}): {said}")
    return Manifest.load(output, name, verb="verify")


def release_rebuild(work: Path, name: str) -> None:
    """Remove what the rebuild of one appliance made but the base trees the next one shares."""
    for entry in (work / "store" / "steps").glob("*"):
        if not entry.name.startswith("base-"):
            shutil.rmtree(entry, ignore_errors=True)
    shutil.rmtree(work / "build" / name, ignore_errors=True)


@dataclass(frozen=True)
class Difference:
    path: str  # in the image, "/etc/x"
    what: str  # "content", "mode 0644 -> 0600", "only in the original", ...


def entries(root: Path) -> Iterator[str]:
    """Every path under root, sorted, as absolute paths in the image."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        base = "" if rel == "." else "/" + rel
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            yield f"{base}/{name}"
        for name in dirnames:
            if not os.path.islink(os.path.join(dirpath, name)):
                yield f"{base}/{name}"


def differs(a: Path, b: Path) -> str:
    """How two entries differ ("" when they do not)."""
    sa, sb = os.lstat(a), os.lstat(b)
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
        return "kind of file"
    if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
        return f"mode {stat.S_IMODE(sa.st_mode):04o} -> {stat.S_IMODE(sb.st_mode):04o}"
    if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
        return f"owner {sa.st_uid}:{sa.st_gid} -> {sb.st_uid}:{sb.st_gid}"
    if stat.S_ISLNK(sa.st_mode):
        return "" if os.readlink(a) == os.readlink(b) else "link target"
    if stat.S_ISREG(sa.st_mode):
        if sa.st_size != sb.st_size or digest_file(a) != digest_file(b):
            return "content"
    if int(sa.st_mtime) != int(sb.st_mtime):
        return f"modification time {int(sa.st_mtime)} -> {int(sb.st_mtime)}"
    return ""


def first_difference(original: Path, rebuilt: Path) -> Difference | None:
    """The first entry, in path order, that differs between two trees."""
    a, b = set(entries(original)), set(entries(rebuilt))
    for path in sorted(a | b):
        if path not in b:
            return Difference(path, "only in the original")
        if path not in a:
            return Difference(path, "only in the rebuild")
        what = differs(original / path.lstrip("/"), rebuilt / path.lstrip("/"))
        if what:
            return Difference(path, what)
    return None


def explain_raw_difference(original_raw: Path, rebuilt_raw: Path, work: Path, report_dir: Path) -> str:
    """Read both images' root file systems; name the first file that differs and write the
    diffoscope report of it. Returns the line to print."""
    from crust.disk.imagefs import extracted_root

    with ExitStack() as stack:
        one = stack.enter_context(extracted_root(original_raw, work / "original"))
        two = stack.enter_context(extracted_root(rebuilt_raw, work / "rebuilt"))
        found = first_difference(one, two)
        if found is None:
            return "the root file systems hold the same files: the difference is in file system or ESP metadata"
        report_dir.mkdir(parents=True, exist_ok=True)
        a, b = one / found.path.lstrip("/"), two / found.path.lstrip("/")
        report = report_dir / "diffoscope.txt"
        if a.is_file() and b.is_file() and not a.is_symlink() and not b.is_symlink():
            # a named copy of each side, so that the report names the file as it is in the image
            left, right = work / "cmp" / "original", work / "cmp" / "rebuilt"
            for side, src in ((left, a), (right, b)):
                dest = side / found.path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            run(
                [
                    "diffoscope",
                    "--no-progress",
                    "--exclude-directory-metadata=yes",
                    "--text",
                    str(report),
                    "--html",
                    str(report_dir / "diffoscope.html"),
                    str(left),
                    str(right),
                ],
                check=False,
                capture=True,
                cwd=work,
            )
        else:
            report.write_text(f"{found.path}: {found.what}\n", encoding="utf-8")
        return f"first difference: {found.path} ({found.what}); report: {report}"
