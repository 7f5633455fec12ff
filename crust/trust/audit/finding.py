"""One thing an image must not ship: the rule, the path in the image, and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    rule: str
    path: str  # in the image: "/etc/shadow"
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.path}: {self.reason}"

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "path": self.path, "reason": self.reason}
