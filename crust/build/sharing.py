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
    if canonical == step_id or len(canonical) != 64 or not all(c in "0123456789abcdef" for c in canonical):
        return
    outputs = state_dir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    known = outputs / f"{kind}-{output}"
    if not known.exists():
        write_atomic(known, canonical + "\n")
