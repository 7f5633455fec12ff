"""Suricata's alerts, read-only over HTTP: recent alerts as JSON and as an HTML page.

    GET /api/alerts[?sid=N][&since=T][&until=T][&limit=N]   {"alerts": [...], "count": N, "truncated": B}
    GET /alerts (same parameters)                           an HTML table of the same
    GET /healthz                                            "ok"

since and until are ISO 8601 times (a time without a zone is UTC): alerts at or after since,
and before until. limit is 1-1000 (default 100). The newest alerts come first.

Only the EVE JSON log named below is ever read (no path comes from a request); only GET and
HEAD are answered (405 otherwise). A request reads the log backwards from its end, at most
SCAN_BYTES of it, and stops early once it has `limit` alerts or has passed `since`:
"truncated" is true when that bound, not the log's start, ended the scan (older alerts may
exist). An unknown or repeated parameter, a bad value, a limit above 1000 or a query string
longer than MAX_QUERY is a 400.
"""

import datetime as dt
import html
import json
import os
from urllib.parse import parse_qs

EVE_LOG = os.environ.get("CRUST_IDS_EVE_LOG", "/var/log/suricata/eve.json")
SCAN_BYTES = 8 * 1024 * 1024  # what one request reads of the log, at most
BLOCK = 64 * 1024  # read backwards in blocks of this size
MAX_LINE = 1024 * 1024  # a longer EVE line is skipped, not accumulated
MAX_LIMIT = 1000
MAX_QUERY = 1024
SLACK = dt.timedelta(seconds=60)  # EVE lines are written nearly, not exactly, in time order
PARAMETERS = ("sid", "since", "until", "limit")


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
    text = environ.get("QUERY_STRING", "")
    if len(text) > MAX_QUERY:
        raise BadRequest(f"query string longer than {MAX_QUERY} bytes")
    try:
        params = parse_qs(text, keep_blank_values=False, strict_parsing=False, max_num_fields=len(PARAMETERS))
    except ValueError:
        raise BadRequest(f"too many parameters: use {', '.join(PARAMETERS)}") from None
    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise BadRequest(f"unknown parameter {sorted(unknown)[0]!r}: use {', '.join(PARAMETERS)}")
    repeated = [name for name, values in params.items() if len(values) > 1]
    if repeated:
        raise BadRequest(f"parameter {repeated[0]!r} given more than once")
    try:
        sid = int(params["sid"][0]) if "sid" in params else None
        since = parse_time(params["since"][0]) if "since" in params else None
        until = parse_time(params["until"][0]) if "until" in params else None
        limit = int(params.get("limit", ["100"])[0])
    except (ValueError, IndexError) as exc:
        raise BadRequest(f"bad parameter: {exc}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return sid, since, until, limit


def lines_backwards(fh, size, budget, state):
    """Complete lines of the file from its end backwards, reading at most budget bytes;
    state["truncated"] is set when the budget ran out before the file's start."""
    pos, rest, read = size, b"", 0
    while pos > 0:
        if read >= budget:
            state["truncated"] = True
            return
        step = min(BLOCK, pos, budget - read)
        pos -= step
        fh.seek(pos)
        chunk = fh.read(step)
        read += step
        parts = (chunk + rest).split(b"\n")
        rest = parts[0]
        if len(rest) > MAX_LINE:
            rest = b""  # the line is too long to be an alert worth showing: skip what is left of it
        for line in reversed(parts[1:]):
            if line:
                yield line
    if rest:
        yield rest  # the file's first line


def read_alerts(sid=None, since=None, limit=100, until=None, path=None, budget=None, opener=open):
    """(alerts newest first, whether the read bound ended the scan)."""
    state = {"truncated": False}
    alerts = []
    try:
        fh = opener(path or EVE_LOG, "rb")
    except FileNotFoundError:
        return [], False
    with fh:
        size = fh.seek(0, os.SEEK_END)
        for line in lines_backwards(fh, size, SCAN_BYTES if budget is None else budget, state):
            if b'"event_type":"alert"' not in line:
                continue
            try:
                event = json.loads(line)
                moment = parse_time(event["timestamp"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if since is not None and moment < since:
                if moment < since - SLACK:
                    break  # everything before this line is older still
                continue
            if until is not None and moment >= until:
                continue
            alert = event.get("alert") or {}
            if sid is not None and alert.get("signature_id") != sid:
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
                state["truncated"] = False  # the limit, not the bound, ended it
                break
    return alerts, state["truncated"]


def page(alerts, truncated):
    title = html.escape(os.environ.get("CRUST_APP_TITLE") or "IDS alerts")
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(a[k]))}</td>" for k in ("timestamp", "sid", "signature", "src_ip", "dest_ip", "dest_port")) + "</tr>"
        for a in alerts
    )
    more = " (the log was read only in part: older alerts may exist)" if truncated else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>{len(alerts)} most recent{more} (JSON: <a href='/api/alerts'>/api/alerts</a>)</p>"
        "<table border='1'><tr><th>time</th><th>sid</th><th>signature</th><th>source</th><th>destination</th><th>port</th></tr>"
        f"{rows}</table></body></html>\n"
    )


def respond(start_response, status, body, content_type, extra=()):
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))), ("Cache-Control", "no-store"), *extra])
    return [data]


def application(environ, start_response):
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        return respond(start_response, "405 Method Not Allowed", "read-only\n", "text/plain", [("Allow", "GET, HEAD")])
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        return respond(start_response, "200 OK", "ok\n", "text/plain")
    if path not in ("/api/alerts", "/alerts", "/"):
        return respond(start_response, "404 Not Found", "not found\n", "text/plain")
    try:
        sid, since, until, limit = query(environ)
    except BadRequest as exc:
        return respond(start_response, "400 Bad Request", json.dumps({"error": str(exc)}) + "\n", "application/json")
    alerts, truncated = read_alerts(sid, since, limit, until)
    if path == "/api/alerts":
        body = json.dumps({"alerts": alerts, "count": len(alerts), "truncated": truncated}) + "\n"
        return respond(start_response, "200 OK", body, "application/json")
    return respond(start_response, "200 OK", page(alerts, truncated), "text/html; charset=utf-8")
