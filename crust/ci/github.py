"""The GitHub Actions workflow of a fan-out: .github/workflows/crust.yml."""

from __future__ import annotations

from typing import Any

from crust.ci.fanout import HEADER, ApplianceJob, Fanout, dump_yaml

PATH = ".github/workflows/crust.yml"
KEY_FILE = "$RUNNER_TEMP/crust-cache.key"
ON_DEFAULT = "github.event_name == 'push' && github.ref == format('refs/heads/{0}', github.event.repository.default_branch)"


def job(fanout: Fanout, one: ApplianceJob) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"uses": "actions/checkout@v4"},
        {"name": "Set up Crust (apt tools, .venv, libvirtd)", "run": "sudo ./setup.sh"},
        {
            "name": "Cache signing key (default branch only)",
            "if": "env.CRUST_PUBLISH == 'true'",
            "env": {"CRUST_CACHE_KEY": "${{ secrets.CRUST_CACHE_KEY }}"},
            "run": f'umask 077\nprintf \'%s\\n\' "$CRUST_CACHE_KEY" > "{KEY_FILE}"',
        },
        {
            "name": f"Build {one.appliance} (shared step cache)",
            "run": f'if [ "$CRUST_PUBLISH" = true ]; then\n  sudo -E {fanout.build(one, KEY_FILE)}\nelse\n  sudo -E {fanout.build(one, None)}\nfi',
        },
        {"name": f"Smoke-test {one.appliance}", "run": f"sudo -E {fanout.test(one)}"},
        {
            "name": "Keep the JUnit results and the manifest",
            "if": "always()",
            "uses": "actions/upload-artifact@v4",
            "with": {"name": f"crust-{one.appliance}", "path": "\n".join(one.artifacts), "if-no-files-found": "warn"},
        },
    ]
    for target in one.targets:
        steps.append(
            {"name": f"Upload {one.appliance} to {target}", "if": "env.CRUST_PUBLISH == 'true'", "run": f"sudo -E {fanout.upload(one, target)}"}
        )
    steps.append({"name": "Remove the signing key", "if": "always()", "run": f'rm -f "{KEY_FILE}"'})
    return {
        "name": one.appliance,
        "runs-on": list(fanout.runner),
        "timeout-minutes": 120,
        "env": {
            "CRUST_PUBLISH": "${{ " + ON_DEFAULT + " }}",
            "AWS_ACCESS_KEY_ID": "${{ secrets.AWS_ACCESS_KEY_ID }}",
            "AWS_SECRET_ACCESS_KEY": "${{ secrets.AWS_SECRET_ACCESS_KEY }}",
        },
        "steps": steps,
    }


def render(fanout: Fanout) -> str:
    workflow: dict[str, Any] = {
        "name": "crust",
        "on": {"push": {"branches": [fanout.branch]}, "pull_request": {}, "workflow_dispatch": {}},
        "permissions": {"contents": "read"},
        "concurrency": {"group": "crust-${{ github.ref }}", "cancel-in-progress": "${{ github.event_name == 'pull_request' }}"},  # never an upload
        "defaults": {"run": {"shell": "bash"}},
        "jobs": {one.appliance: job(fanout, one) for one in fanout.jobs},
    }
    body = dump_yaml(workflow)
    return HEADER.format(system="github", key="CRUST_CACHE_KEY") + body
