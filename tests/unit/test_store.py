"""The step store: entries appear only by rename; leftovers of dead runs are removed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crust.build.store import Store


def test_commit_is_atomic(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with store.building("tree", "abc") as tmp:
        (tmp / "out").write_text("data")
        assert store.get("tree", "abc") is None
        entry = store.commit("tree", "abc", tmp, {"k": 1})
    assert (entry.path / "out").read_text() == "data"
    assert store.get("tree", "abc") is not None
    assert entry.meta == {"k": 1}
    assert not list((store.root / "tmp").iterdir())


def test_failed_step_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(RuntimeError), store.building("tree", "abc") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")
    assert store.get("tree", "abc") is None
    assert not list((store.root / "tmp").iterdir())


def test_entry_without_step_json_is_not_finished(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.entry_path("tree", "abc").mkdir(parents=True)
    assert store.get("tree", "abc") is None


def test_stale_tmp_of_dead_process_is_removed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = store.root / "tmp" / f"tree-abc.{dead.stdout.strip()}"
    stale.mkdir()
    mine = store.root / "tmp" / f"tree-def.{__import__('os').getpid()}"
    mine.mkdir()
    assert store.remove_stale_tmp() == [stale]
    assert mine.exists() and not stale.exists()


def test_lock_serialises(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    order: list[str] = []

    def worker(name: str) -> None:
        with store.lock("step"):
            order.append(f"{name}-in")
            time.sleep(0.1)
            order.append(f"{name}-out")

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a-in", "a-out", "b-in", "b-out"], ["b-in", "b-out", "a-in", "a-out"])


def test_build_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    assert store.last_build("wsgi") is None
    store.record_build("wsgi", {"n": 1})
    store.record_build("wsgi", {"n": 2})
    assert [b["n"] for b in store.builds("wsgi")] == [1, 2]
    assert store.last_build("wsgi") == {"n": 2}
