"""console: a line on the guest's serial console matches a pattern.

Read from the console the boot writes (no guest agent, no network): for what an appliance says
there (a boot message, a login prompt), or a guest that has no agent. Without anchors the
pattern may match anywhere in a line; the line it matched in is what the report shows."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from crust.checks.kind import CheckContext, CheckSpec, CheckType
from crust.define.settings import REQUIRED, Setting, parse_regex


def attempt(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    pattern = re.compile(check.options["pattern"])
    lines = ctx.console()
    line = next((line for line in lines if pattern.search(line)), None)
    if line is None:
        return False, f"no console line matches yet ({len(lines)} lines so far)"
    return True, f"console: {line.strip()[:200]!r}"


def expectation(o: Mapping[str, Any]) -> str:
    return f"a serial console line matching /{o['pattern']}/"


CHECK = CheckType(
    name="console",
    settings=(Setting("pattern", parse_regex, REQUIRED, "Regex a line of the guest's serial console must match."),),
    describe=lambda o: f"console /{o['pattern']}/",
    expectation=expectation,
    attempt=attempt,
    order=45,
)
