"""What a smoke run tells: one line per result, the failure with the console's last lines, JUnit XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, TextIO

ANSI = re.compile(r"\x1b(\[[0-9;?=]*[A-Za-z]|\][^\x07]*\x07|[()][A-Za-z0-9]|[=>])")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    """Console text without terminal escapes and control characters (safe in XML too)."""
    return CONTROL.sub("", ANSI.sub("", text))


def serial_lines(path: Path) -> list[str]:
    """The serial console's lines so far, printable, without blank ones."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [printable(line).rstrip() for line in text.replace("\r", "\n").splitlines() if printable(line).strip()]


def serial_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(serial_lines(path)[-lines:]) or "(no serial output)"


PANIC = re.compile(r"Kernel panic - not syncing: .*")


def kernel_panic(path: Path) -> str | None:
    """The guest kernel's panic line on the serial console, if it panicked."""
    return PanicWatch(path)()


class PanicWatch:
    """Reads a growing serial log as it grows: the panic line once the guest kernel panics (a
    panicked guest without a panic device stays "running": only its console tells)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.tail = ""  # the unfinished last line of what was read
        self.found: str | None = None

    def __call__(self) -> str | None:
        if self.found is not None:
            return self.found
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return None
        self.offset += len(chunk)
        lines = (self.tail + chunk.decode(errors="replace")).replace("\r", "\n").split("\n")
        self.tail = lines.pop()[-4096:]
        for line in lines:
            found = PANIC.search(printable(line))
            if found:
                self.found = found.group(0).strip()
                break
        return self.found


def report(record: dict[str, Any], stream: TextIO) -> None:
    name = record["appliance"]
    panicked = record.get("first_boot_panicked")
    if panicked:
        print(f"{name}: the first boot's guest kernel panicked ({panicked['panic']}): its console is {panicked['serial_log']}", file=stream)
    if record["passed"]:
        print(
            f"{name}: all {len(record['checks'])} checks passed, {record['boot_to_pass_s']:.1f}s from domain start ({record['accel']})", file=stream
        )
        return
    f = record["failure"]
    print(f"{name}: FAILED check {f['check']!r}", file=stream)
    print(f"  expected: {f['expected']}", file=stream)
    print(f"  seen:     {f['seen']}", file=stream)
    if record.get("not_run"):
        print(f"  not run:  {', '.join(record['not_run'])}", file=stream)
    print(f"  last lines of the serial console ({record['serial_log']}):", file=stream)
    for line in f["console_tail"].splitlines():
        print(f"    | {line}", file=stream)
    if f.get("failed_units"):
        print("  failed units, with their last journal lines:", file=stream)
        for line in f["failed_units"].splitlines():
            print(f"    | {printable(line)}", file=stream)


def junit_xml(records: list[dict[str, Any]]) -> str:
    suites = ET.Element("testsuites")
    for rec in records:
        checks = rec["checks"]
        failures = sum(1 for c in checks if not c["passed"]) + len(rec.get("not_run", []))
        suite = ET.SubElement(
            suites,
            "testsuite",
            {
                "name": f"crust.smoke.{rec['appliance']}",
                "tests": str(len(checks) + len(rec.get("not_run", []))),
                "failures": str(failures),
                "time": f"{sum(c['duration_s'] for c in checks):.2f}",
                "timestamp": rec["started"],
            },
        )
        for c in checks:
            case = ET.SubElement(suite, "testcase", {"classname": rec["appliance"], "name": c["name"], "time": f"{c['duration_s']:.2f}"})
            if not c["passed"]:
                fail = ET.SubElement(case, "failure", {"message": f"expected {c['expected']}; saw {c['seen']}"})
                fail.text = rec.get("failure", {}).get("console_tail", "")
        for skipped in rec.get("not_run", []):
            case = ET.SubElement(suite, "testcase", {"classname": rec["appliance"], "name": skipped, "time": "0"})
            ET.SubElement(case, "skipped", {"message": "not run: an earlier check failed"})
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)
