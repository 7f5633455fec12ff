"""The interpreter Ansible's modules start with in the tree: `/usr/bin/python3 BOOT` (BOOT is this
file, bound read-only into the build sandbox by crust/tree/ansible.py).

Runs in the tree's own Python, not Crust's: the standard library only, nothing of Crust.

Each module Ansible runs is a zip (AnsiballZ) of the module and the module_utils it imports.
A fresh interpreter per module spends most of its time on imports: 0.3 s of a 0.42 s stat
module compiling them from source under Debian 13's Python 3.13 here, and 0.1 s more running
ansible.module_utils.basic's import (some 50 modules) even from compiled code. Two things cut that:

- CACHE keeps each compiled module (a directory of the role step's work dir, or of its build's
  scratch folder shared by the role steps of one build of one appliance; bound read-write beside
  this file), keyed by the Python version, the module's name and its source: code of another
  source is never served, and a missing, unreadable or corrupt entry is compiled again.
- The module server (`BOOT --crust-module-server`, started in its own build sandbox on the tree
  by crust/tree/ansible.py for the length of a playbook) imports ansible.module_utils.basic
  once, from the first payload that holds it, and forks a child per module run: a stat module
  then takes 15 ms instead of 140 ms. Each run `BOOT` is started for hands its program, its
  arguments, environment, working directory, umask and standard streams to the server over the
  socket beside this file and exits with the child's status; with no server there (or none
  answering) it runs the program itself.

  A child runs the module as a fresh interpreter would, with one difference: the modules the
  server imported are already there. It uses them only if the module's own payload holds the
  very same source for each (the same ansible-core made both; a role's own module_utils named
  like a core one would differ), and the packages among them then find their other modules in
  the payload, as a fresh interpreter's would. Otherwise the child drops them all and imports
  the payload's own, as a fresh interpreter does.

Nothing else changes: the module runs as `/usr/bin/python3` would run it (from stdin, as
pipelining sends it, or from the file named), with this file's directory off sys.path and the
environment untouched, so the commands a module runs never see any of this.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import marshal
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import traceback
import types
import zipfile
import zipimport
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "cache")
SERVER_DIR = os.path.join(HERE, "server")  # written by the server only; the tasks' sandboxes bind it read-only
SOCKET = os.path.join(SERVER_DIR, "socket")
SERVE = "--crust-module-server"
PAYLOAD = "_payload.zip"  # how AnsiballZ names the zip it imports from (ansible_stat_payload.zip)
PRELOAD = os.path.join(SERVER_DIR, "preload.zip")  # the server's copy of the payload it imported from
PRELOAD_NAMES = ("ansible.module_utils.basic", "ansible.module_utils._internal._ansiballz._loader")
LOADER = "ansible.module_utils._internal._ansiballz._loader"
STATS = "stats"  # a line per module run: "SERVED COMPILED HOW" (what the step log reports)
HEADER = struct.Struct("!II")  # the request's JSON and program lengths
counts = [0, 0]
how = ["alone"]  # "alone", "forked" (the server's imports used), "fresh" (forked, its own imports) or "server" (its preload)


class CachingZipImporter(zipimport.zipimporter):
    def get_code(self, fullname: str) -> Any:
        try:
            source = self.get_source(fullname)
        except (ImportError, UnicodeDecodeError):
            source = None
        if source is None:
            return super().get_code(fullname)
        key = hashlib.sha256(f"{sys.version}\0{fullname}\0{source}".encode("utf-8", "surrogateescape")).hexdigest()
        path = os.path.join(CACHE, key)
        try:
            with open(path, "rb") as fh:
                code = marshal.load(fh)
            counts[0] += 1
            return code
        except (OSError, EOFError, ValueError, TypeError):
            pass
        code = super().get_code(fullname)
        counts[1] += 1
        partial = f"{path}.{os.getpid()}"
        try:
            with open(partial, "wb") as fh:
                marshal.dump(code, fh)
            os.replace(partial, path)
        except OSError:  # no cache here (or a full disk): compiled each time, as before
            pass
        return code


def payload_hook(path: str) -> CachingZipImporter:
    """The payload zip, and its packages' directories in it (ZIP/ansible/module_utils)."""
    if not (path.endswith(PAYLOAD) or PAYLOAD + os.sep in path or path == PRELOAD or path.startswith(PRELOAD + os.sep)):
        raise ImportError(path)
    return CachingZipImporter(path)


def report() -> None:
    try:
        with open(os.path.join(CACHE, STATS), "a", encoding="ascii") as fh:
            fh.write(f"{counts[0]} {counts[1]} {how[0]}\n")
    except OSError:
        pass


def install_hooks() -> None:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
    sys.path_hooks.insert(0, payload_hook)
    sys.path_importer_cache.clear()


def run_program(argv: list[str], program: bytes | None) -> None:
    """Run a module as `python3 FILE ARGS...` or `python3 < PROGRAM` would."""
    if argv:  # a module file (no pipelining)
        sys.argv[:] = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
        return
    sys.argv[:] = [""]  # as `python3` reading its program from stdin: a __main__ without __file__
    code = compile(program if program is not None else sys.stdin.buffer.read(), "<stdin>", "exec")
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def main() -> None:
    if sys.argv[1:2] == [SERVE]:
        serve()
        return
    if delegate():
        return
    atexit.register(report)
    install_hooks()
    run_program(sys.argv[1:], None)


# The client side: hand the run to the server.


def recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the module server closed the connection")
        data += chunk
    return data


def delegate() -> bool:
    """Run this module in a child of the server; False if there is no server to take it."""
    if not os.path.exists(SOCKET):
        return False
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(SOCKET)
    except OSError:
        conn.close()
        return False
    argv = sys.argv[1:]
    program = b"" if argv else sys.stdin.buffer.read()
    umask = os.umask(0o022)
    os.umask(umask)
    request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask}).encode()
    try:
        socket.send_fds(conn, [HEADER.pack(len(request), len(program))], [0, 1, 2])
        conn.sendall(request + program)
        status = struct.unpack("!i", recv_exact(conn, 4))[0]
    except OSError as exc:
        sys.stderr.write(f"crust: the module server failed this run: {exc}\n")
        sys.exit(1)
    sys.stdout.flush()
    os._exit(status)


# The server side.

preloaded: dict[str, bytes] = {}  # archive name in PRELOAD -> source, of each module the server imported


def preload(program: bytes) -> None:
    """Import PRELOAD_NAMES from the payload in program (an AnsiballZ wrapper, its zip as the
    base64 string argument zip_data), once."""
    import base64
    import importlib
    import re

    found = re.search(rb"\nzip_data='([A-Za-z0-9+/=]+)'", program)
    if preloaded or found is None:
        return
    with open(PRELOAD, "wb") as fh:
        fh.write(base64.b64decode(found.group(1)))
    with zipfile.ZipFile(PRELOAD) as z:
        if "ansible/module_utils/basic.py" not in z.namelist():
            return
        sys.path.insert(0, PRELOAD)
        try:
            for name in PRELOAD_NAMES:
                importlib.import_module(name)
        except Exception:  # a payload the server cannot use: every child imports its own
            traceback.print_exc()
            drop_ansible_modules()
            return
        finally:
            sys.path.remove(PRELOAD)
        for module in list(sys.modules.values()):
            origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
            if origin.startswith(PRELOAD + "/"):
                preloaded[origin[len(PRELOAD) + 1 :]] = z.read(origin[len(PRELOAD) + 1 :])
    loader = sys.modules[LOADER]
    loader.run_module = checked(loader.run_module)  # type: ignore[attr-defined]
    how[0] = "server"
    report()  # the server's own imports


def drop_ansible_modules() -> None:
    for name in list(sys.modules):
        if name == "ansible" or name.startswith("ansible."):
            del sys.modules[name]
    sys.path_importer_cache.clear()


def same_sources(modlib_path: str) -> bool:
    """Whether the payload holds, for every module the server imported, the same source."""
    try:
        with zipfile.ZipFile(modlib_path) as z:
            names = set(z.namelist())
            return all(name in names and z.read(name) == source for name, source in preloaded.items())
    except (OSError, zipfile.BadZipFile):
        return False


def checked(run_module: Any) -> Any:
    """run_module of the server's loader, for a child: with the server's modules if the
    payload's sources are theirs, else with the payload's own (a fresh interpreter's)."""

    def run(*, modlib_path: str, **kwargs: Any) -> None:
        if same_sources(modlib_path):
            how[0] = "forked"
            for module in list(sys.modules.values()):
                path = getattr(module, "__path__", None)
                origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
                if origin.startswith(PRELOAD + "/") and isinstance(path, list):
                    module.__path__ = [modlib_path + p[len(PRELOAD) :] if p.startswith(PRELOAD + "/") else p for p in path]
            return run_module(modlib_path=modlib_path, **kwargs)  # type: ignore[no-any-return]
        how[0] = "fresh"
        drop_ansible_modules()
        import importlib

        return importlib.import_module(LOADER).run_module(modlib_path=modlib_path, **kwargs)  # type: ignore[no-any-return]

    return run


def run_child(request: dict[str, Any], program: bytes, fds: list[int]) -> None:
    """In the forked child: become the process `python3` would have been, run the module, exit."""
    try:
        os.setpgid(0, 0)  # its own group: stopped as one with whatever it starts
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        how[0] = "fresh"  # until the loader finds the server's imports usable
        counts[:] = [0, 0]  # this run's imports, not the server's
        atexit.register(report)
        status = 0
        try:
            run_program(request["argv"], None if request["argv"] else program)
        except SystemExit as exc:
            code = exc.code
            if code is None:
                status = 0
            elif isinstance(code, int):
                status = code
            else:
                sys.stderr.write(f"{code}\n")
                status = 1
        except BaseException:  # as the interpreter: the traceback, status 1
            traceback.print_exc()
            status = 1
        atexit._run_exitfuncs()  # what interpreter exit runs
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe: nothing more to say
                pass
        os._exit(status & 0xFF)
    except BaseException:  # never return into the server's loop
        os._exit(70)


def serve() -> None:
    """Accept runs on SOCKET until killed (the playbook's end): one child each."""
    install_hooks()
    os.makedirs(SERVER_DIR, exist_ok=True)
    partial = f"{SOCKET}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(partial)
    listener.listen(16)
    os.replace(partial, SOCKET)  # clients find a socket that already listens
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    running: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                conn, _ = listener.accept()
                start(conn, listener, selector, running)
            elif key.data[0] == "exited" and key.fd in running:
                pid, conn = running.pop(key.fd)
                selector.unregister(key.fd)
                os.close(key.fd)
                if conn.fileno() in selector.get_map():
                    selector.unregister(conn)
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall(struct.pack("!i", code if code >= 0 else 128 - code))
                except OSError:
                    pass
                conn.close()
            elif key.data[0] == "client" and key.data[1] in running:
                # The client went away (Ansible stopped it): so does its module, with whatever it started.
                selector.unregister(key.fileobj)
                try:
                    os.killpg(running[key.data[1]][0], signal.SIGKILL)
                except ProcessLookupError:
                    pass


def start(conn: socket.socket, listener: socket.socket, selector: selectors.BaseSelector, running: dict[int, tuple[int, socket.socket]]) -> None:
    """Read a run's request, fork its child, watch both."""
    try:
        head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        if len(head) < HEADER.size:
            head += recv_exact(conn, HEADER.size - len(head))
        size, length = HEADER.unpack(head)
        body = recv_exact(conn, size + length)
        request, program = json.loads(body[:size]), body[size:]
    except (OSError, ValueError, ConnectionError):
        conn.close()
        return
    if not request["argv"]:
        preload(program)
    pid = os.fork()
    if pid == 0:  # nothing of the server's stays open in the module
        for other_pidfd, (_, other) in running.items():
            os.close(other_pidfd)
            other.close()
        selector.close()
        listener.close()
        conn.close()
        run_child(request, program, fds)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    running[pidfd] = (pid, conn)
    selector.register(pidfd, selectors.EVENT_READ, ("exited",))
    selector.register(conn, selectors.EVENT_READ, ("client", pidfd))


if __name__ == "__main__":
    main()
