"""Smoke checks of the IDS appliance, end to end from the host.

See wsgi_checks.py for the context these functions get.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TEST_SID = 9000001
TEST_URI = "/crust-ids-test-7f3a"
SECONDS = 15.0  # the acceptance bound from traffic to a visible alert


def get(url: str) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_signature_alert(ctx: Any) -> str:
    """Traffic matching the test signature; its alert is in the API within 15 s."""
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()
    sent = time.monotonic()
    status, _ = get(ctx.url(80, TEST_URI))  # nginx answers 404; Suricata sees the request
    assert status in (200, 404), f"the appliance answered {status} to the test request"
    query = urllib.parse.urlencode({"sid": TEST_SID, "since": since})
    while time.monotonic() - sent < SECONDS:
        _, body = get(ctx.url(80, f"/api/alerts?{query}"))
        alerts = json.loads(body)["alerts"]
        if alerts:
            seconds = time.monotonic() - sent
            ctx.log(f"traffic to alert in API: {seconds:.1f} s")
            assert alerts[0]["sid"] == TEST_SID
            return f"alert sid {TEST_SID} visible {seconds:.1f} s after the traffic ({alerts[0]['signature']})"
        time.sleep(0.5)
    raise AssertionError(f"no alert with sid {TEST_SID} in /api/alerts within {SECONDS:.0f} s of the traffic")


def api_is_read_only(ctx: Any) -> str:
    request = urllib.request.Request(ctx.url(80, "/api/alerts"), data=b"{}", method="POST")
    try:
        _OPENER.open(request, timeout=5)
    except urllib.error.HTTPError as exc:
        assert exc.code == 405, f"POST answered {exc.code}"
    else:
        raise AssertionError("POST /api/alerts was accepted")
    status, _ = get(ctx.url(80, "/api/alerts?file=/etc/shadow"))
    assert status == 400, f"an unknown parameter answered {status}"
    return "POST refused (405), unknown parameters refused (400)"
