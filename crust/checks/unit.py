"""unit: a systemd unit in the guest is active (through the guest agent)."""

from __future__ import annotations

from crust.checks.kind import CheckContext, CheckSpec, CheckType
from crust.define.settings import REQUIRED, Setting, parse_str


def attempt(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    result = ctx.guest_exec(["systemctl", "is-active", check.options["unit"]])
    state = result.stdout.strip() or result.stderr.strip()
    return state == "active", f"{check.options['unit']} is {state}"


CHECK = CheckType(
    name="unit",
    settings=(Setting("unit", parse_str, REQUIRED, "systemd unit that must be active."),),
    describe=lambda o: f"unit {o['unit']} active",
    expectation=lambda o: f"systemd unit {o['unit']} active",
    attempt=attempt,
    order=30,
)
