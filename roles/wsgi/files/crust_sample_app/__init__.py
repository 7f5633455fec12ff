"""Crust's sample WSGI application: a page naming the appliance and its build, and /healthz."""

import html
import os

RELEASE_FILE = "/etc/crust-release"


def read_release(path=RELEASE_FILE):
    info = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    info[key] = value
    except OSError:
        pass
    return info


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        body = b"ok\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path != "/":
        body = b"not found\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    release = read_release()
    title = html.escape(os.environ.get("CRUST_APP_TITLE", "Crust appliance"))
    rows = "".join(
        f"<tr><th>{html.escape(k.lower().replace('_', ' '))}</th><td>{html.escape(v)}</td></tr>"
        for k, v in release.items()
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>Appliance <strong>{html.escape(release.get('APPLIANCE', '?'))}</strong>, "
        f"build <code>{html.escape(release.get('BUILD_ID', '?'))}</code></p>"
        f"<table>{rows}</table></body></html>\n"
    )
    body = page.encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
