"""Each format's bytes depend on the raw image, the step id and the epoch only: never the clock or chance."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from crust.formats import REGISTRY, ConvertJob, Machine
from crust.formats.vhd import VHD_EPOCH
from tests.conftest import need_tool

EPOCH = 1762595483
MIB = 1 << 20


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    path = tmp_path / "disk.raw"
    with open(path, "wb") as fh:
        fh.truncate(8 * MIB)
        fh.seek(3 * MIB)
        fh.write(b"crust" * 1000)
    return path


def convert(fmt: str, raw: Path, where: Path, seed: str = "step-id") -> bytes:
    where.mkdir(parents=True, exist_ok=True)
    uses = None
    if REGISTRY[fmt].uses:
        uses = where / f"disk.{REGISTRY[fmt].uses}"
        convert_to = REGISTRY[REGISTRY[fmt].uses].convert
        assert convert_to is not None
        convert_to(ConvertJob(raw, uses, False, Machine("demo", "1", "Demo"), None, seed + "-used", EPOCH))
    out = where / f"disk.{fmt}"
    fn = REGISTRY[fmt].convert
    assert fn is not None
    fn(ConvertJob(raw, out, True, Machine("demo", "1", "Demo"), uses, seed, EPOCH))
    return out.read_bytes()


@pytest.mark.parametrize("fmt", [f for f in REGISTRY if REGISTRY[f].convert is not None])
def test_two_conversions_are_the_same_bytes(fmt: str, raw: Path, tmp_path: Path) -> None:
    need_tool("qemu-img")
    first = convert(fmt, raw, tmp_path / "one")
    second = convert(fmt, raw, tmp_path / "two")
    assert first == second
    assert convert(fmt, raw, tmp_path / "three", seed="another-step") != first or fmt in ("qcow2", "gce")  # these carry no id


def test_the_vhd_footer_has_the_epoch_and_a_valid_checksum(raw: Path, tmp_path: Path) -> None:
    need_tool("qemu-img")
    footer = bytearray(convert("vhd", raw, tmp_path)[-512:])
    assert footer[:8] == b"conectix"
    assert int.from_bytes(footer[24:28], "big") == EPOCH - VHD_EPOCH
    stored = int.from_bytes(footer[64:68], "big")
    footer[64:68] = bytes(4)
    assert stored == ~sum(footer) & 0xFFFFFFFF


def test_the_vmdk_stays_valid(raw: Path, tmp_path: Path) -> None:
    need_tool("qemu-img")
    convert("vmdk", raw, tmp_path)
    check = subprocess.run(["qemu-img", "check", str(tmp_path / "disk.vmdk")], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    back = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(tmp_path / "disk.vmdk"), str(back)], check=True)
    assert back.read_bytes() == raw.read_bytes()


def test_a_vmdk_whose_cid_shrank_on_first_write_pins_to_the_same_bytes(raw: Path, tmp_path: Path) -> None:
    """qemu-img rewrites the CID when it writes the first data; a shorter second CID leaves the tail
    of the first text behind the NUL that ends the new one. Pinning clears that tail."""
    need_tool("qemu-img")
    from crust.formats.vmdk import HEADER, SECTOR, pin_cid

    clean = tmp_path / "clean.vmdk"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(clean)], check=True)
    data = bytearray(clean.read_bytes())
    offset = HEADER.unpack_from(data)[5] * SECTOR
    end = data.index(b"\0", offset)
    text = bytes(data[offset:end])
    start = text.index(b"\nCID=") + 5
    stop = text.index(b"\n", start)
    shrunk = text[:start] + b"7" + text[stop:]  # a one-digit CID, as qemu writes when the random one is small
    data[offset : offset + len(shrunk) + 1] = shrunk + b"\0"  # the old text's tail stays behind the NUL
    left = tmp_path / "left.vmdk"
    left.write_bytes(bytes(data))
    assert data[offset + len(shrunk) + 1 : end].strip(b"\0")  # the case this test is about
    pin_cid(clean, "0badcafe")
    pin_cid(left, "0badcafe")
    assert left.read_bytes() == clean.read_bytes()
    subprocess.run(["qemu-img", "check", str(left)], check=True, capture_output=True)
