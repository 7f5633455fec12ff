"""The interpreter Ansible's modules start with in the tree: `/usr/bin/python3 BOOT` (BOOT is this
file, bound read-only into the build sandbox by crust/tree/ansible.py).

Runs in the tree's own Python, not Crust's: the standard library only, nothing of Crust.

Each module Ansible runs is a zip (AnsiballZ) of the module and the module_utils it imports,
imported from that zip, which Python compiles from source on every run: 0.3 s of a 0.42 s stat
module under Debian 13's Python 3.13 here, some 30 times a wsgi build. This keeps each compiled
module in CACHE (a directory of the role step's work dir, or of its build's scratch folder shared by the
role steps of one build of one appliance; bound read-write beside this file),
keyed by the Python version, the module's name and its source: code of another source is never
served, and a missing, unreadable or corrupt entry is compiled again. Nothing else changes: the
module runs as `/usr/bin/python3` would run it (from stdin, as pipelining sends it, or from the
file named), with this file's directory off sys.path and the environment untouched, so the
commands a module runs never see any of this.
"""

from __future__ import annotations

import atexit
import hashlib
import marshal
import os
import runpy
import sys
import types
import zipimport
from typing import Any

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache")
PAYLOAD = "_payload.zip"  # how AnsiballZ names the zip it imports from (ansible_stat_payload.zip)
STATS = "stats"  # a line per module run: "SERVED COMPILED" (what the step log reports)
counts = [0, 0]


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
    if not (path.endswith(PAYLOAD) or PAYLOAD + os.sep in path):
        raise ImportError(path)
    return CachingZipImporter(path)


def report() -> None:
    if counts != [0, 0]:
        try:
            with open(os.path.join(CACHE, STATS), "a", encoding="ascii") as fh:
                fh.write(f"{counts[0]} {counts[1]}\n")
        except OSError:
            pass


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    atexit.register(report)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path_hooks.insert(0, payload_hook)
    sys.path_importer_cache.clear()
    if len(sys.argv) > 1:  # a module file (no pipelining)
        del sys.argv[0]
        sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
        runpy.run_path(sys.argv[0], run_name="__main__")
        return
    sys.argv[:] = [""]  # as `python3` reading its program from stdin: a __main__ without __file__
    code = compile(sys.stdin.buffer.read(), "<stdin>", "exec")
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


if __name__ == "__main__":
    main()
