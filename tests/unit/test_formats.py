"""The OVF descriptor of an OVA (pure: no disk is written)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from crust.formats import Machine
from crust.formats.ova import NAMESPACES, ovf_descriptor

NS = dict(NAMESPACES)
OVF = "{" + NAMESPACES["ovf"] + "}"
WSGI = Machine("wsgi", "1.2.3", "A <WSGI> & more")


def parse(machine: Machine = WSGI, size: int = 4096, capacity: int = 1 << 30) -> ET.Element:
    return ET.fromstring(ovf_descriptor(machine, "wsgi-disk1.vmdk", size, capacity))


def test_references_the_disk_file_with_its_size() -> None:
    root = parse(size=123456)
    (ref,) = root.findall("ovf:References/ovf:File", NS)
    assert ref.get(OVF + "href") == "wsgi-disk1.vmdk" and ref.get(OVF + "size") == "123456"
    (disk,) = root.findall("ovf:DiskSection/ovf:Disk", NS)
    assert disk.get(OVF + "fileRef") == ref.get(OVF + "id")
    assert disk.get(OVF + "capacity") == str(1 << 30) and disk.get(OVF + "capacityAllocationUnits") == "byte"
    assert disk.get(OVF + "format", "").endswith("#streamOptimized")


def test_hardware_names_cpu_memory_disk_nic_and_uefi() -> None:
    root = parse(Machine("ids", "2.0", "IDS", memory_mib=2048, vcpus=4))
    items = root.findall("ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:Item", NS)
    by_type = {i.findtext("rasd:ResourceType", namespaces=NS): i for i in items}
    assert by_type["3"].findtext("rasd:VirtualQuantity", namespaces=NS) == "4"
    assert by_type["4"].findtext("rasd:VirtualQuantity", namespaces=NS) == "2048"
    disk = by_type["17"]
    assert disk.findtext("rasd:HostResource", namespaces=NS) == "ovf:/disk/vmdisk1"
    controller = disk.findtext("rasd:Parent", namespaces=NS)
    assert by_type["6"].findtext("rasd:InstanceID", namespaces=NS) == controller
    assert by_type["10"].findtext("rasd:Connection", namespaces=NS) == "default"
    (firmware,) = root.findall("ovf:VirtualSystem/ovf:VirtualHardwareSection/vmw:Config", NS)
    assert firmware.get("{" + NAMESPACES["vmw"] + "}value") == "efi"


def test_rasd_fields_are_in_schema_order() -> None:
    for item in parse().iter(OVF + "Item"):
        names = [child.tag for child in item]
        assert names == sorted(names)


def test_text_is_escaped_not_pasted() -> None:
    root = parse()
    assert root.findtext("ovf:VirtualSystem/ovf:Info", namespaces=NS) == "A <WSGI> & more"
    product = root.find("ovf:VirtualSystem/ovf:ProductSection", NS)
    assert product is not None and product.findtext("ovf:Version", namespaces=NS) == "1.2.3"
