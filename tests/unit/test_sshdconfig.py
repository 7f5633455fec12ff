"""sshd_config as sshd reads it: first value wins, Include in place and in order, Match blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from crust.trust.sshdconfig import read_sshd_config


def make(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        target = tmp_path / "etc/ssh" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"sshd_config": "PasswordAuthentication no\n"}, "no"),
        ({"sshd_config": "# PasswordAuthentication yes\n"}, None),
        ({"sshd_config": "passwordauthentication=yes\n"}, "yes"),
        ({"sshd_config": "PasswordAuthentication = no\n"}, "no"),
        ({"sshd_config": 'PasswordAuthentication "no"  # trailing comment\n'}, "no"),
        ({"sshd_config": "PasswordAuthentication no\nPasswordAuthentication yes\n"}, "no"),  # the first value wins
        (
            {
                "sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n",
                "sshd_config.d/50.conf": "PasswordAuthentication no\n",
            },
            "no",
        ),
        (
            {
                "sshd_config": "PasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\n",
                "sshd_config.d/50.conf": "PasswordAuthentication no\n",
            },
            "yes",
        ),
        ({"sshd_config": "Include sshd_config.d/*.conf\n", "sshd_config.d/50.conf": "PasswordAuthentication no\n"}, "no"),  # relative to /etc/ssh
        (
            {
                "sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n",
                "sshd_config.d/10-a.conf": "PasswordAuthentication yes\n",
                "sshd_config.d/50-b.conf": "PasswordAuthentication no\n",
            },
            "yes",  # lexical order
        ),
        ({"sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n", "sshd_config.d/50.txt": "PasswordAuthentication no\n"}, None),
        ({"sshd_config": "Match User ops\nPasswordAuthentication no\n"}, None),  # only in a Match block
        (
            {"sshd_config": "Include /etc/ssh/a.conf\nPasswordAuthentication no\n", "a.conf": "Match User x\nX11Forwarding no\n"},
            "no",
        ),  # Match ends with its file
    ],
)
def test_effective_password_authentication(tmp_path: Path, files: dict[str, str], expected: str | None) -> None:
    setting = read_sshd_config(make(tmp_path, files)).value("PasswordAuthentication")
    assert (setting.value if setting else None) == expected


def test_match_blocks_are_kept_apart(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "sshd_config": "PasswordAuthentication no\nMatch Address 10.0.0.0/8\n  PasswordAuthentication yes\nMatch all\nInclude /etc/ssh/m.conf\n",
            "m.conf": "PermitRootLogin yes\n",
        },
    )
    config = read_sshd_config(root)
    assert config.value("passwordauthentication") is not None
    assert [(s.value, s.match, s.line) for s in config.in_matches("PasswordAuthentication")] == [("yes", "Address 10.0.0.0/8", 3)]
    [root_login] = config.in_matches("PermitRootLogin")
    assert (root_login.match, root_login.file, root_login.where) == ("all", "/etc/ssh/m.conf", "/etc/ssh/m.conf:1")
    assert config.value("PermitRootLogin") is None


def test_alias_and_problems(tmp_path: Path) -> None:
    root = make(tmp_path, {"sshd_config": "ChallengeResponseAuthentication yes\nInclude /etc/ssh/sshd_config\n"})
    config = read_sshd_config(root)
    assert config.value("KbdInteractiveAuthentication") is not None
    assert any("nested deeper" in p for p in config.problems)


def test_missing_config_is_a_problem(tmp_path: Path) -> None:
    assert read_sshd_config(tmp_path).problems
