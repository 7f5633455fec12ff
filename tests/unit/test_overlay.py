"""crust/tree/overlay.py: layers as overlayfs writes them, normalised, applied as plain files.

Real overlayfs mounts (root only), in a thread's own mount namespace."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crust.build.equivalence import digest_output
from crust.runner import run
from crust.tree.overlay import OPAQUE, apply_layer, in_private_mounts, is_whiteout, make_layer, mount_overlay, normalize
from tests.conftest import need_root

EPOCH = 1_700_000_000


def make_tree(top: Path) -> None:
    for rel, text in {
        "etc/keep": "same\n",
        "etc/change": "old\n",
        "etc/rewrite": "same bytes\n",
        "etc/gone": "x\n",
        "var/lib/a/one": "1\n",
        "var/lib/a/two": "2\n",
    }.items():
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.symlink("keep", top / "etc/link")
    os.symlink("keep", top / "etc/alias")  # a link a step replaces with a file
    clamp(top)


def clamp(top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(top, (EPOCH, EPOCH))


def change(merged: Path) -> None:
    """What a role does: change, rewrite identically, remove, make a directory again, add."""
    (merged / "etc/change").write_text("new\n")
    (merged / "etc/rewrite").write_text("same bytes\n")
    (merged / "etc/gone").unlink()
    run(["rm", "-rf", str(merged / "var/lib/a")])
    (merged / "var/lib/a").mkdir()
    (merged / "var/lib/a/three").write_text("3\n")
    (merged / "opt/new").mkdir(parents=True)
    (merged / "opt/new/file").write_text("added\n")
    os.unlink(merged / "etc/link")
    os.symlink("change", merged / "etc/link")
    os.unlink(merged / "etc/alias")
    (merged / "etc/alias").write_text("a file now\n")  # applied, it must not go through the link below


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    need_root()
    paths = {name: tmp_path / name for name in ("lower", "upper", "work", "merged", "seen")}
    for path in paths.values():
        path.mkdir()
    make_tree(paths["lower"])
    return paths


def run_step(p: dict[str, Path]) -> None:
    """Mount, change, and keep a copy of the merged view as the step left it (times clamped)."""

    def step() -> None:
        mount_overlay([p["lower"]], p["upper"], p["work"], p["merged"])
        change(p["merged"])
        clamp(p["merged"])
        run(["cp", "-a", "--no-target-directory", f"{p['merged']}/.", str(p["seen"])])

    in_private_mounts(step)


def test_the_mount_is_seen_by_its_thread_only(layout: dict[str, Path]) -> None:
    run_step(layout)
    assert list(layout["merged"].iterdir()) == []  # not mounted here
    assert (layout["seen"] / "etc/change").read_text() == "new\n"
    assert is_whiteout(os.lstat(layout["upper"] / "etc/gone"))
    assert OPAQUE in os.listxattr(layout["upper"] / "var/lib/a")
    assert not any("overlay" in line and str(layout["merged"]) in line for line in Path("/proc/self/mounts").read_text().splitlines())


def test_a_normalised_layer_is_minimal_and_gives_the_same_tree(layout: dict[str, Path], tmp_path: Path) -> None:
    run_step(layout)
    upper = layout["upper"]
    normalize(upper, [layout["lower"]])
    assert not (upper / "etc/rewrite").exists() and not (upper / "etc/keep").exists()  # the same as below
    assert (upper / "etc/change").read_text() == "new\n"
    assert OPAQUE not in os.listxattr(upper / "var/lib/a")
    assert is_whiteout(os.lstat(upper / "var/lib/a/one")) and is_whiteout(os.lstat(upper / "var/lib/a/two"))
    assert is_whiteout(os.lstat(upper / "etc/gone"))
    tree = tmp_path / "tree"
    run(["cp", "-a", str(layout["lower"]), str(tree)])
    apply_layer(upper, tree)
    assert not any(stat.S_ISCHR(os.lstat(os.path.join(d, f)).st_mode) for d, _, fs in os.walk(tree) for f in fs)
    assert digest_output(tree) == digest_output(layout["seen"])


def test_a_layer_over_a_layer_gives_the_tree_both_steps_left(layout: dict[str, Path], tmp_path: Path) -> None:
    run_step(layout)
    normalize(layout["upper"], [layout["lower"]])
    second = {name: tmp_path / f"second-{name}" for name in ("upper", "work", "merged", "seen")}
    for path in second.values():
        path.mkdir()

    def step() -> None:
        mount_overlay([layout["upper"], layout["lower"]], second["upper"], second["work"], second["merged"])
        assert (second["merged"] / "var/lib/a/three").exists() and not (second["merged"] / "var/lib/a/one").exists()
        (second["merged"] / "var/lib/a/three").unlink()
        (second["merged"] / "etc/keep").write_text("changed later\n")
        clamp(second["merged"])
        run(["cp", "-a", "--no-target-directory", f"{second['merged']}/.", str(second["seen"])])

    in_private_mounts(step)
    normalize(second["upper"], [layout["upper"], layout["lower"]])
    tree = tmp_path / "tree"
    run(["cp", "-a", str(layout["lower"]), str(tree)])
    apply_layer(layout["upper"], tree)
    apply_layer(second["upper"], tree)
    assert digest_output(tree) == digest_output(second["seen"])


def test_the_thread_sees_the_callers_context() -> None:
    """The step's log and command environment are context variables: the thread must see them."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("test_var", default="unset")
    var.set("the caller's")
    assert in_private_mounts(var.get) == "the caller's"


def test_paths_overlayfs_would_split_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be an overlay layer"):
        mount_overlay([tmp_path / "a,b"], tmp_path / "u", tmp_path / "w", tmp_path / "m")


def test_an_error_in_the_thread_reaches_the_caller() -> None:
    need_root()

    def fail() -> None:
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        in_private_mounts(fail)


def test_without_overlayfs_a_comparison_makes_the_same_layer(layout: dict[str, Path], tmp_path: Path) -> None:
    """The fallback for hosts where the mount fails: run on a copy, compare, and get the very
    layer overlayfs and normalize() gave (the same digest: the same step output either way)."""
    run_step(layout)
    normalize(layout["upper"], [layout["lower"]])
    copy, made = tmp_path / "copy", tmp_path / "made"
    run(["cp", "-a", str(layout["lower"]), str(copy)])
    change(copy)
    clamp(copy)
    made.mkdir()
    make_layer(copy, [layout["lower"]], made)
    clamp_root = os.lstat(layout["upper"])
    assert os.lstat(made).st_mode == clamp_root.st_mode
    assert digest_output(made) == digest_output(layout["upper"]), entries_that_differ(made, layout["upper"])


def entries(top: Path) -> dict[str, tuple[int, int, int, list[str]]]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for path in [dirpath] if dirpath == str(top) else []:
            st = os.lstat(path)
            found["."] = (st.st_mode, st.st_mtime_ns, st.st_size, sorted(os.listxattr(path, follow_symlinks=False)))
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            found[os.path.relpath(path, top)] = (st.st_mode, st.st_mtime_ns, st.st_size, sorted(os.listxattr(path, follow_symlinks=False)))
    return found


def entries_that_differ(a: Path, b: Path) -> list[tuple[str, object, object]]:
    """(path, its mode, mtime, size and xattr names in a, the same in b) where the two differ."""
    ea, eb = entries(a), entries(b)
    return [(k, ea.get(k), eb.get(k)) for k in sorted(set(ea) | set(eb)) if ea.get(k) != eb.get(k)]


def test_ctrl_c_during_the_thread_stops_its_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt (Ctrl-C, or SIGTERM as Crust maps it) reaches the caller, not the
    thread: the thread's command must be stopped and the thread over before it propagates."""
    import signal
    import threading
    import time

    from crust import runner

    monkeypatch.setattr(runner, "_stopping", threading.Event())  # stop_all() sets it for the process
    started: list[float] = []

    def long_command() -> None:
        started.append(time.monotonic())
        run(["sleep", "60"])

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt):
            in_private_mounts(long_command)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert started and time.monotonic() - started[0] < 30, "the thread's sleep ran on"
    assert not [t for t in threading.enumerate() if t.name == "crust-private-mounts" and t.is_alive()]
    assert not runner._live, "a command of the thread is still running"
