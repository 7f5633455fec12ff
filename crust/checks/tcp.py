"""tcp: a listener in the guest accepts a connection through the forwarded port."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Mapping
from typing import Any

from crust.checks.kind import CheckContext, CheckSpec, CheckType
from crust.define.settings import REQUIRED, Setting, parse_port

LISTEN = "0A"  # the TCP state "listen" in /proc/net/tcp and tcp6


def listening_ports(proc_net_tcp: str) -> set[int]:
    """Local ports in the LISTEN state, from the text of /proc/net/tcp and /proc/net/tcp6."""
    ports = set()
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN and ":" in fields[1]:
            with contextlib.suppress(ValueError):
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def attempt(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    """A listener in the guest accepted a connection through the forward.

    The host side of qemu's user-mode forward accepts whatever the guest does, and a guest
    still in its firmware (no network stack) never resets the connection: an open host socket
    proves nothing. So the guest itself must show the port listening (its kernel's socket table,
    read through the agent), and then a connection through the forward must be accepted, not
    dropped (a listener bound to the guest's loopback only is dropped).
    """
    port = check.options["port"]
    table = ctx.guest_exec(["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeout=min(10.0, max(2.0, ctx.deadline - time.monotonic())))
    if port not in listening_ports(table.stdout):
        return False, f"nothing listens on guest port {port} (the guest's socket table)"
    with socket.create_connection(ctx.address(port), timeout=3) as sock:
        sock.settimeout(1.0)
        try:
            data = sock.recv(1)
        except TimeoutError:
            return True, f"guest port {port} listening; connection through the forward accepted and held open"
        except ConnectionResetError:
            return False, f"guest port {port} listening, but the connection through the forward was reset"
        if data:
            return True, f"guest port {port} listening; connection accepted (the server spoke first)"
        return False, f"guest port {port} listening, but the connection through the forward was closed at once (bound to the guest's loopback only?)"


def describe(o: Mapping[str, Any]) -> str:
    return f"tcp {o['port']} open"


def expectation(o: Mapping[str, Any]) -> str:
    return f"guest port {o['port']} accepts connections"


CHECK = CheckType(
    name="tcp",
    settings=(Setting("port", parse_port, REQUIRED, "Guest port on which a listener in the guest must accept a connection."),),
    describe=describe,
    expectation=expectation,
    attempt=attempt,
    order=10,
)
