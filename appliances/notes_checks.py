"""Smoke checks of the appliances whose sample serves notes at /api/notes (turbogears2, pyramid).

See wsgi_checks.py for the context these functions get.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from typing import Any

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def record_round_trip(ctx: Any) -> str:
    """POST a note to the JSON API, then find it in the list: the database path works."""
    text = f"smoke {secrets.token_hex(4)}"
    request = urllib.request.Request(
        ctx.url(80, "/api/notes"), data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with _OPENER.open(request, timeout=10) as resp:
        assert resp.status == 201, f"POST /api/notes answered {resp.status}"
        created = json.loads(resp.read())
    with _OPENER.open(ctx.url(80, "/api/notes"), timeout=10) as resp:
        notes = json.loads(resp.read())["notes"]
    found = [n for n in notes if n["id"] == created["id"] and n["text"] == text]
    assert found, f"note {created['id']} ({text!r}) not in the list of {len(notes)}"
    return f"note {created['id']} written and read back ({len(notes)} notes in PostgreSQL)"
