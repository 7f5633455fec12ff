"""The qemu guest agent, through libvirt's agent API: checks inside the guest without SSH."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import libvirt
import libvirt_qemu

from crust.checks.kind import ExecResult, GuestNotReady


class Guest:
    def __init__(self, domain: Any) -> None:
        self.domain = domain

    def command(self, execute: str, arguments: dict[str, Any] | None = None, timeout: int = 10) -> Any:
        payload = {"execute": execute, **({"arguments": arguments} if arguments else {})}
        try:
            reply = libvirt_qemu.qemuAgentCommand(self.domain, json.dumps(payload), timeout, 0)
        except libvirt.libvirtError as exc:
            raise GuestNotReady(str(exc).splitlines()[0]) from None
        return json.loads(reply)["return"]

    def ping(self) -> bool:
        try:
            self.command("guest-ping", timeout=2)
        except GuestNotReady:
            return False
        return True

    def exec(self, argv: list[str], timeout: float = 30.0) -> ExecResult:
        """Run argv in the guest (no shell), wait for it, return status and output."""
        started = self.command("guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True})
        pid = started["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.command("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                return ExecResult(
                    int(status.get("exitcode", -1 if status.get("signal") else 0)),
                    base64.b64decode(status.get("out-data", "")).decode(errors="replace"),
                    base64.b64decode(status.get("err-data", "")).decode(errors="replace"),
                )
            if time.monotonic() > deadline:
                raise GuestNotReady(f"{' '.join(argv)} did not finish within {timeout:.0f}s")
            time.sleep(0.1)
