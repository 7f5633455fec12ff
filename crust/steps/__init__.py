"""Step kinds, a registry: each module of this package defines one (``KIND = StepKind(...)``).

A new kind is one module: plan, build, preflight, publishing and the manifest pick it up from
here, in the order the kinds declare. See kind.py for what a kind declares.
"""

from __future__ import annotations

from collections.abc import Mapping

from crust.registry import discover
from crust.steps.kind import Job, Published, StepKind

KINDS: Mapping[str, StepKind] = discover(__name__, __path__, "KIND", StepKind, lambda v: (v.order, v.name), lambda v: v.name)

__all__ = ["KINDS", "Job", "Published", "StepKind"]
