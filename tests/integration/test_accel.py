"""Every way KVM fails on hosts of this kind falls back to TCG in the same run (issue 13).

Each mode is made real on any host by crust.accel's test hook (CRUST_FAULT_KVM): qemu
rejecting an argument at start (libvirt's createXML raises, as with "failed to set MSR"), the
guest paused as qemu pauses it on a KVM internal error, its qemu process killed, a guest whose
agent never answers, no /dev/kvm. Each run has its own verdict directory, so none passes on a
verdict an earlier run left.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, build_py
from tests.integration.test_smoke import leftovers

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]

# The accelerator is what these tests are about, and no boot analysis (12 s a boot). A fallback
# is shown by the TCG domain running the image's firmware up to the boot entry it starts (the
# console's line, some 10 s after start); the panic tests boot the guest until its agent reads
# the build's identity file (before the services are up). Every other boot of the suite runs
# through the same accelerator decision to all its checks.
TEST = """
[test]
ports = [80]
boot_timeout = 240
boot_analysis = false

[[test.checks]]
"""
FIRMWARE_CHECK = (
    TEST
    + """name = "the firmware starts the image's boot entry"
type = "console"
pattern = "^BdsDxe: starting Boot[0-9A-F]{4} "
timeout = 200
"""
)
AGENT_CHECK = (
    TEST
    + """name = "the booted guest reads its build's identity"
type = "command"
argv = ["cat", "/etc/crust-release"]
output = "APPLIANCE=wsgi"
timeout = 200
"""
)

# mode -> what the one line printed and recorded says about the failed KVM attempt
MODES = {
    # libvirt words it "qemu unexpectedly closed the monitor" or "process exited while connecting to
    # monitor", by timing; qemu's own line names the argument it refused.
    "start-fails": "the domain did not start: internal error: ",
    "pauses": "the guest is paused (paused by a client)",
    "crashes": "the domain is gone (its qemu process exited)",
    "hangs": "the guest agent did not answer within 8s (the guest hangs)",
}


def one_check(tmp_path: Path, check: str = FIRMWARE_CHECK) -> Path:
    text = (ROOT / "appliances" / "wsgi.toml").read_text()
    folder = tmp_path / "appliances"
    folder.mkdir()
    (folder / "wsgi.toml").write_text(text[: text.index("[test]")] + check)
    return folder


def fault_env(tmp_path: Path, mode: str) -> dict[str, str]:
    return {"CRUST_FAULT_KVM": mode, "CRUST_KVM_PROBE_SECONDS": "8", "CRUST_ACCEL_STATE": str(tmp_path / "accel")}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_broken_kvm_falls_back_to_tcg_in_the_same_run(built: Built, tmp_path: Path, mode: str) -> None:
    built("wsgi")
    env = fault_env(tmp_path, mode)
    out = build_py("--appliances", str(one_check(tmp_path)), "test", "wsgi", "--force", "--json", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout)[0]
    assert record["passed"] and record["accel"] == "tcg"
    assert record["checks"][0]["seen"].startswith("console: 'BdsDxe: starting Boot"), record["checks"]
    # One line says why, before the TCG boot; the record carries the same reason and verdict.
    lines = out.stderr.splitlines()
    why = next(line for line in lines if "KVM does not work here" in line)
    assert MODES[mode] in why and why.endswith("probed now); using TCG"), why
    if mode == "start-fails":
        assert "crust-fault-kvm-start-fails" in why, why
    assert lines.index(why) < next(i for i, line in enumerate(lines) if "booting build" in line)
    assert record["accel_reason"] == why.split(": ", 1)[1]
    probe = record["accel_decision"]["probe"]
    assert probe["works"] is False and MODES[mode] in probe["why"] and probe["remembered"] is False
    # Remembered for this host boot: the file says so, and the smoke results too.
    verdicts = list((tmp_path / "accel").glob("*.json"))
    assert len(verdicts) == 1 and json.loads(verdicts[0].read_text())["why"] == probe["why"]
    assert json.loads((ROOT / "build" / "wsgi" / "smoke" / "results.json").read_text())["accel_decision"] == record["accel_decision"]
    assert leftovers("wsgi") == []


def test_no_kvm_device_is_tcg_without_a_probe(built: Built, tmp_path: Path) -> None:
    built("wsgi")
    out = build_py("--appliances", str(one_check(tmp_path)), "test", "wsgi", "--force", "--json", env=fault_env(tmp_path, "absent"))
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout)[0]
    assert record["accel"] == "tcg" and record["accel_reason"].startswith("no KVM here: no /dev/kvm")
    assert record["passed"] and record["checks"][0]["seen"].startswith("console: 'BdsDxe: starting Boot"), record["checks"]
    assert record["accel_decision"]["probe"] is None
    assert not (tmp_path / "accel").exists() or list((tmp_path / "accel").iterdir()) == []
    assert leftovers("wsgi") == []


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("start-fails", "but the domain did not start"),
        ("hangs", "but the guest agent did not answer within 8s"),
        ("absent", "but no /dev/kvm"),
    ],
)
def test_kvm_requested_fails_loudly(built: Built, tmp_path: Path, mode: str, words: str) -> None:
    built("wsgi")
    out = build_py("--appliances", str(one_check(tmp_path)), "test", "wsgi", "--force", "--accel", "kvm", env=fault_env(tmp_path, mode))
    assert out.returncode == 1, out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("error: KVM was requested (--accel kvm) " + words), error
    assert "fix: --accel auto falls back to TCG" in error
    assert "booting build" not in out.stderr and "using TCG" not in out.stderr
    assert not (tmp_path / "accel").exists() or list((tmp_path / "accel").iterdir()) == []
    assert leftovers("wsgi") == []


SYSRQ_PANIC = "Kernel panic - not syncing: sysrq triggered crash"


def test_a_guest_kernel_panic_boots_once_more(built: Built, tmp_path: Path) -> None:
    """A guest whose kernel panics once (seen under TCG on CI's host: in kfree, in an interrupt)
    is booted once more on fresh run files; the panic is said, kept and recorded."""
    built("wsgi")
    env = {"CRUST_FAULT_GUEST": "panic", "CRUST_ACCEL_STATE": str(tmp_path / "accel")}
    out = build_py("--appliances", str(one_check(tmp_path, AGENT_CHECK)), "test", "wsgi", "--force", "--accel", "tcg", "--json", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout)[0]
    assert record["passed"]
    panicked = record["first_boot_panicked"]
    assert panicked["panic"] == SYSRQ_PANIC and panicked["accel"] == "tcg"
    lines = out.stderr.splitlines()
    boots = [i for i, line in enumerate(lines) if "booting build" in line]
    said = next(i for i, line in enumerate(lines) if "the guest kernel panicked" in line)
    assert len(boots) == 2 and boots[0] < said < boots[1], out.stderr
    # Not the check's whole timeout: the console's panic line ends the first boot's waiting, soon
    # after the hook made the panic (when the agent first answered: 60-130 s here, by the host's load).
    made = float(re.search(r"panic made ([0-9.]+)s after start", out.stderr).group(1))  # type: ignore[union-attr]
    assert made <= panicked["at_s"] < made + 30, (made, panicked)
    smoke = ROOT / "build" / "wsgi" / "smoke"
    assert SYSRQ_PANIC in (smoke / "serial-panicked.log").read_text(errors="replace")
    assert SYSRQ_PANIC not in (smoke / "serial.log").read_text(errors="replace")
    assert leftovers("wsgi") == []


def test_a_guest_that_panics_every_boot_fails(built: Built, tmp_path: Path) -> None:
    built("wsgi")
    env = {"CRUST_FAULT_GUEST": "panic-always", "CRUST_ACCEL_STATE": str(tmp_path / "accel")}
    out = build_py("--appliances", str(one_check(tmp_path, AGENT_CHECK)), "test", "wsgi", "--force", "--accel", "tcg", "--json", env=env)
    assert out.returncode == 1, out.stderr[-3000:]
    record = json.loads(out.stdout)[0]
    assert not record["passed"] and record["first_boot_panicked"]["panic"] == SYSRQ_PANIC
    assert f"the guest kernel panicked ({SYSRQ_PANIC})" in record["failure"]["seen"]
    assert SYSRQ_PANIC in record["failure"]["console_tail"]
    assert len([line for line in out.stderr.splitlines() if "booting build" in line]) == 2
    assert leftovers("wsgi") == []
