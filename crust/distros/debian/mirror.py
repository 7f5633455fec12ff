"""Mirror state: the digest of each suite's InRelease file, part of the base tree's id.

Each value is ``SHA256@EPOCH``: the index's digest and its ``Date:`` in seconds. The newest date
is the build's SOURCE_DATE_EPOCH (crust/steps/base.py): a build of one mirror state says the
same time wherever and whenever it runs.

When the archive publishes new packages, its InRelease changes, and so does the base id. The
state is cached for CRUST_MIRROR_TTL seconds (default 6 hours) so that a no-op build does not
touch the network; ``--refresh`` checks again at once.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from crust.build.store import write_atomic
from crust.define.distribution import Distribution
from crust.errors import UserError

DEFAULT_TTL = 6 * 3600


def fetch_state(distro: Distribution, timeout: float = 15.0) -> dict[str, str]:
    """Suite -> sha256 of its InRelease, fetched from the distribution's sources."""
    state = {}
    for src in distro.sources:
        for suite in src.suites:
            url = f"{src.uri}/dists/{suite}/InRelease"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    data = resp.read()
                state[suite] = f"{hashlib.sha256(data).hexdigest()}@{index_date(data)}"
            except (urllib.error.URLError, OSError) as exc:
                raise UserError(f"cannot read {url}: {exc}", hint="check the network and the host's apt mirror (/etc/apt/sources.list.d)") from None
    return state


def index_date(data: bytes) -> int:
    """The Date: of a Release/InRelease file in seconds since 1970 (0 when it has none)."""
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("Date:"):
            try:
                return int(email.utils.parsedate_to_datetime(line[5:].strip()).timestamp())
            except (TypeError, ValueError):
                return 0
    return 0


def mirror_state(distro: Distribution, state_dir: Path, refresh: bool = False) -> dict[str, str]:
    cache = state_dir / f"mirror-{distro.name}.json"
    ttl = float(os.environ.get("CRUST_MIRROR_TTL", DEFAULT_TTL))
    key = hashlib.sha256(distro.deb822().encode()).hexdigest()
    if cache.is_file() and not refresh:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("sources") == key and data.get("format") == 2 and time.time() - data.get("checked", 0) < ttl:
            return dict(data["suites"])
    suites = fetch_state(distro)
    write_atomic(cache, json.dumps({"format": 2, "sources": key, "checked": time.time(), "suites": suites}, indent=2))
    return suites
