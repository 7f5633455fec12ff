"""The command line: help for every verb, one-line errors with exit status 2, no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import build_py

VERBS = ["list", "render", "validate", "plan", "build", "status", "upload", "launch", "terminate", "audit", "cache", "ci"]


def test_help_lists_every_verb() -> None:
    out = build_py("--help")
    assert out.returncode == 0
    for verb in VERBS:
        assert verb in out.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_verb_help(verb: str) -> None:
    out = build_py(verb, "--help")
    assert out.returncode == 0
    assert "usage: build.py" in out.stdout


def test_list_shows_descriptions() -> None:
    out = build_py("list")
    assert out.returncode == 0
    assert "wsgi" in out.stdout and "gunicorn behind nginx" in out.stdout


def test_render_prints_kickstart() -> None:
    out = build_py("render", "wsgi")
    assert out.returncode == 0
    assert "network --bootproto=dhcp --hostname=wsgi" in out.stdout
    assert "%packages" in out.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["render", "nope"], "no appliance named 'nope'"),
        (["validate"], "no appliance given"),
        (["validate", "wsgi", "--all"], "not both"),
        (["frobnicate"], "invalid choice"),
        (["build", "--no-such-flag"], "unrecognized arguments"),
        (["build", "nope"], "no appliance named 'nope'"),
        (["upload", "nope", "--target", "aws"], "no appliance named 'nope'"),
        (["upload", "wsgi", "--target", "hetzner"], "invalid choice: 'hetzner'"),
        (["upload", "wsgi", "--workers", "0"], "--workers 0: use 1 to 64"),
        (["upload", "wsgi", "--method", "ftp"], "invalid choice: 'ftp'"),
        (["launch"], "the following arguments are required: NAME"),
        (["audit"], "no appliance given"),
        (["audit", "nope"], "no appliance named 'nope'"),
        (["audit", "--image", "/nonexistent.raw"], "no such image file"),
        (["terminate", "wsgi", "--region", "Mars"], "--region: 'Mars' is not an AWS region name"),
    ],
)
def test_bad_command_lines(args: list[str], words: str) -> None:
    out = build_py(*args)
    assert out.returncode == 2, out.stderr
    assert words in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_validate_all() -> None:
    out = build_py("validate", "--all")
    assert out.returncode == 0, out.stderr
    assert "wsgi: ok" in out.stdout
