"""What the store and cache benchmarks share: root checked, SIGTERM turned into the clean-up
path, a moto_server with fake credentials only, and one timed `build.py build`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # crust and tests, for the benchmarks that import this


def stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def prepare() -> None:
    """As root, with SIGTERM running the finally blocks (moto_server stopped, stores removed)."""
    signal.signal(signal.SIGTERM, stop)
    if os.geteuid() != 0:
        sys.exit("bench: run as root (the builds need it)")


@contextlib.contextmanager
def fake_s3(work: Path) -> Iterator[str]:
    """A moto_server from the venv and an environment with fake credentials only; its URL."""
    from tests.integration.aws_fakes import moto_server

    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        sys.exit(f"bench: {binary} not found (./setup.sh installs moto[server])")
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(AWS_ACCESS_KEY_ID="AKIDBENCHBUILDERS000", AWS_SECRET_ACCESS_KEY="bench-secret-not-real", AWS_DEFAULT_REGION="us-east-1")
    with moto_server(binary, work / "moto.log") as url:
        yield url


def build(store: Path, out: Path, names: list[str], *more: str, env: Mapping[str, str] | None = None) -> tuple[float, str]:
    """Wall time and stderr of one `build.py build`, which must succeed."""
    argv = [sys.executable, str(ROOT / "build.py"), "--store", str(store), "--output", str(out), "build", *names, *more]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"bench: build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return took, done.stderr
