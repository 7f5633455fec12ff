"""Launch and terminate machines of an uploaded appliance on a libvirt host.

A launched machine is a persistent domain: a copy-on-write volume over the uploaded image, a
NoCloud seed volume (the SSH key and user data, the hostname), UEFI chosen by libvirt (secure
boot off: the image's kernel is unsigned), the pool, network, memory and vCPUs of the target.
Its metadata names the appliance and the image digest; its volumes are named after it.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt

from crust import faults
from crust.boot import accel
from crust.boot.machine import connect, make_seed
from crust.build.manifest import Manifest
from crust.build.store import Store, write_atomic
from crust.cloud.common import Undo, prefixed, require_first_boot_agent, ssh_public_key, user_data
from crust.cloud.libvirt import pool as pools
from crust.cloud.libvirt.settings import LibvirtTarget
from crust.cloud.libvirt.upload import location
from crust.cloud.target import Job
from crust.errors import CloudError, UserError

METADATA_NS = "https://crust.invalid/xmlns/launch/1"
AGENT_CHANNEL = "org.qemu.guest_agent.0"


def state_path(store: Store, name: str) -> Path:
    return store.root / "state" / "libvirt" / f"{name}.json"


def read_state(store: Store, name: str) -> list[dict[str, Any]]:
    path = state_path(store, name)
    if not path.is_file():
        return []
    machines: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")).get("machines", [])
    return machines


def write_state(store: Store, name: str, machines: list[dict[str, Any]]) -> None:
    path = state_path(store, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"appliance": name, "machines": machines}, indent=2, sort_keys=True))


def machine_volumes(machine: str) -> tuple[str, str]:
    """The root (copy-on-write) and seed volumes of a launched machine."""
    return f"{machine}.qcow2", f"{machine}-seed.img"


ACCEL_WANTED = {"auto": "auto", "kvm": "kvm", "qemu": "tcg"}


def start_machine(conn: Any, target: LibvirtTarget, xml_for: Callable[[str], str], say: Callable[[str], None]) -> tuple[Any, str]:
    """Define and start the domain: under KVM when the host's KVM works (Smoke tests' probe
    verdict per host boot and URI, crust.boot.accel), else emulated. A KVM that refuses to start
    the domain (one of the ways KVM fails) is remembered and the machine is defined again under
    emulation, unless domain_type = "kvm" asked for KVM."""
    decision = accel.decide(conn, target.uri, ACCEL_WANTED[target.domain_type])
    kind = "kvm" if decision.accel == "kvm" else "qemu"
    dom = conn.defineXML(xml_for(kind))
    try:
        dom.create()
    except libvirt.libvirtError as exc:
        if kind != "kvm":
            raise CloudError(
                f"the machine did not start: {pools.first_line(exc)}", hint="the host's libvirt log (/var/log/libvirt/qemu/) says why"
            ) from None
        try:
            decision = accel.start_failed(decision, target.uri, exc)
        except accel.KvmFailed as failed:
            raise CloudError(str(failed), hint='set domain_type = "auto" or "qemu" in [targets.libvirt]') from None
        say(decision.reason)
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        kind = "qemu"
        dom = conn.defineXML(xml_for(kind))
        try:
            dom.create()
        except libvirt.libvirtError as again:
            raise CloudError(
                f"the machine did not start: {pools.first_line(again)}", hint="the host's libvirt log (/var/log/libvirt/qemu/) says why"
            ) from None
    return dom, kind


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def choose_network(conn: Any, wanted: str) -> str:
    """The network a launched machine joins: "auto" is "default" when the host has it active."""
    if wanted != "auto":
        return wanted
    try:
        return "default" if conn.networkLookupByName("default").isActive() else "user"
    except libvirt.libvirtError:
        return "user"


def launched_xml(target: LibvirtTarget, machine: str, kind: str, root: str, seed: str, appliance: str, digest: str, network: str) -> str:
    """The persistent domain of a launched machine."""
    dom = ET.Element("domain", type=kind)
    _sub(dom, "name", machine)
    _sub(dom, "memory", str(target.memory), unit="MiB")
    _sub(dom, "vcpu", str(target.vcpus))
    meta = _sub(_sub(dom, "metadata"), f"{{{METADATA_NS}}}launch")
    _sub(meta, f"{{{METADATA_NS}}}appliance", appliance)
    _sub(meta, f"{{{METADATA_NS}}}digest", digest)
    os_el = _sub(dom, "os", firmware="efi")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    firmware = _sub(os_el, "firmware")
    _sub(firmware, "feature", enabled="no", name="secure-boot")
    _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if kind == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    else:  # emulation: a full CPU model but 4-level paging, as the smoke test boots it
        cpu = _sub(dom, "cpu", mode="maximum")
        _sub(cpu, "feature", policy="disable", name="la57")
    _sub(dom, "clock", offset="utc")
    devices = _sub(dom, "devices")
    for volume, dev, fmt, readonly in ((root, "vda", "qcow2", False), (seed, "vdb", "raw", True)):
        disk = _sub(devices, "disk", type="volume", device="disk")
        _sub(disk, "driver", name="qemu", type=fmt, discard="unmap")
        _sub(disk, "source", pool=target.pool, volume=volume)
        _sub(disk, "target", dev=dev, bus="virtio")
        if readonly:
            _sub(disk, "readonly")
    if network == "user":
        nic = _sub(devices, "interface", type="user")
    else:
        nic = _sub(devices, "interface", type="network")
        _sub(nic, "source", network=network)
    _sub(nic, "model", type="virtio")
    _sub(devices, "serial", type="pty")
    _sub(devices, "console", type="pty")
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name=AGENT_CHANNEL)
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    ET.register_namespace("crust", METADATA_NS)
    return ET.tostring(dom, encoding="unicode")


def agent_addresses(dom: Any) -> list[str] | None:
    """The guest's IPv4 addresses (not loopback) as its agent reports them; None while it does
    not answer."""
    try:
        interfaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
    except libvirt.libvirtError:
        return None
    return [a["addr"] for iface in interfaces.values() for a in (iface.get("addrs") or []) if a.get("type") == 0 and not a["addr"].startswith("127.")]


def launch(target: LibvirtTarget, job: Job) -> dict[str, Any]:
    name = job.appliance
    manifest = Manifest.load(job.output, name, verb="launch")
    require_first_boot_agent(manifest)
    key = ssh_public_key(target.ssh_key, job.option("ssh_key"), table="targets.libvirt")
    data = user_data(key, target.cloud_config)
    entry = manifest.cloud_record("libvirt", location(target))
    if entry is None or entry.get("image_digest") != manifest.raw_digest:
        raise UserError(
            f"the current image of {name} is not uploaded to pool {target.pool} at {target.uri}",
            hint=f"run ./build.py upload {name} --target libvirt first",
        )
    machine = f"{name}-{secrets.token_hex(4)}"
    root, seed = machine_volumes(machine)
    digest = str(manifest.raw_digest)
    with prefixed(f"launch {name}"), pools.libvirt_errors(f"launch {name}"):
        conn = connect(target.uri)
        undo = Undo(job.say)
        try:
            pool = pools.find_pool(conn, target.pool, target.uri, job.say)
            image = pools.lookup(pool, entry["volume"])
            record_ok = pools.read_record(conn, pool, entry["volume"]) or {}
            if image is None or not record_ok.get("complete"):
                raise UserError(
                    f"{entry['volume']} is gone from pool {target.pool} at {target.uri}", hint=f"run ./build.py upload {name} --target libvirt again"
                )
            capacity = image.info()[1]
            pools.create_volume(pool, root, capacity, "qcow2", backing=image.path())
            undo.push(f"volume {root}", lambda: pools.remove_volume(pool, root))
            with tempfile.TemporaryDirectory(prefix="crust-launch-") as work:
                user = Path(work, "user-data.in")
                user.write_text(data, encoding="utf-8")
                seed_file = make_seed(Path(work), machine, machine, user)
                vol = pools.create_volume(pool, seed, seed_file.stat().st_size, "raw")
                undo.push(f"volume {seed}", lambda: pools.remove_volume(pool, seed))
                pools.upload_file(conn, vol, seed_file)
            network = choose_network(conn, target.network)
            undo.push(f"domain {machine}", lambda: _remove_domain(conn, machine))
            record: dict[str, Any] = {
                "id": machine,
                "uri": target.uri,
                "pool": target.pool,
                "image_digest": digest,
                "launched": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            with job.store.lock(f"libvirt-machines-{name}"):
                write_state(job.store, name, [*read_state(job.store, name), record])
            dom, kind = start_machine(conn, target, lambda kind: launched_xml(target, machine, kind, root, seed, name, digest, network), job.say)
            record["domain_type"] = kind
            faults.point("libvirt.launch")
            job.say(f"{machine} starting at {target.uri} ({kind}, {target.memory} MiB, {target.vcpus} vCPUs, network {network})")
            addresses = _wait_agent(dom, machine, target.wait_timeout)
            undo.commit()
        except BaseException:
            undo.run()
            with job.store.lock(f"libvirt-machines-{name}"):
                write_state(job.store, name, [m for m in read_state(job.store, name) if m["id"] != machine])
            raise
        finally:
            conn.close()
    address = addresses[0] if addresses else ""
    record = {**record, "addresses": addresses, "address": address, "summary": f"{machine} running at {target.uri} at {address or 'no address'}"}
    with job.store.lock(f"libvirt-machines-{name}"):
        write_state(job.store, name, [record if m["id"] == machine else m for m in read_state(job.store, name)])
    return record


def _wait_agent(dom: Any, machine: str, timeout: float) -> list[str]:
    """Wait until the guest agent answers with an address (the machine is up)."""
    deadline = time.monotonic() + timeout
    delay = 1.0
    while time.monotonic() < deadline:
        state = dom.state()[0]
        if state != libvirt.VIR_DOMAIN_RUNNING:
            raise CloudError(f"{machine} stopped while booting (libvirt state {state})", hint="virsh console or the host's qemu log shows why")
        addresses = agent_addresses(dom)
        if addresses:
            return addresses
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)
    raise CloudError(
        f"{machine}'s guest agent did not answer in {timeout:.0f} s", hint="raise wait_timeout in [targets.libvirt] (emulation boots slowly)"
    )


def _remove_domain(conn: Any, machine: str) -> None:
    try:
        dom = conn.lookupByName(machine)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def remove_machine(conn: Any, pool: Any, machine: str) -> None:
    """Stop and undefine a launched machine, and remove its volumes."""
    _remove_domain(conn, machine)
    for volume in machine_volumes(machine):
        pools.delete_volume(pool, volume)


def terminate(target: LibvirtTarget, job: Job) -> list[str]:
    """Remove the recorded machines (or the one --instance names) on the host and pool each was
    launched on (its record's), whatever the settings say now."""
    name = job.appliance
    wanted = job.option("instance")
    recorded = read_state(job.store, name)
    chosen = [m for m in recorded if wanted is None or m["id"] == wanted]
    if wanted is not None and not chosen:
        raise UserError(f"{wanted} is not a machine of {name} launched by Crust", hint=f"./build.py resources {name} --target libvirt lists them")
    if not chosen:
        raise UserError(f"no launched machine of {name} is recorded", hint=f"./build.py launch {name} --target libvirt starts one")
    done = []
    with prefixed(f"terminate {name}"), pools.libvirt_errors(f"terminate {name}"):
        for machine in chosen:
            uri, pool_name = machine.get("uri", target.uri), machine.get("pool", target.pool)
            conn = connect(uri)
            try:
                pool = pools.find_pool(conn, pool_name, uri)
                try:
                    conn.lookupByName(machine["id"])
                    present = True
                except libvirt.libvirtError:
                    present = False
                remove_machine(conn, pool, machine["id"])
                job.say(f"{machine['id']} destroyed, undefined, its volumes removed" if present else f"{machine['id']} no longer exists at {uri}")
            finally:
                conn.close()
            done.append(machine["id"])
            with job.store.lock(f"libvirt-machines-{name}"):
                write_state(job.store, name, [m for m in read_state(job.store, name) if m["id"] != machine["id"]])
    return done


def crust_domains(conn: Any, appliance: str) -> list[tuple[str, str]]:
    """(name, digest) of every domain whose Crust metadata names the appliance."""
    found = []
    for dom in conn.listAllDomains(0):
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0)
        except libvirt.libvirtError:
            continue
        meta = ET.fromstring(text)
        if meta.findtext(f"{{{METADATA_NS}}}appliance", default=meta.findtext("appliance")) == appliance:
            found.append((dom.name(), meta.findtext(f"{{{METADATA_NS}}}digest", default=meta.findtext("digest") or "") or ""))
    return found
