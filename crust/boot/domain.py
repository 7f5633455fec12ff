"""libvirt domain XML for a smoke-test boot, built with ElementTree (never by string pasting)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
AGENT_CHANNEL = "org.qemu.guest_agent.0"


def machine_uuid() -> str:
    """A random domain UUID (the guest's SMBIOS product UUID) that no cloud-init takes for
    Amazon's: ds-identify calls a machine whose product UUID begins with "ec2" an EC2 instance
    (Xen-era instances are named so), and the guest then waits minutes for a metadata service that
    is not there. libvirt's own random UUID does so once in 4096 boots."""
    while True:
        value = str(uuid.uuid4())
        if not value.lower().startswith("ec2"):
            return value


@dataclass(frozen=True)
class DomainConfig:
    name: str
    accel: str  # "kvm" or "tcg"
    disk: Path  # the per-run overlay
    nvram: Path  # the per-run copy of the OVMF variables
    serial_log: Path
    forwards: tuple[tuple[int, int], ...]  # (host port on 127.0.0.1, guest port)
    memory_mib: int = 1024
    vcpus: int = 2
    seed: Path | None = None  # a read-only NoCloud seed disk (cloud-init user data)
    agent: bool = True  # the qemu guest agent's channel
    extra_args: tuple[str, ...] = ()  # more qemu arguments (crust.accel's fault simulation)
    uuid: str = field(default_factory=machine_uuid)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def on_root_bus(device: ET.Element, slot: int) -> None:
    """An explicit slot on pcie.0 (an integrated endpoint): else libvirt puts each device
    behind a PCIe root port of its own and adds a spare one, four bridges more for the firmware
    and the kernel to walk under TCG (all checks passed in 25.7 s against 26.3 s, 3 boots each:
    within the noise, but fewer devices to set up)."""
    _sub(device, "address", type="pci", domain="0x0000", bus="0x00", slot=f"0x{slot:02x}", function="0x0")


def domain_xml(cfg: DomainConfig) -> str:
    ET.register_namespace("qemu", QEMU_NS)
    dom = ET.Element("domain", {"type": "kvm" if cfg.accel == "kvm" else "qemu"})
    _sub(dom, "name", cfg.name)
    _sub(dom, "uuid", cfg.uuid)
    _sub(dom, "memory", str(cfg.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(cfg.vcpus))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_el, "loader", str(OVMF_CODE), readonly="yes", type="pflash")
    _sub(os_el, "nvram", str(cfg.nvram), template=str(OVMF_VARS))
    _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    # TCG: a full CPU model (SSE4.2 and more, as real cloud CPUs have) but 4-level paging, as
    # cloud instances have: TCG's 5-level paging is a longer walk on every TLB miss and seldom
    # exercised (a guest panicked in free_unref_page under it once). KVM: the host's CPU.
    if cfg.accel == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    else:
        cpu = _sub(dom, "cpu", mode="maximum")
        _sub(cpu, "feature", policy="disable", name="la57")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", discard="unmap")
    _sub(disk, "source", file=str(cfg.disk))
    _sub(disk, "target", dev="vda", bus="virtio")
    on_root_bus(disk, 0x02)
    if cfg.seed is not None:
        seed = _sub(devices, "disk", type="file", device="disk")
        _sub(seed, "driver", name="qemu", type="raw")
        _sub(seed, "source", file=str(cfg.seed))
        _sub(seed, "target", dev="vdb", bus="virtio")
        _sub(seed, "readonly")
        on_root_bus(seed, 0x03)
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(cfg.serial_log))
    _sub(serial, "target", port="0")
    if cfg.agent:
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    on_root_bus(rng, 0x05)
    if cfg.agent:
        on_root_bus(_sub(devices, "controller", type="virtio-serial", index="0"), 0x04)
    _sub(devices, "memballoon", model="none")
    # Nothing the appliance does not use: every extra device is udev work at boot under TCG.
    _sub(devices, "controller", type="usb", model="none")
    video = _sub(devices, "video")
    _sub(video, "model", type="none")
    # User-mode networking with host port forwards: libvirt 9.0 has no <portForward> for
    # type='user', so the netdev goes on qemu's command line (explicit PCI address: no clash
    # with libvirt's pcie-root-ports on q35; no iPXE ROM: the disk boots). No bridge, no host
    # firewall or sysctl change.
    cmdline = ET.SubElement(dom, f"{{{QEMU_NS}}}commandline")
    fwd = "".join(f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for host, guest in cfg.forwards)
    # restrict=on: the guest reaches neither the host (its loopback services) nor the outside;
    # only the declared forwards connect, from the host in.
    netdev = ("-netdev", f"user,id=crustnet0,restrict=on{fwd}", "-device", "virtio-net-pci,netdev=crustnet0,bus=pcie.0,addr=0x10,romfile=")
    for arg in (*netdev, *cfg.extra_args):
        ET.SubElement(cmdline, f"{{{QEMU_NS}}}arg", {"value": arg})
    return ET.tostring(dom, encoding="unicode")
