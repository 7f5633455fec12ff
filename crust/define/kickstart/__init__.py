"""Kickstart: parse with pykickstart (pinned syntax, warnings are errors), then Crust's policy.

Syntax and policy are checked separately (as lorax does): pykickstart decides what is valid
kickstart (syntax.py); the policy decides what Crust can honour for a Debian image (policy.py).
The result is a KickstartConfig (model.py), the plain data the steps apply to the tree; a
problem is reported at the template line it comes from (locate.py).
"""

from __future__ import annotations

from crust.define.kickstart.locate import problem_to_error
from crust.define.kickstart.model import KickstartConfig, KickstartProblem, Network, Repo, Script, SshKey, User, from_json, to_json
from crust.define.kickstart.policy import SUPPORTED_COMMANDS, check_policy
from crust.define.kickstart.syntax import SYNTAX_VERSION, parse


def load(text: str, *, allow_plaintext: bool, allow_host_scripts: bool = False) -> KickstartConfig:
    """Parse and check rendered kickstart text. Raises KickstartProblem."""
    return check_policy(parse(text), text, allow_plaintext=allow_plaintext, allow_host_scripts=allow_host_scripts)


__all__ = [
    "SUPPORTED_COMMANDS",
    "SYNTAX_VERSION",
    "KickstartConfig",
    "KickstartProblem",
    "Network",
    "Repo",
    "Script",
    "SshKey",
    "User",
    "check_policy",
    "from_json",
    "load",
    "parse",
    "problem_to_error",
    "to_json",
]
