"""Fault injection: stop a build at a named point (a test hook, not a user feature).

With CRUST_FAULT="POINT:SIGNAL" in the environment, the Crust process sends itself SIGNAL
(SIGKILL, SIGINT, SIGTERM or SIGSTOP) the first time it reaches POINT, after printing
``crust: fault point POINT: SIGNAL`` on stderr. SIGINT goes to Crust's whole process group
when Crust leads it, as a terminal's Ctrl-C does (the commands run() starts have their own
sessions, as they do under a terminal), so it takes the normal Ctrl-C path. SIGSTOP lets a test
act at that point (look at a running command, fill the disk) and then send SIGCONT or kill.
At a ``run:TOOL`` point, SIGSTOP stops the command's process group first (its pgid is in the
line on stderr: ``... SIGSTOP (command: process group PGID)``): a test can then let the tool
run in small steps, stopping it again between looks, until it is at work (a short-lived tool
cannot finish unseen), resume it and signal Crust while the tool runs.
Unset, a point costs one environment lookup. tests/integration/test_faults.py walks them.

Points, in build order:
    run:TOOL          a command has just been started by runner.run() (TOOL as errors name it:
                      mmdebstrap, apt-get, ansible-playbook, ukify, mkfs.ext4, qemu-img, ...)
    tree.seal         the tree step, after the roles and scripts, before sealing
    image.start       the image step, before assembly
    commit:KIND       a step's outputs and step.json are written, before the rename into the store
    publish.staged    every artifact is linked under a temporary name beside its destination
    publish.artifact  right after an artifact is renamed into build/NAME (the first one)
    publish.manifest  the new manifest is written under a temporary name, before its rename
    test.domain       `test`: the smoke-test domain has just been started
    clean.entry       `clean`: an unused entry has been moved out of steps/, not yet removed
    libvirt.upload    `upload --target libvirt`: the first chunk of the image has been sent
    libvirt.launch    `launch --target libvirt`: the machine's domain has just been started
    openstack.upload  `upload --target openstack`: the first chunk of the image has been read for Glance
    openstack.launch  `launch --target openstack`: the server has just been created
    azure.upload      `upload --target azure`: the first page range of the VHD has been sent
    azure.launch      `launch --target azure`: the VM's creation has just been asked for
    gcp.upload        `upload --target gcp`: the first chunk of the tar.gz (or of a part) has been sent
    gcp.launch        `launch --target gcp`: the instance has just been asked for
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from crust.log import log_line

ENV = "CRUST_FAULT"
SIGNALS = ("SIGKILL", "SIGINT", "SIGTERM", "SIGSTOP")

_fired = threading.Event()
_lock = threading.Lock()


def point(name: str, child: int | None = None) -> None:
    """Send the configured signal to this process if CRUST_FAULT names this point (once).

    child: the process group of a command just started (run:TOOL points), stopped too by SIGSTOP.
    """
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, sig = spec.rpartition(":")
    if target != name or sig not in SIGNALS:
        return
    with _lock:
        if _fired.is_set():
            return
        _fired.set()
    signum = signal.Signals[sig]
    also = ""
    if signum == signal.SIGSTOP and child is not None:
        try:
            os.killpg(child, signal.SIGSTOP)
            also = f" (command: process group {child})"
        except ProcessLookupError:
            also = " (command: already gone)"
    log_line(f"# fault point {name}: {sig}{also}")
    print(f"crust: fault point {name}: {sig}{also}", file=sys.stderr, flush=True)
    if signum == signal.SIGINT and os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signum)
    else:
        os.kill(os.getpid(), signum)
