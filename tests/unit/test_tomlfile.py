from pathlib import Path

import pytest

from crust.define.tomlfile import find_line, load_toml
from crust.errors import UserError

TEXT = """\
name = "x"
version = "1"

[image]
formats = ["raw"]
root_size = "2GiB"

[[test.checks]]
type = "http"
port = 80

[[test.checks]]
type = "tcp"
port = 22
"""


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("name", 1),
        ("version", 2),
        ("image.formats", 5),
        ("image.root_size", 6),
        ("test.checks[0].port", 10),
        ("test.checks[1].port", 14),
        ("test.checks[1].type", 13),
        ("test.checks[1]", 12),
    ],
)
def test_find_line(key: str, line: int) -> None:
    assert find_line(TEXT, key) == line


def test_find_line_unknown_key() -> None:
    assert find_line(TEXT, "nope") is None


def test_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nversion = \n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_toml(path)
    assert err.value.line == 2
    assert "bad.toml:2" in err.value.one_line()
