"""Command line: ./build.py VERB [options]. One module per group of verbs, each registering its own.

Bad input exits 2 with one line, a failure 1 with one line, an interruption 130; --debug adds
tracebacks. Nothing escapes main() as a bare traceback: an unexpected exception is a bug,
reported in one line (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from crust.cli import audit, build, cache, ci, cloud, define, test, verify
from crust.cli.common import PROJECT_ROOT, Parser
from crust.errors import CrustError, Problem
from crust.trust.secrets import register_environment

VERB_GROUPS = (define, build, test, audit, verify, cloud, cache, ci)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="build.py",
        description="Crust builds virtual appliances: appliance TOML + kickstart template + Ansible roles -> bootable disk images.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--store",
        type=Path,
        default=Path(os.environ.get("CRUST_STORE", PROJECT_ROOT / ".crust")),
        help="step store directory (default: .crust, or $CRUST_STORE)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(os.environ.get("CRUST_OUTPUT", PROJECT_ROOT / "build")),
        help="artifact directory (default: build, or $CRUST_OUTPUT)",
    )
    parser.add_argument("--appliances", type=Path, help="read appliance files from this directory instead of appliances/ (or $CRUST_APPLIANCES)")
    parser.add_argument("--roles", type=Path, help="read Ansible roles from this directory instead of roles/ (or $CRUST_ROLES)")
    parser.add_argument(
        "--allow-path",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="let host-path variables (an application's sources, say) name files in DIR too; besides the project and the "
        "appliance file's directory, nothing on the build host is read (repeatable)",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True
    for group in VERB_GROUPS:
        group.register(sub)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    signal.signal(signal.SIGTERM, _terminate)
    # Files Crust and its commands create (in trees, the store, build/) get the same modes
    # whatever the caller's umask (077 would make an image's files unreadable to its services).
    os.umask(0o022)
    register_environment()  # credentials of this environment are redacted from every log line
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
        return status
    except Problem as exc:
        if debug:
            traceback.print_exc()
        if exc.file and exc.file.startswith(f"{PROJECT_ROOT}/"):
            exc.file = exc.file[len(f"{PROJECT_ROOT}/") :]
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_status
    except CrustError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted: partial outputs removed", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if not stdout_closed():  # not our reader going away: some other pipe broke, a failure
            if debug:
                traceback.print_exc()
            print(f"error: broken pipe: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
            return 1
        # The reader of our output went away (./build.py plan | head): nothing more to say.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # else Python's final flush of stdout complains
            os.close(devnull)
        return 0
    except Exception as exc:  # a bug: one line, and the traceback with --debug
        if debug:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"error: internal error: {type(exc).__name__}: {first} (a bug in Crust: rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader is gone: writing to it fails with EPIPE."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (captured output)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))
