"""ova: an OVF 1.0 package, a ustar of the descriptor, a SHA256 manifest and the vmdk disk.

The descriptor is built with ElementTree, never by string pasting. When vmdk is built in the
same run, the OVA packs that step's disk instead of converting the image again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

from crust.digest import digest_json
from crust.formats.kind import MIB, ConvertJob, Format, Machine
from crust.formats.vmdk import write_vmdk

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW = "http://www.vmware.com/schema/ovf"
NAMESPACES = {"ovf": OVF, "rasd": RASD, "vssd": VSSD, "vmw": VMW}
for _prefix, _uri in NAMESPACES.items():
    ET.register_namespace(_prefix, _uri)

# CIM resource types (DSP1041)
CPU, MEMORY, IDE, SCSI, ETHERNET, DISK = "3", "4", "5", "6", "10", "17"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def write_ova(raw: Path, out: Path, machine: Machine, vmdk: Path | None, seed: str = "") -> None:
    """OVF 1.0 package: NAME.ovf, NAME.mf (SHA256 of both files), NAME-disk1.vmdk."""
    work = out.parent
    disk = work / f"{machine.name}-disk1.vmdk"
    if vmdk is not None:
        try:
            os.link(vmdk, disk)
        except OSError:
            shutil.copyfile(vmdk, disk)
    else:
        write_vmdk(raw, disk, seed)
    ovf = work / f"{machine.name}.ovf"
    ovf.write_bytes(ovf_descriptor(machine, disk.name, disk.stat().st_size, raw.stat().st_size))
    mf = work / f"{machine.name}.mf"
    mf.write_text("".join(f"SHA256({p.name})= {sha256_file(p)}\n" for p in (ovf, disk)), encoding="utf-8")
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for path in (ovf, mf, disk):
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o644
            info.mtime = 0
            with path.open("rb") as f:
                tar.addfile(info, f)
    for path in (ovf, mf, disk):
        path.unlink()


def _q(ns: str, tag: str) -> str:
    return f"{{{NAMESPACES[ns]}}}{tag}"


def _item(hardware: ET.Element, instance: int, resource_type: str, name: str, **fields: str) -> ET.Element:
    item = ET.SubElement(hardware, _q("ovf", "Item"))
    values = {"ElementName": name, "InstanceID": str(instance), "ResourceType": resource_type, **fields}
    for key in sorted(values):  # rasd elements in alphabetical order, as the CIM schema's sequence wants
        ET.SubElement(item, _q("rasd", key)).text = values[key]
    return item


def ovf_descriptor(machine: Machine, disk_file: str, disk_file_size: int, capacity: int) -> bytes:
    """The OVF envelope: one VM, UEFI firmware, one disk on a SCSI controller, one NIC."""
    env = ET.Element(_q("ovf", "Envelope"), {_q("ovf", "version"): "1.0"})
    refs = ET.SubElement(env, _q("ovf", "References"))
    ET.SubElement(refs, _q("ovf", "File"), {_q("ovf", "href"): disk_file, _q("ovf", "id"): "file1", _q("ovf", "size"): str(disk_file_size)})
    disks = ET.SubElement(env, _q("ovf", "DiskSection"))
    ET.SubElement(disks, _q("ovf", "Info")).text = "Virtual disk information"
    ET.SubElement(
        disks,
        _q("ovf", "Disk"),
        {
            _q("ovf", "capacity"): str(capacity),
            _q("ovf", "capacityAllocationUnits"): "byte",
            _q("ovf", "diskId"): "vmdisk1",
            _q("ovf", "fileRef"): "file1",
            _q("ovf", "format"): "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized",
        },
    )
    nets = ET.SubElement(env, _q("ovf", "NetworkSection"))
    ET.SubElement(nets, _q("ovf", "Info")).text = "The list of logical networks"
    net = ET.SubElement(nets, _q("ovf", "Network"), {_q("ovf", "name"): "default"})
    ET.SubElement(net, _q("ovf", "Description")).text = "The default network"
    system = ET.SubElement(env, _q("ovf", "VirtualSystem"), {_q("ovf", "id"): machine.name})
    ET.SubElement(system, _q("ovf", "Info")).text = machine.description
    ET.SubElement(system, _q("ovf", "Name")).text = machine.name
    product = ET.SubElement(system, _q("ovf", "ProductSection"))
    ET.SubElement(product, _q("ovf", "Info")).text = "Crust appliance"
    ET.SubElement(product, _q("ovf", "Product")).text = machine.name
    ET.SubElement(product, _q("ovf", "Version")).text = machine.version
    os_section = ET.SubElement(system, _q("ovf", "OperatingSystemSection"), {_q("ovf", "id"): "96", _q("vmw", "osType"): "debian11_64Guest"})
    ET.SubElement(os_section, _q("ovf", "Info")).text = "Debian GNU/Linux, 64-bit"
    hardware = ET.SubElement(system, _q("ovf", "VirtualHardwareSection"))
    ET.SubElement(hardware, _q("ovf", "Info")).text = "Virtual hardware requirements"
    vsys = ET.SubElement(hardware, _q("ovf", "System"))
    ET.SubElement(vsys, _q("vssd", "ElementName")).text = "Virtual Hardware Family"
    ET.SubElement(vsys, _q("vssd", "InstanceID")).text = "0"
    ET.SubElement(vsys, _q("vssd", "VirtualSystemIdentifier")).text = machine.name
    ET.SubElement(vsys, _q("vssd", "VirtualSystemType")).text = "vmx-14"
    _item(hardware, 1, CPU, f"{machine.vcpus} virtual CPUs", AllocationUnits="hertz * 10^6", VirtualQuantity=str(machine.vcpus))
    _item(hardware, 2, MEMORY, f"{machine.memory_mib} MB of memory", AllocationUnits="byte * 2^20", VirtualQuantity=str(machine.memory_mib))
    _item(hardware, 3, SCSI, "SCSI controller 0", Address="0", ResourceSubType="lsilogic")
    _item(hardware, 4, DISK, "Hard disk 1", AddressOnParent="0", HostResource="ovf:/disk/vmdisk1", Parent="3")
    _item(
        hardware, 5, ETHERNET, "Network adapter 1", AddressOnParent="7", AutomaticAllocation="true", Connection="default", ResourceSubType="VmxNet3"
    )
    # The image boots by UEFI only (a UKI on the ESP); VMware reads the firmware from this key.
    ET.SubElement(hardware, _q("vmw", "Config"), {_q("ovf", "required"): "false", _q("vmw", "key"): "firmware", _q("vmw", "value"): "efi"})
    ET.indent(env)
    data: bytes = ET.tostring(env, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def convert(job: ConvertJob) -> None:
    write_ova(job.raw, job.out, job.machine, job.uses, job.seed)


FORMAT = Format(
    name="ova",
    help="ova (OVF + vmdk)",
    order=40,
    convert=convert,
    uses="vmdk",
    inputs=lambda machine: {"machine": digest_json({"name": machine.name, "version": machine.version, "description": machine.description})},
)
