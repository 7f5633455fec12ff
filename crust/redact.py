"""The one redaction registry: values that must never appear in what Crust logs or reports.

Build secrets (crust/trust/secrets.py), credential variables of Crust's environment, the
password of a proxy URL and the cloud credentials a session resolves (crust/cloud/aws) are
registered here; every line a step log, an error or a report carries goes through redact().
"""

from __future__ import annotations

import base64
import re
import threading

MIN_REDACTED = 8  # shorter values would blank out ordinary words; a shorter secret is refused
MARK = "<redacted>"
# Shapes that are credentials whatever their value: AWS access key ids.
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = ((re.compile(r"\b(AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b"), "<access key id>"),)

_values: set[str] = set()
_lock = threading.Lock()


def fragments(value: str | bytes) -> set[str]:
    """What to redact for one secret: itself, each of its lines (a PEM key is logged line by
    line) and its base64 form (Ansible's slurp returns that), encoded from the secret's own
    bytes. Logged text is decoded as run() decodes a child's output (UTF-8, "replace")."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "replace")
    encoded = {base64.b64encode(raw).decode("ascii"), base64.b64encode(raw.strip()).decode("ascii")}
    found = {text.strip(), *(line.strip() for line in text.splitlines()), *encoded}
    return {f for f in found if len(f) >= MIN_REDACTED and not (f.startswith("-----") and "\n" not in f)}  # not PEM armour lines


def register(value: str | bytes) -> None:
    """Redact value (and its fragments) from every line Crust logs or reports from now on."""
    add(fragments(value))


def add(parts: set[str]) -> None:
    """Redact exactly these strings (whatever their length) from now on."""
    with _lock:
        _values.update(p for p in parts if p)


def redact(text: str) -> str:
    """text with every registered value replaced by <redacted> and credential shapes masked."""
    if _values:
        with _lock:
            parts = sorted(_values, key=len, reverse=True)
        for part in parts:
            if part in text:
                text = text.replace(part, MARK)
    for pattern, mark in PATTERNS:
        text = pattern.sub(mark, text)
    return text
