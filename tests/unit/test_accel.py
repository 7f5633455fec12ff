"""The accelerator decision without booting: what is offered, what is remembered, what a stopped guest looks like."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import libvirt
import pytest

from crust.boot import accel
from crust.errors import CrustError


class FakeConn:
    """A libvirt connection whose domain capabilities offer KVM, or raise as libvirt does."""

    def __init__(self, kvm: bool = True) -> None:
        self.kvm = kvm

    def getDomainCapabilities(self, *args: Any) -> str:
        if not self.kvm:
            raise libvirt.libvirtError("invalid argument: KVM is not supported by '/usr/bin/qemu-system-x86_64' on this host")
        return "<domainCapabilities/>"


class FakeDomain:
    def __init__(self, state: tuple[int, int] | None, name: str = "crust-x-1-ab") -> None:
        self._state = state
        self._name = name

    def state(self) -> tuple[int, int]:
        if self._state is None:
            err = libvirt.libvirtError("Domain not found: no domain with matching uuid")
            err.err = (libvirt.VIR_ERR_NO_DOMAIN, 0, "Domain not found", 2, "", None, None, 0, 0)
            raise err
        return self._state

    def name(self) -> str:
        return self._name


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRUST_ACCEL_STATE", str(tmp_path / "accel"))
    monkeypatch.delenv(accel.FAULT_ENV, raising=False)
    monkeypatch.setattr(accel, "KVM_DEVICE", tmp_path / "kvm")
    (tmp_path / "kvm").touch()
    return tmp_path / "accel"


URI = "qemu:///system"


def test_tcg_requested_never_looks_at_kvm() -> None:
    decision = accel.decide(FakeConn(kvm=False), URI, "tcg")
    assert (decision.accel, decision.reason, decision.probe) == ("tcg", "TCG requested (--accel tcg)", False)


def test_no_device_or_no_libvirt_kvm_is_tcg_with_the_reason(tmp_path: Path) -> None:
    decision = accel.decide(FakeConn(kvm=False), URI, "auto")
    assert decision.accel == "tcg" and "libvirt offers no KVM (invalid argument: KVM is not supported" in decision.reason
    (tmp_path / "kvm").unlink()
    decision = accel.decide(FakeConn(), URI, "auto")
    assert decision.accel == "tcg" and f"no {tmp_path / 'kvm'}" in decision.reason
    assert decision.record()["probe"] is None


def test_first_kvm_boot_is_the_probe_then_the_verdict_is_remembered(state: Path) -> None:
    first = accel.decide(FakeConn(), URI, "auto")
    assert (first.accel, first.probe) == ("kvm", True)
    verdict = accel.remember(URI, False, "the guest is paused (qemu stopped it) 2.0s after start")
    fallback = accel.after_probe(verdict)
    assert fallback.accel == "tcg" and fallback.reason.startswith("KVM does not work here (the guest is paused")
    assert fallback.reason.endswith("probed now); using TCG")
    again = accel.decide(FakeConn(), URI, "auto")
    assert (again.accel, again.probe, again.remembered) == ("tcg", False, True)
    assert f"probed {verdict.decided}" in again.reason
    record = again.record()
    assert record["probe"]["works"] is False and record["probe"]["remembered"] is True
    assert record["probe"]["why"] == verdict.why
    # Per libvirt URI: another daemon is probed on its own.
    assert accel.decide(FakeConn(), "qemu+ssh://elsewhere/system", "auto").probe
    # Per host boot: a verdict of another boot is not used.
    path = accel.verdict_path(URI)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "boot_id": "another-boot"}))
    assert accel.decide(FakeConn(), URI, "auto").probe
    accel.forget()
    assert list(state.iterdir()) == []


def test_a_working_kvm_is_remembered_as_working() -> None:
    accel.remember(URI, True, "the guest agent answered 6.1s after start")
    decision = accel.decide(FakeConn(), URI, "auto")
    assert decision.accel == "kvm" and decision.reason.startswith("KVM works here (the guest agent answered")


def test_start_failure_falls_back_under_auto_and_fails_under_kvm() -> None:
    exc = libvirt.libvirtError(
        "internal error: qemu unexpectedly closed the monitor: 2026-11-29T21:21:55.239632Z qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"
    )
    fallback = accel.start_failed(accel.decide(FakeConn(), URI, "auto"), URI, exc)
    assert fallback.accel == "tcg"
    assert (
        "the domain did not start: internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: error: failed to set MSR"
        in fallback.reason
    )
    assert "2026-11-29T" not in fallback.reason.split("probed")[0]  # qemu's time stamp is dropped
    accel.forget()
    required = accel.decide(FakeConn(), URI, "kvm")
    assert required.required and required.accel == "kvm"
    with pytest.raises(accel.KvmFailed, match=r"KVM was requested \(--accel kvm\) but the domain did not start") as raised:
        accel.start_failed(required, URI, exc)
    assert isinstance(raised.value, CrustError) and raised.value.exit_status == 1
    assert accel.remembered(URI) is None  # --accel kvm records no verdict


def test_kvm_requested_where_none_is_offered_is_an_error() -> None:
    with pytest.raises(accel.KvmFailed, match="libvirt offers no KVM"):
        accel.decide(FakeConn(kvm=False), URI, "kvm")


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ((libvirt.VIR_DOMAIN_RUNNING, 1), None),
        ((libvirt.VIR_DOMAIN_BLOCKED, 0), None),
        ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_UNKNOWN), "the guest is paused (qemu stopped it: a KVM internal error"),
        ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER), "the guest is paused (paused by a client)"),
        ((libvirt.VIR_DOMAIN_CRASHED, 0), "the guest is crashed"),
        ((libvirt.VIR_DOMAIN_SHUTOFF, 2), "the guest is shut off"),
        (None, "the domain is gone (its qemu process exited)"),
    ],
)
def test_a_stopped_guest_is_named(state: tuple[int, int] | None, words: str | None) -> None:
    seen = accel.stopped(FakeDomain(state))
    assert seen == words if words is None else seen is not None and seen.startswith(words)


def test_probe_ends_at_once_when_the_guest_stops_and_at_the_window_when_it_hangs() -> None:
    works, why = accel.watch_probe(FakeDomain((libvirt.VIR_DOMAIN_PAUSED, 0)), lambda: False, 30)
    assert not works and why.startswith("the guest is paused")
    works, why = accel.watch_probe(FakeDomain((libvirt.VIR_DOMAIN_RUNNING, 1)), lambda: False, 0.6)
    assert not works and why == "the guest agent did not answer within 1s (the guest hangs)"
    works, why = accel.watch_probe(FakeDomain((libvirt.VIR_DOMAIN_RUNNING, 1)), lambda: True, 30)
    assert works and why.startswith("the guest agent answered")


@pytest.mark.parametrize("mode", accel.FAULT_MODES)
def test_fault_modes_make_any_host_look_broken(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(accel.FAULT_ENV, mode)
    decision = accel.decide(FakeConn(kvm=False), URI, "auto")
    if mode == "absent":
        assert decision.accel == "tcg" and "CRUST_FAULT_KVM=absent" in decision.reason
        return
    assert decision.probe  # offered, even where libvirt has no KVM: the probe path runs
    assert accel.probe_domain_type(decision) == ("kvm" if mode == "start-fails" else "qemu")
    assert bool(accel.fault_extra_args()) is (mode == "start-fails")
    assert accel.fault_drops_agent() is (mode == "hangs")
