"""Why a step will run: the inputs that differ from the last build of the same step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crust.build.plan import Step


def record_key(kind: str, name: str) -> str:
    """How a build record's step is matched to a planned one: by kind, or by name for kinds
    with several steps per appliance (one convert step per format)."""
    from crust.steps import KINDS

    return f"{kind}:{name}" if kind in KINDS and KINDS[kind].multiple else kind


def explain_change(step: Step, previous: Mapping[str, Any] | None) -> str:
    """Why a step will run: the inputs that differ from the last build of the same step kind."""
    from crust.steps import KINDS

    if previous is None:
        return "never built"
    old_inputs: Mapping[str, str] = previous.get("inputs", {})
    old_explain: Mapping[str, str] = previous.get("explain", {})
    changed = []
    for key in sorted(set(step.inputs) | set(old_inputs)):
        if step.inputs.get(key) == old_inputs.get(key):
            continue
        if key == "kickstart":
            templates = [
                k.split(":", 1)[1]
                for k in sorted(set(step.explain) | set(old_explain))
                if k.startswith("template:") and step.explain.get(k) != old_explain.get(k)
            ]
            changed.append("rendered kickstart" + (f" ({', '.join(templates)})" if templates else ""))
        elif key == "vars":
            names = [
                k.split(":", 1)[1]
                for k in sorted(set(step.explain) | set(old_explain))
                if k.startswith("var:") and step.explain.get(k) != old_explain.get(k)
            ]
            changed.append("variables" + (f" ({', '.join(names)})" if names else ""))
        elif key in KINDS:  # the id of the step this one starts from
            changed.append(f"{key} step")
        elif key == "package-set":
            old = set(old_explain.get("package-set", "").split())
            new = set(step.explain.get("package-set", "").split())
            delta = [f"+{p}" for p in sorted(new - old)] + [f"-{p}" for p in sorted(old - new)]
            changed.append("package set" + (f" ({' '.join(delta)})" if delta else ""))
        elif key.startswith(("role:", "file:")):
            kind, path = key.split(":", 1)
            state = "added" if key not in old_inputs else "removed" if key not in step.inputs else "changed"
            changed.append(f"{'role file' if kind == 'role' else 'file'} {path} {state}")
        elif key.startswith("mirror:"):
            changed.append(f"mirror state ({key.split(':', 1)[1]})")
        elif key == "code":
            modules = [
                k.split(":", 1)[1]
                for k in sorted(set(step.explain) | set(old_explain))
                if k.startswith("code:") and step.explain.get(k) != old_explain.get(k)
            ]
            changed.append("Crust's code for this step" + (f" ({', '.join(modules[:4])}{', ...' if len(modules) > 4 else ''})" if modules else ""))
        elif key.startswith("tool:"):
            changed.append(f"host tool {key.split(':', 1)[1]} {old_inputs.get(key, 'none')} -> {step.inputs.get(key, 'none')}")
        else:
            changed.append(key)
    return ", ".join(changed) or "inputs changed"
