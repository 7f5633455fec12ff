"""Suricata's alerts, read-only over HTTP: recent alerts as JSON and as an HTML page.

    GET /api/alerts[?sid=N][&since=ISO-8601][&limit=N]   {"alerts": [...], "count": N}
    GET /alerts                                            an HTML table of the same
    GET /healthz                                           "ok"

Only the EVE JSON log named below is ever read (no path comes from a request); only GET
and HEAD are answered. The newest alerts come first.
"""

import datetime as dt
import html
import json
import os
from urllib.parse import parse_qs

EVE_LOG = os.environ.get("CRUST_IDS_EVE_LOG", "/var/log/suricata/eve.json")
TAIL_BYTES = 16 * 1024 * 1024  # read at most the last 16 MiB of the log
MAX_LIMIT = 1000


class BadRequest(ValueError):
    pass


def parse_time(text):
    """Suricata writes 2026-11-28T10:50:49.123456+0000; ISO 8601 from users is accepted too."""
    value = text.strip().replace("Z", "+00:00")
    if len(value) > 5 and value[-5] in "+-" and value[-3] != ":":
        value = value[:-2] + ":" + value[-2:]
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def query(environ):
    params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=False)
    unknown = set(params) - {"sid", "since", "limit"}
    if unknown:
        raise BadRequest(f"unknown parameter {sorted(unknown)[0]!r}: use sid, since, limit")
    try:
        sid = int(params["sid"][0]) if "sid" in params else None
        since = parse_time(params["since"][0]) if "since" in params else None
        limit = int(params.get("limit", ["100"])[0])
    except (ValueError, IndexError) as exc:
        raise BadRequest(f"bad parameter: {exc}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return sid, since, limit


def read_alerts(sid=None, since=None, limit=100, path=EVE_LOG):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return []
    if size > TAIL_BYTES:
        data = data.split(b"\n", 1)[-1]  # drop the partial first line
    alerts = []
    for line in reversed(data.splitlines()):
        if b'"event_type":"alert"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        alert = event.get("alert", {})
        if sid is not None and alert.get("signature_id") != sid:
            continue
        if since is not None and parse_time(event["timestamp"]) < since:
            continue
        alerts.append(
            {
                "timestamp": event.get("timestamp"),
                "sid": alert.get("signature_id"),
                "signature": alert.get("signature"),
                "severity": alert.get("severity"),
                "category": alert.get("category"),
                "proto": event.get("proto"),
                "src_ip": event.get("src_ip"),
                "src_port": event.get("src_port"),
                "dest_ip": event.get("dest_ip"),
                "dest_port": event.get("dest_port"),
            }
        )
        if len(alerts) >= limit:
            break
    return alerts


def page(alerts):
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(a[k]))}</td>" for k in ("timestamp", "sid", "signature", "src_ip", "dest_ip", "dest_port")) + "</tr>"
        for a in alerts
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>IDS alerts</title></head><body>"
        f"<h1>IDS alerts</h1><p>{len(alerts)} most recent (JSON: <a href='/api/alerts'>/api/alerts</a>)</p>"
        "<table border='1'><tr><th>time</th><th>sid</th><th>signature</th><th>source</th><th>destination</th><th>port</th></tr>"
        f"{rows}</table></body></html>\n"
    )


def respond(start_response, status, body, content_type):
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")])
    return [data]


def application(environ, start_response):
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        return respond(start_response, "405 Method Not Allowed", "read-only\n", "text/plain")
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        return respond(start_response, "200 OK", "ok\n", "text/plain")
    if path not in ("/api/alerts", "/alerts", "/"):
        return respond(start_response, "404 Not Found", "not found\n", "text/plain")
    try:
        sid, since, limit = query(environ)
    except BadRequest as exc:
        return respond(start_response, "400 Bad Request", json.dumps({"error": str(exc)}) + "\n", "application/json")
    alerts = read_alerts(sid, since, limit)
    if path == "/api/alerts":
        return respond(start_response, "200 OK", json.dumps({"alerts": alerts, "count": len(alerts)}) + "\n", "application/json")
    return respond(start_response, "200 OK", page(alerts), "text/html; charset=utf-8")
