"""Test helpers for the AWS target: a moto_server process and an HTTP proxy in front of it that
can slow down or fail PutSnapshotBlock (to interrupt an upload, or make it fail, midway)."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PUT_BLOCK = re.compile(r"^/snapshots/[^/]+/blocks/\d+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(binary: Path, log: Path) -> Iterator[str]:
    """moto_server on a free loopback port; yields its URL; killed at the end."""
    port = free_port()
    env = dict(os.environ, MOTO_EC2_LOAD_DEFAULT_AMIS="false", MOTO_ENABLE_AMI_VALIDATION="true")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def venv_moto(folder: Path) -> Iterator[str]:
    """moto_server from the venv, logging into folder; its URL (a test skips, and fails in CI,
    when it is not installed)."""
    import sys

    from tests.conftest import need

    binary = Path(sys.executable).parent / "moto_server"
    need(binary.exists(), "moto_server is not installed in the venv (./setup.sh installs moto[server])")
    with moto_server(binary, folder / "moto.log") as url:
        yield url


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()


class BlockProxy:
    """Forwards every request to moto; PutSnapshotBlock requests are counted, optionally delayed,
    and after `fail_after` of them answered with a non-retryable error."""

    def __init__(self, upstream: str, fail_after: int | None = None, delay: float = 0.0) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.fail_after = fail_after
        self.delay = delay
        self.puts = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.reached = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BlockProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "PUT" and PUT_BLOCK.match(self.path):
                    with proxy.lock:
                        proxy.puts += 1
                        count = proxy.puts
                    if proxy.fail_after is not None and count > proxy.fail_after:
                        with proxy.lock:
                            proxy.failed += 1
                        proxy.reached.set()
                        payload = b'{"message": "injected by the test proxy", "Reason": "INVALID_BLOCK"}'
                        self.send_response(400)
                        self.send_header("x-amzn-ErrorType", "ValidationException")
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                    if proxy.fail_after is None and count >= 8:
                        proxy.reached.set()
                    time.sleep(proxy.delay)
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
