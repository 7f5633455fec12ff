"""build/NAME/manifest.json, typed: what an image is, how it was made, and what happened to it.

One class reads and writes it for every verb: the build writes it (published last, by rename),
`test` records its smoke results in it, `upload` its cloud records; `audit`, `launch` and the
smoke test read their artifacts from it. Unknown keys are kept as they are, so a record a newer
Crust (or a step kind) adds survives a rewrite.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from crust.errors import UserError

FILE = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    format: str  # "raw", "qcow2", ... (a format of crust/formats/)
    path: Path
    sha256: str
    size: int = 0
    allocated: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "sha256": self.sha256, "size": self.size, "allocated": self.allocated}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        return cls(str(data["format"]), Path(str(data["path"])), str(data["sha256"]), int(data.get("size", 0)), int(data.get("allocated", 0)))


@dataclass
class Manifest:
    appliance: str
    version: str = ""
    description: str = ""
    distribution: str = ""
    build_id: str = ""
    crust_version: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)  # step kind (or convert name) -> its inputs
    steps: list[dict[str, Any]] = field(default_factory=list)  # kind, name, id, reused, duration_s, built, log
    kernel: list[str] | None = None
    kernel_cmdline: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # Debian package -> version
    artifacts: list[Artifact] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)  # {"passed": bool, "findings": [...]}
    sbom: dict[str, Any] = field(default_factory=dict)
    uki: dict[str, Any] = field(default_factory=dict)  # the unified kernel image on the ESP: sha256, size
    source_date_epoch: int = 0  # every time the build wrote (the mirror state's newest index date)
    tools: dict[str, str] = field(default_factory=dict)  # host package -> version, of the tools that shaped the output
    tests: dict[str, Any] | None = None  # the last smoke test of these artifacts (see record_test)
    cloud: dict[str, Any] = field(default_factory=dict)  # target -> location -> record
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version of Crust does not know
    path: Path | None = field(default=None, compare=False)  # where it was read from or saved to

    # --- reading and writing ---

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: Path | None = None) -> Manifest:
        known = {f.name for f in fields(cls)} - {"extra", "path", "artifacts", "appliance"}
        values: dict[str, Any] = {k: data[k] for k in known if k in data}
        appliance = str(data.get("appliance") or (path.parent.name if path else ""))
        artifacts = [Artifact.from_json(a) for a in data.get("artifacts", [])]
        extra = {k: v for k, v in data.items() if k not in known and k not in ("artifacts", "appliance")}
        return cls(appliance=appliance, artifacts=artifacts, extra=extra, path=path, **values)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name in ("extra", "path"):
                continue
            value = getattr(self, f.name)
            if f.name == "artifacts":
                value = [a.to_json() for a in value]
            if f.name in ("tests",) and value is None:
                continue
            if f.name == "cloud" and not value:
                continue
            data[f.name] = value
        return data

    def text(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")), path)

    @classmethod
    def load(cls, output: Path, name: str, verb: str = "build") -> Manifest:
        """The manifest of a built appliance; not built is a one-line error naming the fix."""
        path = output / name / FILE
        if not path.is_file():
            hint = f"run ./build.py build {name}" + (" (or build --test)" if verb == "test" else "")
            raise UserError(f"{name} is not built ({path} is missing)", hint=hint)
        return cls.read(path)

    def save(self, path: Path | None = None) -> Path:
        """Write it atomically (a temporary file beside it, then a rename)."""
        from crust.build.store import write_atomic

        target = path or self.path
        if target is None:
            raise ValueError("a manifest read from nowhere needs a path to be saved")
        write_atomic(target, self.text())
        self.path = target
        return target

    # --- what readers ask ---

    def artifact(self, fmt: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.format == fmt), None)

    @property
    def raw_digest(self) -> str | None:
        raw = self.artifact("raw")
        return raw.sha256 if raw else None

    def located(self, artifact: Artifact) -> Path:
        """The artifact's file: beside the manifest when it is there (a moved build directory),
        else the path recorded."""
        if self.path is not None:
            beside = self.path.parent / artifact.path.name
            if beside.is_file():
                return beside
        return artifact.path

    # --- records of what happened to these artifacts ---

    def cloud_record(self, target: str, location: str) -> dict[str, Any] | None:
        """The record of an upload to target/location, if made from this manifest's raw image."""
        entry = self.cloud.get(target, {}).get(location)
        if entry and entry.get("image_digest") == self.raw_digest:
            return dict(entry)
        return None

    def record_cloud(self, target: str, location: str, record: Mapping[str, Any]) -> None:
        self.cloud.setdefault(target, {})[location] = dict(record)

    def record_test(self, result: Mapping[str, Any]) -> None:
        """The smoke test's summary (the full result is in smoke/results.json)."""
        self.tests = dict(result)

    def carry_records(self, previous: Manifest) -> None:
        """Keep the previous build's cloud and test records when they describe the same images."""
        if previous.cloud and previous.raw_digest == self.raw_digest:
            self.cloud = previous.cloud
        if previous.tests:
            tested = self.artifact(str(previous.tests.get("format", "qcow2")))
            if tested is not None and tested.sha256 == previous.tests.get("image_sha256"):
                self.tests = previous.tests
