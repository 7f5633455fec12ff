"""Layers: what a step changed on top of the tree it started from, stored as overlayfs stores it.

Role steps (crust/steps/role.py) run on an overlay of the trees below them and keep only its
upper directory, a *layer*: the files and
directories it made or changed, whole, with their metadata, and a whiteout (a character device
0/0, as overlayfs writes one) for each path it removed. A layer is normalised (normalize()):
what is the same as below is dropped, and an opaque directory (a directory removed and made
again) becomes whiteouts of what was below it, so a layer reads the same whether overlayfs or
a copy and a comparison made it, and its digest is a function of the tree it leaves.

Mounting needs no mount in the host's namespace: in_private_mounts() runs a function on a thread
of its own that first moves into a mount namespace of its own (unshare(2) acts on the calling
thread; the commands it starts inherit the namespace), so the overlay is seen by that thread and
its commands only, and goes with the thread, whatever ends the process.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
OVERLAY_XATTRS = "trusted.overlay."  # overlayfs' own notes on its upper files (origin, opaque...)
OPAQUE = OVERLAY_XATTRS + "opaque"
# Plain overlayfs: no index, no redirects or metadata-only copies (whose upper files would not
# be whole), no inode number translation.
OPTIONS = "redirect_dir=off,metacopy=off,index=off,xino=off"
ENV = "CRUST_OVERLAY"  # "0": work on whole copies, as where overlayfs cannot be mounted (to test that path)
UNSAFE = frozenset(",:\\\n")  # characters of a path overlayfs' options would split or escape


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def in_private_mounts(fn: Callable[[], T]) -> T:
    """fn() on a thread in a mount namespace of its own (private: nothing mounted there shows
    anywhere else); what it returns or raises."""
    outcome: dict[str, Any] = {}
    # The caller's context variables (the step's log, its command environment): a new thread
    # would start without them.
    context = contextvars.copy_context()
    done = threading.Event()

    def target() -> None:
        try:
            libc = _libc()
            _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
            outcome["value"] = context.run(fn)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=target, name="crust-private-mounts")
    thread.start()
    try:
        done.wait()  # not join(): Python 3.11's join, interrupted, takes the thread for ended
    except BaseException:
        # Ctrl-C or SIGTERM (a KeyboardInterrupt here): the thread's commands do not see it.
        # Stop them as run() stops the caller's own (and any it would start), and let the
        # thread end before the caller removes what it works in, however often interrupted.
        from crust.runner import stop_all

        stop_all()
        while not done.is_set():
            with contextlib.suppress(BaseException):
                done.wait()
        raise
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, merged: Path) -> None:
    """Mount LOWERS (the top one first) under UPPER at MERGED, on in_private_mounts' thread.
    The merged root takes the upper root's mode, owner and times: they are set to the view's."""
    paths = [*lowers, upper, work, merged]
    bad = [p for p in paths if UNSAFE & set(str(p))]
    if bad:
        raise ValueError(f"{bad[0]}: a path with ',', ':' or '\\' cannot be an overlay layer")
    root = os.lstat(lowers[0])  # a layer's root is the view's root as its step left it
    os.chown(upper, root.st_uid, root.st_gid)
    os.chmod(upper, stat.S_IMODE(root.st_mode))
    os.utime(upper, ns=(root.st_atime_ns, root.st_mtime_ns))
    options = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work},{OPTIONS}"
    _check(_libc().mount(b"overlay", os.fsencode(merged), b"overlay", 0, options.encode()), f"mount overlay at {merged}")


def usable(tmp: Path, lowers: Sequence[Path]) -> bool:
    """overlayfs can stack LOWERS here: a test mount of them, on a thread of its own, under TMP
    (a scratch folder, left as it was). False with CRUST_OVERLAY=0."""
    if os.environ.get(ENV) == "0":
        return False
    probe = tmp / ".overlay-probe"
    upper, scratch, merged = probe / "upper", probe / "work", probe / "merged"
    for folder in (upper, scratch, merged):
        folder.mkdir(parents=True)
    try:
        in_private_mounts(lambda: mount_overlay(lowers, upper, scratch, merged))
        return True
    except (OSError, ValueError) as exc:
        from crust.log import log_line

        log_line(f"crust: overlayfs unusable here ({exc}): working on a whole copy instead")
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def below(rel: str, lowers: Sequence[Path]) -> Path | None:
    """Where REL is in the view of LOWERS (normalised layers, the top one first, the last a
    whole tree): the path of the layer that has it, or None if the view has no such path."""
    parts = rel.split("/")
    for layer in lowers:
        for depth in range(1, len(parts) + 1):
            st = lstat_or_none(layer.joinpath(*parts[:depth]))
            if st is None:
                break  # not in this layer: look below
            if is_whiteout(st):
                return None
            if depth < len(parts) and not stat.S_ISDIR(st.st_mode):
                return None  # a file here hides everything below it
        else:
            return layer.joinpath(*parts)
    return None


def listing(rel: str, lowers: Sequence[Path]) -> set[str]:
    """The names in directory REL of the view of LOWERS."""
    names: set[str] = set()
    hidden: set[str] = set()
    for layer in lowers:
        here = layer / rel if rel else layer
        st = lstat_or_none(here)
        if st is None:
            continue
        if is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
            break
        for name in os.listdir(here):
            if name in names or name in hidden:
                continue
            if is_whiteout(os.lstat(here / name)):
                hidden.add(name)
            else:
                names.add(name)
    return names


def all_xattrs(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """A file's extended attributes (the link's own for a symlink), by name."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def xattrs(path: Path) -> dict[str, bytes]:
    """Its extended attributes but overlayfs' own notes."""
    return {n: v for n, v in all_xattrs(path).items() if not n.startswith(OVERLAY_XATTRS)}


def same_entry(a: Path, b: Path) -> bool:
    """The same file: kind, mode, owner, time (seconds, as output digests count it), extended
    attributes, and content or link target (directories: not their contents)."""
    sa, sb = os.lstat(a), os.lstat(b)
    if (sa.st_mode, sa.st_uid, sa.st_gid, int(sa.st_mtime)) != (sb.st_mode, sb.st_uid, sb.st_gid, int(sb.st_mtime)):
        return False
    if xattrs(a) != xattrs(b):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_ISREG(sa.st_mode):
        return sa.st_size == sb.st_size and same_content(a, b)
    if stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode):
        return sa.st_rdev == sb.st_rdev
    return True


def same_content(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """The same bytes (read side by side, a MiB at a time)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    untimed(path)


def untimed(path: Path) -> None:
    """A whiteout carries no time (the epoch), whoever made it and when: a layer's digest must
    not depend on the second a removal happened in."""
    os.utime(path, ns=(0, 0), follow_symlinks=False)


def walk_bottom_up(top: Path) -> Iterator[tuple[str, list[str]]]:
    """(directory relative to TOP, its entries) for every directory, deepest first."""
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        rel = os.path.relpath(dirpath, top)
        yield ("" if rel == "." else rel), sorted(dirnames + filenames)


def normalize(upper: Path, lowers: Sequence[Path]) -> None:
    """Make UPPER the minimal layer over LOWERS (the top one first) that gives the same tree."""
    # Opaque directories first (top down: a directory made again holds no lower name).
    for dirpath, dirnames, _ in os.walk(upper):
        here = Path(dirpath)
        if here != upper and OPAQUE in _names(here):
            times = os.lstat(here)
            os.removexattr(here, OPAQUE, follow_symlinks=False)
            rel = str(here.relative_to(upper))
            for name in sorted(listing(rel, lowers) - set(os.listdir(here))):
                whiteout(here / name)
            os.utime(here, ns=(times.st_atime_ns, times.st_mtime_ns), follow_symlinks=False)
        dirnames.sort()
    for note in (n for n in _names(upper) if n.startswith(OVERLAY_XATTRS)):
        os.removexattr(upper, note)
    for rel, names in walk_bottom_up(upper):
        folder = upper / rel if rel else upper
        times = os.lstat(folder)
        for name in names:
            path, inner = folder / name, f"{rel}/{name}" if rel else name
            for note in (n for n in _names(path) if n.startswith(OVERLAY_XATTRS)):
                os.removexattr(path, note, follow_symlinks=False)
            st = os.lstat(path)
            lower = below(inner, lowers)
            if is_whiteout(st):
                if lower is None:
                    os.unlink(path)  # removed something that was not there below
                else:
                    untimed(path)
            elif stat.S_ISDIR(st.st_mode):
                if not os.listdir(path) and lower is not None and stat.S_ISDIR(os.lstat(lower).st_mode) and same_entry(path, lower):
                    os.rmdir(path)
            elif lower is not None and same_entry(path, lower):
                os.unlink(path)
        os.utime(folder, ns=(times.st_atime_ns, times.st_mtime_ns), follow_symlinks=False)


def _names(path: Path) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []


def apply_layer(layer: Path, tree: Path) -> None:
    """Apply LAYER to the whole tree TREE (in place): what overlayfs shows, as plain files."""
    removed: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = Path(dirpath).relative_to(layer)
        for name in sorted(dirnames + filenames):
            source, target = Path(dirpath) / name, tree / rel / name
            st, there = os.lstat(source), lstat_or_none(target)
            if is_whiteout(st):
                removed.append(target)
            # Only a directory over a directory merges: anything else replaces what was there
            # (cp would write a file through a symlink it finds at the path).
            if there is not None and not (stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(there.st_mode)):
                _remove(target)
    # cp -a merges directories (their metadata too) and replaces files: it keeps owners, modes,
    # times, extended attributes, hard links within the layer and sparse files.
    from crust.runner import run

    run(["cp", "-a", "--no-target-directory", f"{layer}/.", str(tree)])
    for path in removed:  # the whiteouts cp copied: gone, their folders' times as in the layer
        path.unlink()
    for dirpath, _, _ in os.walk(layer, topdown=False):
        rel = Path(dirpath).relative_to(layer)
        st = os.lstat(dirpath)
        os.utime(tree / rel, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _remove(path: Path) -> None:
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def make_layer(tree: Path, lowers: Sequence[Path], upper: Path) -> None:
    """Where overlayfs cannot be mounted: write into UPPER (empty) the layer that takes the view
    of LOWERS to TREE (a whole copy of that view the step changed). The same layer overlayfs
    and normalize() give, made by comparing every path instead of by copy-up."""
    from crust.runner import run

    for dirpath, dirnames, filenames in os.walk(tree):
        rel = os.path.relpath(dirpath, tree)
        rel = "" if rel == "." else rel
        names = set(dirnames + filenames)
        for name in sorted(listing(rel, lowers) - names):
            _folder(upper, rel)
            whiteout(upper / rel / name)
        walk_into = []
        for name in sorted(names):
            inner = f"{rel}/{name}" if rel else name
            path, lower = tree / inner, below(inner, lowers)
            if stat.S_ISDIR(os.lstat(path).st_mode) and lower is not None and stat.S_ISDIR(os.lstat(lower).st_mode):
                if not same_entry(path, lower):
                    _folder(upper, inner)
                walk_into.append(name)  # only what differs below it goes into the layer
            elif lower is None or not same_entry(path, lower) or stat.S_ISDIR(os.lstat(path).st_mode):
                _folder(upper, rel)
                run(["cp", "-a", "--no-dereference", str(path), str(upper / inner)])
        dirnames[:] = [d for d in sorted(dirnames) if d in walk_into]
    for dirpath, _, _ in os.walk(upper, topdown=False):  # its folders as the tree has them
        rel = os.path.relpath(dirpath, upper)
        source = tree if rel == "." else tree / rel
        st = os.lstat(source)
        os.chown(dirpath, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(dirpath, stat.S_IMODE(st.st_mode))
        for name, value in xattrs(source).items():
            os.setxattr(dirpath, name, value, follow_symlinks=False)
        os.utime(dirpath, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _folder(upper: Path, rel: str) -> None:
    (upper / rel if rel else upper).mkdir(parents=True, exist_ok=True)
