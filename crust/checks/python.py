"""python: a function of the appliance's own check module (test.module) returns without raising."""

from __future__ import annotations

from crust.checks.kind import CheckContext, CheckSpec, CheckType
from crust.define.settings import REQUIRED, Setting, parse_str


def attempt(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    assert ctx.module is not None
    func = getattr(ctx.module, check.options["function"])
    seen = func(ctx)
    return True, str(seen) if seen is not None else "returned"


CHECK = CheckType(
    name="python",
    settings=(Setting("function", parse_str, REQUIRED, "Function in test.module: f(ctx) raises on failure."),),
    describe=lambda o: f"python {o['function']}",
    expectation=lambda o: f"{o['function']}() returns without raising",
    attempt=attempt,
    order=60,
    needs_module=True,
)
