"""Boot an image with plain qemu (no libvirt): OVMF, user-mode networking with a host port forward.

The accelerator is Crust's decision for this host (crust.accel: KVM only where a probe boot
showed it works, else TCG), as for every other boot the tests make.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from crust.boot.machine import choose_accel

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def booted(image: Path, workdir: Path, guest_port: int) -> Iterator[tuple[int, Path]]:
    """Boot image (through a throwaway overlay); yields (host port, serial log)."""
    overlay = workdir / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.resolve()), str(overlay)], check=True)
    nvram = workdir / "vars.fd"
    shutil.copy(OVMF_VARS, nvram)
    serial = workdir / "serial.log"
    port = free_port()
    decision = choose_accel("qemu:///system", "auto", image.resolve())
    accel = ["-accel", "kvm", "-cpu", "host"] if decision.accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
    print(f"plain qemu under {decision.accel}: {decision.reason}")
    proc = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-machine",
            "q35",
            *accel,
            "-m",
            "1024",
            "-smp",
            "2",
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,file={nvram}",
            "-drive",
            f"file={overlay},format=qcow2,if=virtio",
            "-serial",
            f"file:{serial}",
            "-netdev",
            f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:{guest_port}",
            "-device",
            "virtio-net-pci,netdev=n0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield port, serial
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serial_tail(serial: Path, lines: int = 40) -> str:
    text = serial.read_text(errors="replace") if serial.exists() else "(no serial output)"
    return "\n".join(text.splitlines()[-lines:])


def wait_http(port: int, path: str, timeout: float, serial: Path) -> tuple[float, int, str]:
    """Poll until HTTP answers; (seconds, status, body). On timeout fail with the console tail."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
                return time.monotonic() - start, resp.status, resp.read().decode()
        except Exception as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"no HTTP answer on {path} within {timeout}s (last: {last}); serial console:\n{serial_tail(serial)}")
