"""A local Cloud Storage for the tests: gcp-storage-emulator (PyPI, pinned in pyproject's dev
extra) on a free port with a data directory of its own, ready when it answers, stopped after."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

EMULATOR = Path(sys.executable).parent / "gcp-storage-emulator"


def emulator_available() -> bool:
    return EMULATOR.is_file() or shutil.which("gcp-storage-emulator") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def gcs_emulator(data: Path, bucket: str, timeout: float = 30.0) -> Iterator[str]:
    """The emulator's URL (http://127.0.0.1:PORT) with BUCKET made, until the block ends."""
    port = free_port()
    exe = str(EMULATOR) if EMULATOR.is_file() else "gcp-storage-emulator"
    log = (data / "emulator.log").open("wb")
    proc = subprocess.Popen(
        [exe, "--data-dir", str(data / "store"), "start", "--host", "127.0.0.1", "--port", str(port), "--default-bucket", bucket, "--quiet"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:  # ready: the bucket is listed
            if proc.poll() is not None:
                raise RuntimeError(f"the GCS emulator exited ({proc.returncode}): {(data / 'emulator.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b/{bucket}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the GCS emulator did not answer on {url} in {timeout:.0f} s")
            time.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
