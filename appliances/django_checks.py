"""Smoke checks of the Django appliance that need a client of their own.

See wsgi_checks.py for the context these functions get.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import urllib.request
from typing import Any

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def static_file_from_nginx(ctx: Any) -> str:
    """The stylesheet is served with nginx's cache headers. Django runs with DEBUG off and does
    not serve static files: a 200 with Expires and max-age comes from nginx's own location."""
    with _OPENER.open(ctx.url(80, "/static/crust/style.css"), timeout=10) as resp:
        body = resp.read().decode()
        cache = resp.headers.get("Cache-Control", "")
        expires = resp.headers.get("Expires", "")
        ranges = resp.headers.get("Accept-Ranges", "")
    assert "font-family" in body, "not the sample's stylesheet"
    assert re.search(r"max-age=[1-9]", cache) and expires, f"no cache headers (Cache-Control {cache!r}, Expires {expires!r})"
    assert ranges == "bytes", "not a file nginx served (no Accept-Ranges: bytes)"
    return f"Cache-Control: {cache}; Accept-Ranges: {ranges}"


def note_round_trip(ctx: Any) -> str:
    """POST a note to the JSON API (the ORM writes it), then read it from PostgreSQL with psql."""
    text = f"smoke {secrets.token_hex(4)}"
    request = urllib.request.Request(
        ctx.url(80, "/api/notes"), data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with _OPENER.open(request, timeout=20) as resp:
        assert resp.status == 201, f"POST /api/notes answered {resp.status}"
        created = json.loads(resp.read())
    query = f"SELECT text FROM notes_note WHERE id = {int(created['id'])}"
    row = ctx.guest_exec(["runuser", "-u", "postgres", "--", "psql", "-X", "-qAt", "-d", "django", "-c", query])
    assert row.status == 0, f"psql exited {row.status}: {row.stderr.strip()[:200]}"
    assert row.stdout.strip() == text, f"PostgreSQL has {row.stdout.strip()!r} for note {created['id']}, not {text!r}"
    return f"note {created['id']} written through the ORM, read back from PostgreSQL"


def deploy_check(ctx: Any) -> str:
    """`manage.py check --deploy` as the service runs it: no errors; the warnings are listed."""
    out = ctx.guest_exec(["/usr/local/sbin/crust-django-manage", "check", "--deploy", "--fail-level", "ERROR"])
    text = out.stdout + out.stderr
    assert out.status == 0, f"check --deploy exited {out.status}: {text.strip()[-400:]}"
    warnings = sorted(set(re.findall(r"\(security\.W\d+\)", text)))
    return "no errors; warnings: " + (", ".join(w.strip("()") for w in warnings) or "none")


def secret_key_made_here(ctx: Any) -> str:
    """The secret key is in the root-and-service-only file the first boot wrote; its digest is
    shown so that two boots of one image can be compared (they differ)."""
    mode = ctx.guest_exec(["stat", "-c", "%a %U:%G", "/etc/crust-django/secret.env"])
    assert mode.stdout.startswith("640 root:wsgi"), f"secret.env is {mode.stdout.strip()!r}"
    env = ctx.guest_exec(["cat", "/etc/crust-django/secret.env"])
    match = re.search(r"^DJANGO_SECRET_KEY=(\S{40,})$", env.stdout, flags=re.M)
    assert match, "no DJANGO_SECRET_KEY in secret.env"
    return "secret key sha256 " + hashlib.sha256(match.group(1).encode()).hexdigest()[:16]
