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
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        request = urllib.request.Request(ctx.url(80, "/api/alerts"), data=b"{}", method=method)
        try:
            _OPENER.open(request, timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 405, f"{method} answered {exc.code}"
        else:
            raise AssertionError(f"{method} /api/alerts was accepted")
    status, _ = get(ctx.url(80, "/api/alerts?file=/etc/shadow"))
    assert status == 400, f"an unknown parameter answered {status}"
    return "POST, PUT, DELETE, PATCH refused (405), unknown parameters refused (400)"


def api_refuses_oversized_reads(ctx: Any) -> str:
    """One request reads a bounded part of the log and returns a bounded number of alerts."""
    refused = {
        "limit=1001": "a limit above 1000",
        "limit=1000000": "a huge limit",
        "since=" + "9" * 1100: "a query string over 1 KiB",
        "sid=1&sid=2": "a repeated parameter",
    }
    for query, what in refused.items():
        status, body = get(ctx.url(80, f"/api/alerts?{query}"))
        assert status == 400, f"{what} answered {status}: {body[:120]!r}"
    status, body = get(ctx.url(80, "/api/alerts?limit=1000"))
    assert status == 200, f"limit=1000 answered {status}"
    answer = json.loads(body)
    assert answer["count"] <= 1000 and isinstance(answer["truncated"], bool), f"unexpected answer {body[:200]!r}"
    return (
        f"{len(refused)} oversized or malformed queries refused (400); limit=1000 answered {answer['count']} alerts, truncated={answer['truncated']}"
    )


def api_until_filters(ctx: Any) -> str:
    """until= bounds the alerts by time, as the README says: the test alert is before now+1h,
    and not before a time an hour ago."""
    now = dt.datetime.now(dt.UTC)
    counts = {}
    for label, moment in (("an hour ago", now - dt.timedelta(hours=1)), ("in an hour", now + dt.timedelta(hours=1))):
        query = urllib.parse.urlencode({"sid": TEST_SID, "until": moment.isoformat()})
        status, body = get(ctx.url(80, f"/api/alerts?{query}"))
        assert status == 200, f"until= answered {status}: {body[:120]!r}"
        counts[label] = json.loads(body)["count"]
    assert counts["an hour ago"] == 0 and counts["in an hour"] >= 1, f"test alerts until an hour ago / in an hour: {counts}"
    return f"test alerts until an hour ago: 0, until in an hour: {counts['in an hour']}"
