"""Which accelerator a boot gets: KVM only where it really boots a guest here, else TCG.

Machines of one kind differ in how KVM fails while libvirt still offers it:
  - the domain does not start: createXML raises (qemu exits at once, e.g. "failed to set MSR
    0x10a" with the host's CPU model);
  - the guest starts, then stops: qemu pauses it ("KVM internal error ... emulation failure"),
    it crashes or it shuts off;
  - the guest hangs (in the firmware, say) and its agent never answers.
With ``auto`` each of these is a "no": the same run goes on under TCG and says why in one
line. The verdict, with its reason, is remembered for this host boot and libvirt URI (a file
named by the kernel's boot id), so later runs neither probe again nor pay for a failing KVM
start. With ``kvm`` each of them is an error instead.

Every path that boots an image asks ``decide()``: ``test``, ``build --test``, the test suite's
plain-qemu helper (``probe()`` when there is no verdict yet) and the benchmark.

Test hook (not a user feature): CRUST_FAULT_KVM=MODE makes this host look like one whose KVM
fails in MODE, on any host, so each fallback is tested everywhere:
  absent       no /dev/kvm
  start-fails  qemu exits at start (an argument qemu rejects is added to the probe domain)
  pauses       the probe guest is paused after it starts (what qemu does on a KVM internal error)
  crashes      the probe guest's qemu process is killed after it starts
  hangs        the probe guest's agent never answers (the probe domain has no agent channel)
The probe domain of the last three runs under TCG, so that they work on hosts without KVM too.
CRUST_KVM_PROBE_SECONDS shortens the probe window (default 30 s) for such tests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import libvirt

from crust.errors import CrustError

FAULT_ENV = "CRUST_FAULT_KVM"
FAULT_MODES = ("absent", "start-fails", "pauses", "crashes", "hangs")
KVM_DEVICE = Path("/dev/kvm")


def probe_seconds() -> float:
    return float(os.environ.get("CRUST_KVM_PROBE_SECONDS", "30"))


def verdict_dir() -> Path:
    return Path(os.environ.get("CRUST_ACCEL_STATE", "/var/lib/crust/accel"))


def fault_mode() -> str | None:
    mode = os.environ.get(FAULT_ENV, "")
    return mode if mode in FAULT_MODES else None


@dataclass(frozen=True)
class Verdict:
    """Whether KVM booted a guest on this host (boot) through this libvirt URI, and why not."""

    works: bool
    why: str
    uri: str
    boot_id: str
    decided: str  # ISO 8601, UTC


@dataclass(frozen=True)
class Decision:
    accel: str  # "kvm" or "tcg"
    reason: str  # one line, printed and recorded
    verdict: Verdict | None = None  # the probe's verdict behind it, fresh or remembered
    remembered: bool = False  # the verdict came from an earlier run of this host boot
    probe: bool = False  # auto, KVM offered, no verdict yet: the first KVM boot is the probe
    required: bool = False  # --accel kvm: a KVM failure is an error, not a fallback

    def record(self) -> dict[str, Any]:
        """What results.json and --json say about the choice."""
        return {
            "accel": self.accel,
            "reason": self.reason,
            "probe": None if self.verdict is None else {**asdict(self.verdict), "remembered": self.remembered},
        }


class KvmFailed(CrustError):
    """KVM was required (--accel kvm) and does not work here."""


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()


def verdict_path(uri: str) -> Path:
    return verdict_dir() / f"{boot_id()}-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.json"


def remembered(uri: str) -> Verdict | None:
    try:
        data = json.loads(verdict_path(uri).read_text(encoding="utf-8"))
        verdict = Verdict(**data)
    except (OSError, ValueError, TypeError):
        return None
    return verdict if verdict.uri == uri and verdict.boot_id == boot_id() else None


def remember(uri: str, works: bool, why: str) -> Verdict:
    from crust.build.store import write_atomic

    verdict = Verdict(works, why, uri, boot_id(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    path = verdict_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(verdict), indent=2))
    return verdict


def forget() -> None:
    """Drop every remembered verdict (CI starts from none)."""
    for path in verdict_dir().glob("*.json"):
        path.unlink(missing_ok=True)


def kvm_offered(conn: Any) -> tuple[bool, str]:
    """Whether this host offers KVM at all: the device, and libvirt's domain capabilities."""
    mode = fault_mode()
    if mode == "absent":
        return False, f"no {KVM_DEVICE} ({FAULT_ENV}=absent)"
    if mode is not None:
        return True, f"KVM offered ({FAULT_ENV}={mode})"
    if not KVM_DEVICE.exists():
        return False, f"no {KVM_DEVICE}"
    try:
        conn.getDomainCapabilities(None, "x86_64", "q35", "kvm")
    except libvirt.libvirtError as exc:
        return False, f"libvirt offers no KVM ({first_line(exc)})"
    return True, "KVM offered"


def decide(conn: Any, uri: str, want: str) -> Decision:
    """The accelerator for a boot through conn, before any domain starts."""
    if want == "tcg":
        return Decision("tcg", "TCG requested (--accel tcg)")
    offered, why = kvm_offered(conn)
    if want == "kvm":
        if not offered:
            raise KvmFailed(f"KVM was requested (--accel kvm) but {why} (fix: --accel auto falls back to TCG, --accel tcg forces it)")
        return Decision("kvm", "KVM requested (--accel kvm)", required=True)
    if not offered:
        return Decision("tcg", f"no KVM here: {why}; using TCG")
    verdict = remembered(uri)
    if verdict is None:
        return Decision("kvm", "KVM offered; this boot is the probe", probe=True)
    return after_probe(verdict, remembered=True)


def after_probe(verdict: Verdict, remembered: bool = False) -> Decision:
    when = f"probed {verdict.decided}" if remembered else "probed now"
    if verdict.works:
        return Decision("kvm", f"KVM works here ({verdict.why}; {when})", verdict, remembered)
    return Decision("tcg", f"KVM does not work here ({verdict.why}; {when}); using TCG", verdict, remembered)


def start_failed(decision: Decision, uri: str, exc: libvirt.libvirtError) -> Decision:
    """A KVM domain did not start: an error under --accel kvm, else the verdict and TCG."""
    why = f"the domain did not start: {first_line(exc)}"
    if decision.required:
        raise KvmFailed(f"KVM was requested (--accel kvm) but {why} (fix: --accel auto falls back to TCG, --accel tcg forces it)")
    return after_probe(remember(uri, False, why))


STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "in no state",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended by the guest",
}
PAUSE_REASONS = {
    libvirt.VIR_DOMAIN_PAUSED_UNKNOWN: "qemu stopped it: a KVM internal error or emulation failure",
    libvirt.VIR_DOMAIN_PAUSED_USER: "paused by a client",
    libvirt.VIR_DOMAIN_PAUSED_IOERROR: "a disk I/O error",
    libvirt.VIR_DOMAIN_PAUSED_CRASHED: "the guest crashed",
}


def stopped(dom: Any) -> str | None:
    """Why the domain no longer runs its guest (paused, crashed, shut off, gone), or None."""
    try:
        state, reason = dom.state()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return "the domain is gone (its qemu process exited)"
        return f"the domain is gone ({first_line(exc)})"
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return None
    text = f"the guest is {STATE_NAMES.get(state, f'in state {state}')}"
    if state == libvirt.VIR_DOMAIN_PAUSED:
        text += f" ({PAUSE_REASONS.get(reason, f'reason {reason}')})"
    return text


def watch_probe(dom: Any, ping: Callable[[], bool], seconds: float) -> tuple[bool, str]:
    """Wait until the guest agent answers (KVM works), the guest stops, or time runs out."""
    started = time.monotonic()
    deadline = started + seconds
    simulate_fault(dom)
    while True:
        trouble = stopped(dom)
        if trouble is not None:
            return False, f"{trouble} {time.monotonic() - started:.1f}s after start"
        if ping():
            return True, f"the guest agent answered {time.monotonic() - started:.1f}s after start"
        if time.monotonic() >= deadline:
            return False, f"the guest agent did not answer within {seconds:.0f}s (the guest hangs)"
        time.sleep(0.5)


def probe_domain_type(decision: Decision) -> str:
    """The domain type of a KVM attempt: TCG under a simulated fault that needs the guest to run."""
    return "qemu" if fault_mode() in ("pauses", "crashes", "hangs") and decision.accel == "kvm" else "kvm"


def fault_extra_args() -> tuple[str, ...]:
    """qemu arguments that make the KVM attempt fail to start (CRUST_FAULT_KVM=start-fails)."""
    return ("-object", "crust-fault-kvm-start-fails,id=crustfault") if fault_mode() == "start-fails" else ()


def fault_drops_agent() -> bool:
    return fault_mode() == "hangs"


def simulate_fault(dom: Any) -> None:
    """Make a started probe guest fail the way CRUST_FAULT_KVM says (pauses, crashes)."""
    mode = fault_mode()
    if mode == "pauses":
        time.sleep(1.0)
        with contextlib.suppress(libvirt.libvirtError):
            dom.suspend()
    elif mode == "crashes":
        time.sleep(1.0)
        pid_file = Path("/run/libvirt/qemu") / f"{dom.name()}.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text(encoding="utf-8").strip()), signal.SIGKILL)


QEMU_TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")


def first_line(exc: BaseException) -> str:
    """The first line of a libvirt error, without the time stamp qemu puts in its messages."""
    lines = [QEMU_TIME.sub("", line).strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
