"""no_failed_units: once the guest's boot has finished, no systemd unit has failed."""

from __future__ import annotations

from crust.checks.kind import CheckContext, CheckSpec, CheckType


def attempt(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    state = ctx.guest_exec(["systemctl", "is-system-running"]).stdout.strip()
    if state in ("initializing", "starting", ""):
        return False, f"boot not finished (system is {state or 'unknown'})"
    failed = ctx.guest_exec(["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager"]).stdout.strip()
    if failed:
        return False, "failed units: " + "; ".join(line.split()[0] for line in failed.splitlines())
    return True, f"system is {state}, no failed units"


CHECK = CheckType(
    name="no_failed_units",
    settings=(),
    describe=lambda o: "no failed units",
    expectation=lambda o: "no failed systemd units once boot has finished",
    attempt=attempt,
    order=50,
)
