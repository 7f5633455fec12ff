"""Smoke checks of the WSGI appliances that need a client of their own.

Each function gets the check context: ctx.url(guest_port, path), ctx.address(guest_port),
ctx.guest_exec(argv) -> ExecResult(status, stdout, stderr), ctx.log(message). Raise
AssertionError to fail (the harness retries until the check's timeout); return a short
description of what was seen.
"""

from __future__ import annotations

import re
import urllib.request
from typing import Any


def page_shows_this_build(ctx: Any) -> str:
    """The front page names the build that is really inside the guest (not a cached page)."""
    release = ctx.guest_exec(["cat", "/etc/crust-release"])
    assert release.status == 0, f"cat /etc/crust-release exited {release.status}"
    match = re.search(r"^BUILD_ID=(\S+)$", release.stdout, flags=re.M)
    assert match, "no BUILD_ID in /etc/crust-release"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(ctx.url(80, "/"), timeout=5) as resp:
        page = resp.read().decode()
    assert match.group(1) in page, f"page does not show build {match.group(1)}"
    return f"page shows build {match.group(1)}, as /etc/crust-release says"
