"""The GitLab CI pipeline of a fan-out: .gitlab-ci.yml."""

from __future__ import annotations

from typing import Any

from crust.ci.fanout import HEADER, ApplianceJob, Fanout, dump_yaml

PATH = ".gitlab-ci.yml"
ON_DEFAULT = '[ "$CI_COMMIT_BRANCH" = "$CI_DEFAULT_BRANCH" ] && [ -n "${CRUST_CACHE_KEY:-}" ]'


def job(fanout: Fanout, one: ApplianceJob) -> dict[str, Any]:
    script = [
        f"if {ON_DEFAULT}; then {fanout.build(one, '$CRUST_CACHE_KEY')}; else {fanout.build(one, None)}; fi",
        fanout.test(one),
    ]
    for target in one.targets:
        script.append(f'if [ "$CI_COMMIT_BRANCH" = "$CI_DEFAULT_BRANCH" ]; then {fanout.upload(one, target)}; fi')
    return {
        "extends": ".crust",
        "script": script,
        "artifacts": {
            "when": "always",
            "expire_in": "30 days",
            "reports": {"junit": one.junit},
            "paths": list(one.artifacts),
        },
    }


def render(fanout: Fanout) -> str:
    pipeline: dict[str, Any] = {
        "workflow": {
            "rules": [
                {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'},
                {"if": "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS", "when": "never"},
                {"if": "$CI_COMMIT_BRANCH"},
            ]
        },
        "stages": ["appliances"],
        ".crust": {
            "stage": "appliances",
            "tags": list(fanout.runner),
            "timeout": "2h",
            "interruptible": True,
            "before_script": ["./setup.sh"],
        },
    }
    for one in fanout.jobs:
        pipeline[f"crust:{one.appliance}"] = job(fanout, one)  # never a top-level keyword (stages, image, pages...)
    body = dump_yaml(pipeline)
    return HEADER.format(system="gitlab", key="CRUST_CACHE_KEY, a protected File variable") + body
