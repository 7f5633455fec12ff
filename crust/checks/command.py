"""command: a command run in the guest (through the guest agent, no shell) exits as declared."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from crust.checks.kind import CheckContext, CheckSpec, CheckType
from crust.define.settings import REQUIRED, Setting, parse_int, parse_regex, parse_str_list


def attempt(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    o = check.options
    result = ctx.guest_exec(list(o["argv"]))
    output = result.stdout + result.stderr
    seen = f"exit {result.status}, output {output.strip()[:200]!r}"
    if result.status != o["status"]:
        return False, seen
    if o["output"] and not re.search(o["output"], output):
        return False, seen
    return True, seen


def expectation(o: Mapping[str, Any]) -> str:
    out = f" and output matching /{o['output']}/" if o["output"] else ""
    return f"`{' '.join(o['argv'])}` exits {o['status']}{out}"


CHECK = CheckType(
    name="command",
    settings=(
        Setting("argv", parse_str_list, REQUIRED, "Command run in the guest through the guest agent."),
        Setting("status", parse_int, 0, "Expected exit status."),
        Setting("output", parse_regex, "", "Regex the output must match."),
    ),
    describe=lambda o: "command " + " ".join(o["argv"]),
    expectation=expectation,
    attempt=attempt,
    order=40,
)
