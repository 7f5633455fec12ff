"""A real OpenStack Glance image API (glance 33, PyPI) on loopback for the tests: no Keystone.

Glance 33 has no standalone server any more (`glance-api` only prints "Deploy Glance under a WSGI
server"): the WSGI app glance.wsgi.api:application runs under uWSGI (the `pyuwsgi` wheel, no
compiler needed). It reads glance-api.conf from $OS_GLANCE_CONFIG_DIR. Storage: SQLite and the
file store (multi-store form: enabled_backends plus the reserved staging and tasks stores).

Authentication (see glance_notes.md): by default (`trust_headers=True`) the paste pipeline has
glance's ContextMiddleware without keystonemiddleware, so every request states who it is with the
headers that keystonemiddleware would have set: `identity_headers("project-a")`. Glance 33's
secure-RBAC policies then behave as in a real cloud (owner, shared visibility, members, admin-only
public images). With `trust_headers=False` every request is an anonymous admin with no project
(glance's unauthenticated-context pipeline, and a policy file that lets a context without roles
pass the admin rules): simpler for a client that can't add headers, but images have no owner.

The venv is made with:
    python3 -m venv VENV && VENV/bin/pip install glance==33.0.0 pyuwsgi
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_ATTEMPTS = 3  # a free port can be taken by someone else between probe and bind: try another

PASTE_INI = """\
# Minimal pipelines without keystonemiddleware (authtoken).
[composite:glance-api-trusted]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[composite:glance-api]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[composite:api]
paste.composite_factory = glance.api:pipeline_factory
# identity from X-Identity-Status: Confirmed, X-Project-Id, X-Roles, X-User-Id request headers
trusted = http_proxy_to_wsgi versionnegotiation context rootapp
# every request: is_admin=True, no roles, no project
default = http_proxy_to_wsgi versionnegotiation unauthenticated-context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[app:healthcheck]
paste.app_factory = oslo_middleware:Healthcheck.app_factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:unauthenticated-context]
paste.filter_factory = glance.api.middleware.context:UnauthenticatedContextMiddleware.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory
"""


def identity_headers(project_id: str, roles: Sequence[str] = ("member", "reader"), user_id: str | None = None) -> dict[str, str]:
    """The headers keystonemiddleware would set for a token of this project (trust_headers=True).

    roles ("member", "reader") make a project user (owns, shares, accepts shares);
    ("admin", "member", "reader") an admin (public images, owner=..., sees every image).
    """
    return {
        "X-Identity-Status": "Confirmed",
        "X-Project-Id": project_id,
        "X-User-Id": user_id or f"user-{project_id}",
        "X-Roles": ",".join(roles),
    }


def glance_available(venv: Path) -> bool:
    return all((venv / "bin" / tool).is_file() for tool in ("glance-manage", "uwsgi"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api_conf(workdir: Path, trust_headers: bool, debug: bool) -> str:
    policy = "" if trust_headers else f"\n[oslo_policy]\npolicy_file = {workdir / 'etc' / 'policy.yaml'}\n"
    return f"""\
[DEFAULT]
enabled_backends = local:file
log_file = {workdir / "glance-api.log"}
debug = {str(debug).lower()}

[database]
connection = sqlite:///{workdir / "glance.sqlite"}

[glance_store]
default_backend = local

[local]
filesystem_store_datadir = {workdir / "images"}/

[os_glance_staging_store]
filesystem_store_datadir = {workdir / "staging"}/

[os_glance_tasks_store]
filesystem_store_datadir = {workdir / "tasks"}/

[oslo_concurrency]
lock_path = {workdir / "locks"}

[paste_deploy]
flavor = {"trusted" if trust_headers else ""}
config_file = {workdir / "etc" / "glance-api-paste.ini"}
{policy}"""


def _uwsgi_ini(port: int) -> str:
    return f"""\
[uwsgi]
http-socket = 127.0.0.1:{port}
module = glance.wsgi.api:application
master = true
processes = 1
threads = 4
enable-threads = true
lazy-apps = true
need-app = true
die-on-term = true
buffer-size = 65535
# glance reads a chunked PUT with uwsgi.chunked_read(): parts above this limit (default 1 MB) fail
chunked-input-limit = 67108864
add-header = Connection: close
"""


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name}: none)"
    return f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the uWSGI master (it stops its worker); SIGKILL the whole process group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def glance_server(venv: Path, workdir: Path, *, trust_headers: bool = True, debug: bool = False, timeout: float = STARTUP_TIMEOUT) -> Iterator[str]:
    """Configure, db_sync and start glance-api on a free loopback port; yields its base URL.

    workdir holds the configuration (etc/), the SQLite database, the image, staging and tasks
    stores, and the logs (glance-api.log, uwsgi.log). A startup that fails or times out raises
    RuntimeError with the tails of both logs. On exit the server's process group is stopped.
    """
    etc = workdir / "etc"
    for d in (etc, workdir / "images", workdir / "staging", workdir / "tasks", workdir / "locks"):
        d.mkdir(parents=True, exist_ok=True)
    api_conf = etc / "glance-api.conf"
    api_conf.write_text(_api_conf(workdir, trust_headers, debug))
    (etc / "glance-api-paste.ini").write_text(PASTE_INI)
    if not trust_headers:
        # The unauthenticated context has no roles: make every rule that asks for admin (or the
        # service role) pass, as glance's own functional tests do, so that it may do anything.
        (etc / "policy.yaml").write_text('"context_is_admin": "@"\n"service_api": "@"\n')
    glance_log, uwsgi_log = workdir / "glance-api.log", workdir / "uwsgi.log"
    # the venv's own interpreter, undisturbed by the caller's (e.g. pytest's) python settings
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["OS_GLANCE_CONFIG_DIR"] = str(etc)

    sync = subprocess.run(
        [str(venv / "bin" / "glance-manage"), "--config-file", str(api_conf), "db_sync"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if sync.returncode != 0:
        raise RuntimeError(f"glance-manage db_sync failed ({sync.returncode}):\n{sync.stderr[-4000:]}\n{_tail(glance_log)}")

    for attempt in range(1, _ATTEMPTS + 1):
        port = _free_port()
        (etc / "uwsgi.ini").write_text(_uwsgi_ini(port))
        log_start = uwsgi_log.stat().st_size if uwsgi_log.exists() else 0
        base = f"http://127.0.0.1:{port}"
        with uwsgi_log.open("ab") as log:
            proc = subprocess.Popen(
                [str(venv / "bin" / "uwsgi"), "--ini", str(etc / "uwsgi.ini")],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            bound = f"bound to TCP address 127.0.0.1:{port} ".encode()
            # Until our uWSGI logs that it holds the port, an answer there may come from someone else.
            while not (bound in _read_from(uwsgi_log, log_start) and _answers(f"{base}/versions")):
                if proc.poll() is not None:
                    if b"Address already in use" in _read_from(uwsgi_log, log_start) and attempt < _ATTEMPTS:
                        break
                    raise RuntimeError(f"glance-api (uwsgi) exited with {proc.returncode} before answering\n{_tail(uwsgi_log)}\n{_tail(glance_log)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"glance-api did not answer {base}/versions within {timeout:.0f}s\n{_tail(uwsgi_log)}\n{_tail(glance_log)}")
                time.sleep(0.05)  # poll interval
            else:
                yield base
                return
        finally:
            _stop(proc)
    raise RuntimeError(f"glance-api found no free port in {_ATTEMPTS} attempts\n{_tail(uwsgi_log)}")
