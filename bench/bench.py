#!/usr/bin/env python3
"""Crust's benchmark: everything measured side by side, in one run, on this machine.

Works on a throwaway copy of the project (its own store and output), so the repository's
store is untouched. Prints, for the WSGI appliance:
  cold build                 empty store (the host's pip and apt caches as they are)
  mmdebstrap floor           mmdebstrap alone installing the image's full package set
  no-op rebuild (all)        every appliance already built, nothing changed
  one-role rebuild           after a one-line edit of one template of the first role of wsgi
                             (common: every role step reruns) and of its last (wsgi: its role
                             step alone, then the tree, image and qcow2): median of 3 edits each
  sandbox cost               bubblewrap entries during the cold build (counted by a PATH shim)
                             times the cost of one entry over a plain chroot, side by side
                             in the base tree (target: under 2 s a build)
  determinism cost           what the cold build spent making its output reproducible and
                             digesting it for early cut-off (clamping the tree's times,
                             pinning the ext4 inode times, the output digests), side by side
  verify --rebuild           ./build.py verify wsgi --rebuild: artifacts identical of compared
  code-change rebuild        after a comment edit in Crust's base step code: the base reruns,
                             its output is unchanged, every later step is reused (early cut-off)
  boot to checks passed      ./build.py test wsgi --force, domain start to last check, and the
                             five slowest units of that boot (systemd-analyze blame)
  upload                     bench/upload.py: EBS direct upload of the wsgi raw image to a
                             moto_server on loopback (MB/s of allocated data, zero blocks
                             skipped, the no-op re-upload)
and, last, each target with its measured value and whether it holds (TARGETS).

    .venv/bin/python bench/bench.py [--skip-boot] [--skip-floor] [--skip-upload]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COPY = ("appliances", "kickstarts", "roles", "distributions", "crust", "build.py", "pyproject.toml")
# One template of the first and of the last role wsgi applies: a comment line changes the file
# the template writes into the image, so the edit reaches the image (no early cut-off).
ROLE_EDITS = (
    ("first role (common)", Path("roles/common/templates/crust-release.j2")),
    ("last role (wsgi)", Path("roles/wsgi/templates/nginx-site.conf.j2")),
)


@dataclass(frozen=True)
class Target:
    label: str
    limit: float
    unit: str = ""  # "" for a ratio

    def row(self, value: float) -> tuple[str, str]:
        verdict = "holds" if value <= self.limit else "MISSED"
        return (f"target: {self.label} <= {self.limit:g}{self.unit}", f"{value:7.2f}{self.unit}  {verdict}")


TARGETS = {
    "floor": Target("cold build / mmdebstrap floor", 1.2),
    "first-role": Target("one-role rebuild / cold build, first role", 0.2),
    "last-role": Target("one-role rebuild / cold build, last role", 0.2),
    "boot": Target("boot to all checks passed (TCG)", 20.0, " s"),
    "noop": Target("no-op rebuild of all appliances", 0.5, " s"),
    "sandbox": Target("sandbox cost of the cold build", 2.0, " s"),
}
BLAME = re.compile(r"^\s*((?:\d+min\s*)?[\d.]+(?:ms|s|us))\s+(\S+)\s*$")


def slowest_units(analysis: str, most: int = 5) -> list[tuple[str, str]]:
    """The first lines of systemd-analyze blame (slowest first) in a smoke result's boot analysis."""
    units = [(m.group(2), m.group(1)) for line in analysis.splitlines() if (m := BLAME.match(line))]
    return units[:most]


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return elapsed, out


def crust(work: Path, *args: str, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = [sys.executable, str(work / "build.py"), "--store", str(work / ".store"), "--output", str(work / "out"), *args]
    return timed(argv, work, env)


def counting_bwrap(work: Path) -> tuple[dict[str, str], Path]:
    """A `bwrap` first on PATH that counts its calls and runs the real one."""
    real = shutil.which("bwrap")
    if real is None:
        sys.exit("bench: bwrap not found (run ./setup.sh)")
    shim_dir, count = work / "shim", work / "bwrap-calls"
    shim_dir.mkdir()
    (shim_dir / "bwrap").write_text(f'#!/bin/sh\necho >> {count}\nexec {real} "$@"\n')
    (shim_dir / "bwrap").chmod(0o755)
    return {"PATH": f"{shim_dir}:{os.environ.get('PATH', '')}"}, count


def sandbox_entry_cost(work: Path, runs: int = 40) -> tuple[float, float]:
    """Seconds per command: in the sandbox (as a tree step runs one) and in a plain chroot,
    alternating, in the base step's tree."""
    sys.path.insert(0, str(work))
    from crust.tree.sandbox import in_sandbox

    tree = next(p for p in sorted((work / ".store" / "steps").glob("base-*/tree")) if (p / "usr/bin/true").exists())
    wrapped: list[float] = []
    plain: list[float] = []
    for _ in range(runs):
        for argv, into in ((in_sandbox(tree, ["/usr/bin/true"]), wrapped), (["chroot", str(tree), "/usr/bin/true"], plain)):
            started = time.monotonic()
            subprocess.run(argv, check=True)
            into.append(time.monotonic() - started)
    return statistics.median(wrapped), statistics.median(plain)


def floor(work: Path, manifest: dict[str, object]) -> float:
    """mmdebstrap alone, same suite, mirror and dpkg options, the image's whole package set."""
    sys.path.insert(0, str(work))
    from crust.define.distribution import load_distribution
    from crust.define.project import Project
    from crust.distros.debian.bootstrap import DPKG_EXCLUDES

    distro = load_distribution(Project.at(work), str(manifest["distribution"]))
    sources = work / "floor.sources"
    sources.write_text(distro.deb822())
    packages = sorted(manifest["packages"])  # type: ignore[call-overload]
    target = work / "floor-tree"
    argv = [
        "unshare", "--fork", "--pid", "--kill-child", "--mount", "--propagation", "private", "--",
        "mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory",
        '--aptopt=Acquire::Check-Valid-Until "false"', '--aptopt=APT::Install-Recommends "false"',
        f"--keyring={distro.keyring}", "--include=" + ",".join(packages),
        *[f"--dpkgopt={o}" for o in DPKG_EXCLUDES], distro.suite, str(target), str(sources),
    ]  # fmt: skip
    elapsed, _ = timed(argv, work)
    shutil.rmtree(target)
    return elapsed


def determinism_cost(work: Path, manifest: dict[str, Any], cold: float) -> list[tuple[str, str]]:
    """The passes that make the wsgi build reproducible and cut-off-able, timed again on its
    own outputs (each as the build ran it): clamping the tree's times (a walk: the times are
    already clamped), pinning the ext4 inode times (on a copy of the image), the output digests."""
    sys.path.insert(0, str(work))
    from crust.build.equivalence import digest_output
    from crust.disk.assemble import pin_inode_times
    from crust.disk.imagefs import root_partition
    from crust.tree.reproducible import clamp_times

    ids = {s["kind"]: s["id"] for s in manifest["steps"] if s["kind"] != "convert"}
    steps = work / ".store" / "steps"
    epoch = int(manifest["source_date_epoch"])
    started = time.monotonic()
    clamp_times(steps / f"tree-{ids['tree']}" / "tree", epoch)
    clamp = time.monotonic() - started
    raw = work / "bench-copy.raw"
    subprocess.run(["cp", "--sparse=always", str(steps / f"image-{ids['image']}" / "disk.raw"), str(raw)], check=True)
    started = time.monotonic()
    pin_inode_times(f"{raw}?offset={root_partition(raw).offset}", epoch, work)
    pin = time.monotonic() - started
    raw.unlink()
    started = time.monotonic()
    for kind, step_id in ids.items():
        digest_output(steps / f"{kind}-{step_id}")
    digests = time.monotonic() - started
    total = clamp + pin + digests
    return [
        (f"  determinism: clamp tree times {clamp:.1f} s, pin inode times {pin:.1f} s, output digests {digests:.1f} s", f"{total:7.1f} s"),
        ("  determinism share of the cold build", f"{100 * total / cold:6.1f} %"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-boot", action="store_true", help="do not boot (no libvirt needed)")
    parser.add_argument("--skip-floor", action="store_true", help="do not run the mmdebstrap floor")
    parser.add_argument("--skip-upload", action="store_true", help="do not run bench/upload.py (EBS direct upload to moto_server)")
    parser.add_argument("--skip-verify", action="store_true", help="do not rebuild for verify --rebuild (a second cold build)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway copy")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (builds need it)")
    work = Path(tempfile.mkdtemp(prefix="crust-bench-", dir="/var/tmp"))
    rows: list[tuple[str, str]] = []
    verdicts: list[tuple[str, str]] = []
    try:
        for name in COPY:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
        # Byte-compiled, as an installed package (and ./setup.sh's checkout) is.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(work / "crust")], check=True, stdout=subprocess.DEVNULL)
        names = sorted(p.stem for p in (work / "appliances").glob("*.toml"))

        shim_env, calls = counting_bwrap(work)
        cold, _ = crust(work, "build", "wsgi", env=shim_env)
        rows.append(("cold build, wsgi (empty store)", f"{cold:7.1f} s"))
        manifest = json.loads((work / "out" / "wsgi" / "manifest.json").read_text())
        for step in manifest["steps"]:
            named = f" ({step['name'].partition('+')[2]})" if step["kind"] == "role" else ""  # one role step per role
            rows.append((f"  {step['kind']} step{named}", f"{step['duration_s']:7.1f} s"))
            record = json.loads((work / ".store" / "steps" / f"{step['kind']}-{step['id']}" / "step.json").read_text())
            for name, took in record["outputs"].get("phases_s", []):  # where the step's seconds went, in order
                rows.append((f"    {name}", f"{took:7.1f} s"))
        entries = len(calls.read_text().splitlines())
        wrapped, plain = sandbox_entry_cost(work)
        rows.append((f"  sandbox entries in the cold build ({wrapped * 1000:.1f} ms each, chroot {plain * 1000:.1f} ms)", str(entries)))
        rows.append(("  sandbox cost of the cold build", f"{entries * (wrapped - plain):7.2f} s"))
        verdicts.append(TARGETS["sandbox"].row(entries * (wrapped - plain)))
        rows += determinism_cost(work, manifest, cold)
        if not args.skip_verify:
            verify_time, out = timed(
                [
                    sys.executable,
                    str(work / "build.py"),
                    "--store",
                    str(work / ".store"),
                    "--output",
                    str(work / "out"),
                    "verify",
                    "wsgi",
                    "--rebuild",
                    "--json",
                ],
                work,
            )
            report = json.loads(out.stdout)
            rows.append((f"verify --rebuild wsgi: artifacts identical ({verify_time:.0f} s)", f"{report['identical']} of {report['compared']}"))
        if not args.skip_floor:
            base = floor(work, manifest)
            rows.append(("mmdebstrap alone, same package set (floor)", f"{base:7.1f} s"))
            rows.append(("cold build / floor", f"{cold / base:7.2f}"))
            # The floor installs packages only: the base and packages steps are the part of the
            # build that does the same work (the rest is roles, the image and its conversions).
            installing = sum(s["duration_s"] for s in manifest["steps"] if s["kind"] in ("base", "packages"))
            rows.append(("  base + packages steps / floor (the same work)", f"{installing / base:7.2f}"))
            verdicts.append(TARGETS["floor"].row(cold / base))

        crust(work, "build", "--all")  # the other appliances, so that the no-op covers all
        noops = [crust(work, "build", "--all")[0] for _ in range(5)]
        rows.append((f"no-op rebuild of all {len(names)} appliances (median of 5)", f"{statistics.median(noops):7.2f} s"))
        verdicts.append(TARGETS["noop"].row(statistics.median(noops)))

        code = work / "crust" / "steps" / "base.py"
        code.write_text(code.read_text() + "# bench: a comment in the base step's code\n")
        cutoff, out = crust(work, "build", "wsgi")
        unchanged = "output unchanged" in out.stderr
        rows.append((f"code-change rebuild, wsgi (base reruns; output unchanged: {'yes' if unchanged else 'NO'})", f"{cutoff:7.1f} s"))
        rows.append(("code-change rebuild / cold build", f"{cutoff / cold:7.2f}"))

        for (label, path), target in zip(ROLE_EDITS, ("first-role", "last-role"), strict=True):
            edited = work / path
            roles = []
            for attempt in range(3):  # three different one-line edits; the median rebuild
                edited.write_text(edited.read_text() + f"# bench: one-line edit {attempt} of one role template\n")
                if attempt == 0:
                    plan = crust(work, "plan", "--all")[1].stdout
                    rows.append(
                        (f"  steps an edit of the {label} makes run (all appliances)", str(sum("will run" in line for line in plan.splitlines())))
                    )
                roles.append(crust(work, "build", "wsgi")[0])
            role = statistics.median(roles)
            rows.append((f"one-role rebuild, wsgi, {label} (median of 3: {', '.join(f'{r:.1f}' for r in roles)})", f"{role:7.1f} s"))
            rows.append((f"one-role rebuild / cold build, {label}", f"{role / cold:7.2f}"))
            verdicts.append(TARGETS[target].row(role / cold))

        if not args.skip_boot:
            _, out = crust(work, "test", "wsgi", "--force", "--json")
            record = json.loads(out.stdout)[0]
            rows.append((f"boot to all checks passed, wsgi ({record['accel']})", f"{record['boot_to_pass_s']:7.1f} s"))
            for unit, took in slowest_units(record.get("boot_analysis") or ""):
                rows.append((f"  slow unit of that boot: {unit}", took))
            if record["accel"] == "tcg":  # the target is TCG's (under KVM it holds anyway)
                verdicts.append(TARGETS["boot"].row(record["boot_to_pass_s"]))
        if not args.skip_upload:  # bench/upload.py on this run's wsgi image (it starts its own moto_server)
            manifest_path = work / "out" / "wsgi" / "manifest.json"
            _, out = timed(
                [sys.executable, str(ROOT / "bench" / "upload.py"), "--manifest", str(manifest_path), "--store", str(work / ".store")], work
            )
            for line in out.stdout.splitlines()[1:]:  # its own header line dropped
                label, _, value = line.rpartition("  ")
                rows.append((f"upload: {label.strip()}", value.strip()))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    print(f"Crust benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    rows += verdicts
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
