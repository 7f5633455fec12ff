"""What builders share of their early cut-off (crust/build/equivalence.py) through the shared
step cache. Kept out of equivalence.py, which steps import: a change here is no change of what
a step makes, so it must not change step ids."""

from __future__ import annotations

from pathlib import Path

from crust.build.store import write_atomic


def adopt_equivalence(state_dir: Path, kind: str, step_id: str, output: str, canonical: str) -> None:
    """Take another builder's early cut-off for a fetched step (its signed manifest says the step's
    output is that of CANONICAL): the steps after it are then planned as that builder planned
    them, and fetched rather than rebuilt. An output this store already knows keeps its own
    canonical step (record_output maps the step to it)."""
    if canonical == step_id or not is_digest(canonical) or not is_digest(output):
        return
    outputs = state_dir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    known = outputs / f"{kind}-{output}"
    if not known.exists():
        write_atomic(known, canonical + "\n")


def forget_equivalence(state_dir: Path, kind: str, step_id: str) -> None:
    """Drop an adopted early cut-off that this store's own build of the step contradicts."""
    (state_dir / "equivalent" / f"{kind}-{step_id}").unlink(missing_ok=True)


def is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
