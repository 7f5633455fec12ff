"""Bad input, generated: hypothesis makes malformed appliance files (wrong values for every
setting, unknown keys, missing keys, injection, broken TOML, bytes that are not UTF-8),
kickstart templates (unsupported and unknown commands, undefined values, broken Jinja, bad
package names) and command lines (unknown verbs and options, bad -j, --format, --keep,
--region, --workers, unknown names). Every generated input is bad by construction; each runs
through the real command line like the hand-written cases (tests/unit/badinput.py).

derandomize=True: the same examples on every run (CI is deterministic). Each test counts the
distinct inputs it ran and asserts the number, so the total below is honest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crust.checks import CHECK_TYPES
from tests.conftest import ROOT
from tests.unit import test_bad_input_appliances, test_bad_input_cli, test_bad_input_templates
from tests.unit.badinput import (
    APPLIANCE,
    KICKSTART,
    STORE_SKELETON,
    TEMPLATE,
    Expect,
    Tripped,
    Workdir,
    check_bad,
    copy_project,
    left_behind,
    line_of,
    project_root,
    run_cli,
    snapshot,
    write_into,
)

# How many distinct generated inputs each test must have run (hypothesis' max_examples is a
# little higher: a few draws can repeat an input).
GENERATED = {"appliance data": 90, "appliance syntax": 30, "kickstart templates": 40, "command lines": 70}


def hypothesis_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,  # the same examples on every run
        database=None,  # nothing written into the work tree
        deadline=None,  # a loaded CI machine must not turn slowness into failures
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("generated")
    with project_root(copy_project(root / "project")):
        yield root / "project"


_runs = itertools.count()


def workdir(project: Path) -> Workdir:
    return Workdir(project.parent / "runs" / str(next(_runs)))


# --- values --------------------------------------------------------------------------------

NO_SURROGATES = st.characters(exclude_categories=["Cs"])
TEXT = st.text(NO_SURROGATES, max_size=20)
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00"
SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.integers(),  # TOML readers may take integers past 64 bits: tomllib does
    st.floats(),
    st.booleans(),
    TEXT,
    st.dates(),
)
ANY_VALUE: st.SearchStrategy[Any] = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6
)


def other_than(*types: type) -> st.SearchStrategy[Any]:
    """Any value whose type is not one of types (bool is not an int here)."""

    def wrong(value: Any) -> bool:
        if isinstance(value, bool):
            return bool not in types
        return not isinstance(value, types)

    return ANY_VALUE.filter(wrong)


IDENTIFIER = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)
INJECTION = st.builds(lambda a, brk, b: a + brk + b, TEXT, st.sampled_from(LINE_BREAKS), TEXT) | st.builds(
    lambda ws, rest: ws + "%" + rest, st.sampled_from(["", " ", "\t"]), TEXT
)
KICKSTARTS = {p.name for p in (ROOT / "kickstarts").iterdir()} | {"demo.ks.j2"}
ROLES = {p.name for p in (ROOT / "roles").iterdir()}
DISTRIBUTIONS = {p.stem for p in (ROOT / "distributions").glob("*.toml")}
BESIDE = {p.name for p in (ROOT / "appliances").iterdir()}  # files beside the appliance file (wsgi_checks.py, ...)


def declared_vars() -> set[str]:
    """Variables declared by the roles of the demo appliance (common, wsgi and its nginx)."""
    names: set[str] = set()
    for role in ("common", "wsgi", "nginx"):
        specs = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text(encoding="utf-8"))
        for entry in specs["argument_specs"].values():
            names.update(entry.get("options") or {})
    return names


DECLARED = declared_vars()


def bad_size() -> st.SearchStrategy[Any]:
    return st.one_of(
        other_than(int, str),
        st.integers(max_value=63),
        st.integers(min_value=1024 * 1024 + 1, max_value=2**63 - 1),
        st.from_regex(r"[0-9]{1,4}(TB|KB|K|T|B|kb|gib|mib)", fullmatch=True),
        st.from_regex(r"[a-z ]{0,8}", fullmatch=True),
    )


def bad_seconds() -> st.SearchStrategy[Any]:
    return st.one_of(other_than(int, float), st.integers(max_value=0), st.floats(max_value=0), st.just(math.inf), st.just(math.nan))


def bad_regex() -> st.SearchStrategy[str]:
    def invalid(text: str) -> bool:
        try:
            re.compile(text)
        except re.error:
            return True
        return False

    return st.sampled_from(["(", "[", "*", "a{2,1}", "(?P<", "\\", "(?<=a+)b", "[z-a]"]) | TEXT.filter(invalid)


# --- appliance files as data ---------------------------------------------------------------

BASE: dict[str, Any] = {
    "name": "demo",
    "version": "1.0",
    "description": "A demo",
    "kickstart": "demo.ks.j2",
    "roles": ["common", "wsgi"],
    "vars": {"wsgi_workers": 3},
    "image": {"formats": ["qcow2"], "root_size": "3GiB"},
    "test": {"ports": [80], "checks": [{"type": "http", "port": 80, "path": "/healthz", "body": "ok"}]},
}
TOP_KEYS = {"name", "version", "description", "distribution", "kickstart", "roles", "vars", "image", "security", "targets", "test"}


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict), value
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(data: dict[str, Any]) -> str:
    """One top-level key a line (tables inline): the line of every key is known."""
    return "".join(f"{toml_string(key) if not re.fullmatch(r'[A-Za-z0-9_-]+', key) else key} = {toml_value(value)}\n" for key, value in data.items())


Mutation = tuple[str, dict[str, Any], str | None]  # (what, data, the top-level key whose line the error names; None: no line)


def with_value(path: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Mutation]:
    """BASE with the setting at the dotted path set to each of values."""

    def build(value: Any) -> Mutation:
        data = json.loads(json.dumps(BASE))
        keys = path.split(".")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        return (f"{path} = {value!r}", data, keys[0])

    return values.map(build)


def with_check(values: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Mutation]:
    return with_value("test.checks", values.map(lambda check: [check]))


def http_check(key: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return values.map(lambda v: {"type": "http", "port": 80, "path": "/healthz", key: v})


def without(key: str) -> Mutation:
    return (f"no {key}", {k: v for k, v in BASE.items() if k != key}, None)


def unknown_key(table: str | None) -> st.SearchStrategy[Mutation]:
    known = {
        None: TOP_KEYS,
        "image": {"formats", "root_size", "grow", "esp_size", "compress"},
        "test": {"ports", "boot_timeout", "module", "checks"},
        "security": {"allow_plaintext_passwords"},
    }[table]
    keys = st.one_of(IDENTIFIER, TEXT).filter(lambda k: k not in known)
    return st.tuples(keys, ANY_VALUE).map(
        lambda kv: with_value_now(kv[0] if table is None else f"{table}.{kv[0]}", kv[1], "." in kv[0] and table is None)
    )


def with_value_now(path: str, value: Any, literal: bool = False) -> Mutation:
    data = json.loads(json.dumps(BASE))
    if literal:  # a top-level key with a dot in it: one key, not a path
        data[path] = value
        return (f"{path!r} = {value!r}", data, path)
    keys = path.split(".", 1) if "." in path else [path]
    if len(keys) == 1:
        data[path] = value
    else:
        data.setdefault(keys[0], {})[keys[1]] = value
    return (f"{path} = {value!r}", data, keys[0])


APPLIANCE_DATA: st.SearchStrategy[Mutation] = st.one_of(
    with_value("name", other_than(str) | TEXT.filter(lambda s: s != "demo")),
    with_value("version", other_than(str) | INJECTION),
    with_value("description", other_than(str) | INJECTION),
    with_value("distribution", other_than(str) | TEXT.filter(lambda s: s not in DISTRIBUTIONS)),
    with_value("kickstart", other_than(str) | TEXT.filter(lambda s: s not in KICKSTARTS)),
    with_value(
        "roles",
        other_than(list)
        | st.lists(other_than(str), min_size=1, max_size=3)
        | st.lists(TEXT.filter(lambda s: s not in ROLES), min_size=1, max_size=3),
    ),
    with_value("vars", other_than(dict)),
    with_value("vars", st.dictionaries(IDENTIFIER.filter(lambda s: s not in DECLARED), ANY_VALUE, min_size=1, max_size=2)),
    with_value("vars.wsgi_workers", other_than(int)),
    with_value("vars.wsgi_app_title", other_than(str) | INJECTION),
    with_value("vars.wsgi_app_requirements", other_than(list) | st.lists(other_than(str), min_size=1, max_size=3)),
    with_value("image", other_than(dict)),
    with_value(
        "image.formats",
        other_than(list) | st.lists(TEXT.filter(lambda s: s not in {"raw", "qcow2", "vmdk", "vhd", "ova", "gce"}), min_size=1, max_size=3),
    ),
    with_value("image.root_size", bad_size()),
    with_value("image.esp_size", bad_size()),
    with_value("image.grow", other_than(bool)),
    with_value("image.compress", other_than(bool)),
    with_value("security", other_than(dict)),
    with_value("security.allow_plaintext_passwords", other_than(bool)),
    with_value("targets", other_than(dict)),
    with_value("test", other_than(dict)),
    with_value("test.ports", other_than(list) | st.lists(st.integers().filter(lambda p: not 1 <= p <= 65535), min_size=1, max_size=3)),
    with_value("test.ports", st.lists(st.integers(1, 65535).filter(lambda p: p != 80), min_size=1, max_size=3)),  # 80 not forwarded
    with_value("test.boot_timeout", bad_seconds()),
    with_value("test.module", other_than(str) | TEXT.filter(lambda s: s != "" and s not in BESIDE)),
    with_value("test.checks", other_than(list) | st.lists(other_than(dict), min_size=1, max_size=2)),
    with_check(st.fixed_dictionaries({"type": TEXT.filter(lambda s: s not in CHECK_TYPES)})),
    with_check(http_check("port", other_than(int) | st.integers().filter(lambda p: p != 80))),
    with_check(http_check("path", other_than(str) | TEXT.filter(lambda s: not s.startswith("/")))),
    with_check(http_check("status", other_than(int))),
    with_check(http_check("timeout", bad_seconds())),
    with_check(http_check("body_regex", bad_regex())),
    with_check(
        http_check(
            "headers", other_than(dict) | st.dictionaries(TEXT.filter(lambda s: not re.fullmatch(r"[A-Za-z0-9-]+", s)), TEXT, min_size=1, max_size=2)
        )
    ),
    with_check(
        st.tuples(
            IDENTIFIER.filter(lambda k: k not in {"type", "name", "timeout", "port", "path", "status", "body", "body_regex", "headers"}), ANY_VALUE
        ).map(lambda kv: {"type": "http", "port": 80, kv[0]: kv[1]})
    ),
    st.sampled_from(["name", "version", "description", "kickstart"]).map(without),
    unknown_key(None),
    unknown_key("image"),
    unknown_key("test"),
    unknown_key("security"),
)


def test_generated_appliance_files(project: Path) -> None:
    seen: set[str] = set()

    @hypothesis_settings(GENERATED["appliance data"] + 30)
    @given(APPLIANCE_DATA)
    def case(mutation: Mutation) -> None:
        _what, data, key = mutation
        text = toml_document(data)
        seen.add(text)
        write_into(project, APPLIANCE, text)
        line = line_of(text, f"{key if re.fullmatch(r'[A-Za-z0-9_-]+', key) else toml_string(key)} = ") if key is not None else None
        for verb in ("validate", "plan", "build"):
            check_bad([verb, "demo"], workdir(project), Expect(file=APPLIANCE, line=line))

    case()
    assert len(seen) >= GENERATED["appliance data"], len(seen)


# --- appliance files as text ---------------------------------------------------------------

GOOD_TEXT = toml_document(BASE)
INVALID_LINES = [
    "[",
    "[[]]",
    "= 1",
    "key =",
    'key = "unterminated',
    "key = [1,",
    "key = {a = 1",
    "1 2 3",
    "key = 1979-13-45",
    "key = tru",
    "key == 1",
    "[a.]",
    "key = 0x",
    'key = """',
]


def corrupt(text: str) -> st.SearchStrategy[str | bytes]:
    lines = text.splitlines(keepends=True)
    insert = st.tuples(st.integers(0, len(lines)), st.sampled_from(INVALID_LINES)).map(
        lambda p: "".join([*lines[: p[0]], p[1] + "\n", *lines[p[0] :]])
    )
    quoted = [i for i, line in enumerate(lines) if '"' in line]
    cut = st.sampled_from(quoted).map(lambda i: "".join([*lines[:i], lines[i][: lines[i].index('"') + 1] + "\n", *lines[i + 1 :]]))
    data = text.encode()
    not_utf8 = st.tuples(st.integers(0, len(data)), st.binary(max_size=4)).map(lambda p: data[: p[0]] + b"\xff" + p[1] + data[p[0] :])
    return st.one_of(insert, cut, not_utf8)


def test_generated_broken_toml(project: Path) -> None:
    seen: set[str | bytes] = set()

    @hypothesis_settings(GENERATED["appliance syntax"] + 15)
    @given(corrupt(GOOD_TEXT))
    def case(content: str | bytes) -> None:
        seen.add(content)
        write_into(project, APPLIANCE, content)
        for verb in ("validate", "plan", "build"):
            check_bad(
                [verb, "demo"],
                workdir(project),
                Expect(words=("invalid TOML",) if isinstance(content, str) else ("not UTF-8",), file=APPLIANCE, any_line=True),
            )

    case()
    write_into(project, APPLIANCE, GOOD_TEXT)
    assert len(seen) >= GENERATED["appliance syntax"], len(seen)


# --- kickstart templates -------------------------------------------------------------------


def unsupported_commands() -> list[str]:
    from pykickstart.version import makeVersion

    from crust.define.kickstart import SUPPORTED_COMMANDS

    return sorted(set(makeVersion("F43").commands) - SUPPORTED_COMMANDS)


SYSTEM = ["rootpw --lock", "timezone Etc/UTC --utc", "lang C.UTF-8", "keyboard us", "network --bootproto=dhcp --hostname={{ appliance.name }}"]
ARGS = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=15)


def in_system(lines: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """demo.ks.j2 with a system block (base.ks.j2's commands) that has a line added."""
    return st.tuples(st.integers(0, len(SYSTEM)), lines).map(
        lambda p: TEMPLATE + "{% block system %}\n" + "\n".join([*SYSTEM[: p[0]], p[1], *SYSTEM[p[0] :]]) + "\n{% endblock %}\n"
    )


KICKSTART_TEMPLATES = st.one_of(
    in_system(st.tuples(st.sampled_from(unsupported_commands()), ARGS).map(lambda p: f"{p[0]} {p[1]}".rstrip())),
    in_system(
        IDENTIFIER.filter(
            lambda w: (
                w not in unsupported_commands()
                and w
                not in {"rootpw", "user", "sshkey", "timezone", "lang", "keyboard", "network", "services", "part", "partition", "bootloader", "repo"}
            )
        )
    ),
    in_system(IDENTIFIER.map(lambda name: "{{ x_" + name + " }}")),
    in_system(
        st.sampled_from(
            ["{{", "{%", "{% if %}", "{% endif %}", "{% endfor %}", "{{ }}", "{% block %}", "{{ 1 + }}", "{% for %}", "{# unclosed", "{% endblock %}"]
        )
    ),
    st.from_regex(r"[a-z]{1,5}[A-Z_!~,;][a-z]{0,5}", fullmatch=True).map(lambda name: TEMPLATE.replace("nginx\n", f"nginx\n{name}\n", 1)),
)


def test_generated_kickstart_templates(project: Path) -> None:
    seen: set[str] = set()

    @hypothesis_settings(GENERATED["kickstart templates"] + 15)
    @given(KICKSTART_TEMPLATES)
    def case(template: str) -> None:
        seen.add(template)
        write_into(project, APPLIANCE, GOOD_TEXT)
        write_into(project, KICKSTART, template)
        for verb in ("validate", "build"):
            check_bad([verb, "demo"], workdir(project), Expect(within="kickstarts/"))

    case()
    write_into(project, KICKSTART, TEMPLATE)
    assert len(seen) >= GENERATED["kickstart templates"], len(seen)


# --- command lines -------------------------------------------------------------------------

VERBS = ["list", "render", "validate", "plan", "build", "test", "clean", "status", "audit", "upload", "launch", "terminate"]
NAMED = ["render", "validate", "plan", "build", "test", "audit", "upload", "launch", "terminate"]  # verbs that take NAME


def option_strings() -> dict[str, set[str]]:
    """Every option of the global parser and of each verb's parser."""
    from crust.cli import build_parser

    parser = build_parser()
    found = {"": {s for a in parser._actions for s in a.option_strings}}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for verb, verb_parser in sub.choices.items():
        found[verb] = {s for a in verb_parser._actions for s in a.option_strings}
    return found


OPTIONS = option_strings()
APPLIANCES = {p.stem for p in (ROOT / "appliances").glob("*.toml")} | {"demo"}


def unknown_option(verb: str) -> st.SearchStrategy[str]:
    """--WORD that is no option (nor, argparse allowing abbreviations, a prefix of one)."""
    known = OPTIONS[""] | OPTIONS[verb]
    return IDENTIFIER.map(lambda w: "--" + w.replace("_", "-")).filter(lambda o: not any(k.startswith(o) for k in known))


def not_an_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


NAME_ARG = TEXT.filter(lambda s: s not in APPLIANCES and not s.startswith("-"))
COMMAND_LINES = st.one_of(
    IDENTIFIER.filter(lambda v: v not in VERBS).map(lambda v: (v, "wsgi")),
    st.sampled_from(VERBS).flatmap(lambda verb: unknown_option(verb).map(lambda o: (verb, *(["wsgi"] if verb in NAMED else []), o))),
    st.sampled_from(NAMED).flatmap(lambda verb: NAME_ARG.map(lambda name: (verb, name))),
    st.integers(max_value=0).map(lambda n: ("build", "-j", str(n), "wsgi")),
    TEXT.filter(not_an_int).map(lambda j: ("build", f"--jobs={j}", "wsgi")),
    TEXT.filter(lambda f: f not in {"raw", "qcow2", "vmdk", "vhd", "ova", "gce"}).map(lambda f: ("build", f"--format={f}", "wsgi")),
    st.integers(max_value=-1).map(lambda n: ("clean", f"--keep={n}")),
    st.tuples(st.sampled_from(["upload", "launch", "terminate"]), st.from_regex(r"[A-Z0-9][A-Za-z0-9-]{0,12}", fullmatch=True)).map(
        lambda p: (p[0], "wsgi", f"--region={p[1]}")
    ),
    st.integers().filter(lambda n: not 1 <= n <= 64).map(lambda n: ("upload", "wsgi", f"--workers={n}")),
    st.sampled_from(["validate", "plan", "build", "test"]).map(lambda verb: (verb, "--all", "wsgi")),
)


def test_generated_command_lines(project: Path) -> None:
    seen: set[tuple[str, ...]] = set()

    @hypothesis_settings(GENERATED["command lines"] + 20)
    @given(COMMAND_LINES)
    def case(argv: tuple[str, ...]) -> None:
        seen.add(argv)
        write_into(project, APPLIANCE, GOOD_TEXT)
        write_into(project, KICKSTART, TEMPLATE)
        line = check_bad(argv, workdir(project), Expect())
        assert not line.startswith(("error: appliances/", "error: kickstarts/")), line  # the command line is at fault

    case()
    assert len(seen) >= GENERATED["command lines"], len(seen)


# --- the harness itself, and the count -----------------------------------------------------


def test_the_demo_appliance_is_valid(project: Path) -> None:
    """Every case breaks one thing of a valid appliance: the error is that thing's."""
    write_into(project, APPLIANCE, GOOD_TEXT)
    write_into(project, KICKSTART, TEMPLATE)
    outcome = run_cli(["validate", "demo"])
    assert (outcome.status, outcome.stderr) == (0, ""), outcome
    write_into(project, APPLIANCE, (ROOT / "tests/unit/badinput.py").read_text().split('GOOD = """\\\n')[1].split('"""')[0])
    assert run_cli(["validate", "demo"]).status == 0


def test_a_valid_build_trips_the_wire(project: Path) -> None:
    """If a bad input got past validation, the tripwires stop it before real work and fail loudly."""
    write_into(project, APPLIANCE, GOOD_TEXT)
    write_into(project, KICKSTART, TEMPLATE)
    work = workdir(project)
    with pytest.raises(Tripped, match=r"bad input got past validation: crust\.distros\.debian\.mirror\.fetch_state"):
        run_cli(["--store", str(work.store), "--output", str(work.output), "build", "demo"])


def test_check_bad_rejects_what_the_suite_forbids(project: Path, tmp_path: Path) -> None:
    write_into(project, APPLIANCE, GOOD_TEXT)
    with pytest.raises(AssertionError, match="status=0"):
        check_bad(["validate", "demo"], workdir(project), Expect())
    store, output = tmp_path / "store", tmp_path / "build"
    before = snapshot(store, output)
    for sub in STORE_SKELETON:
        (store / sub).mkdir(parents=True)
    assert left_behind(before, snapshot(store, output), store) == []  # the empty skeleton is allowed
    (store / "state" / "cache").mkdir()
    (store / "tmp" / "x").write_text("left")
    (output / "demo").mkdir(parents=True)
    assert left_behind(before, snapshot(store, output), store) == [
        f"new: {output}",
        f"new: {output / 'demo'}",
        f"new: {store / 'state' / 'cache'}",
        f"new: {store / 'tmp' / 'x'}",
    ]


def test_at_least_200_cases() -> None:
    """The issue asks for 200 malformed inputs at least: hand-written tables plus generated ones."""
    hand_written = {
        "appliance files": len(test_bad_input_appliances.CASES),
        "templates, kickstarts, role variables": len(test_bad_input_templates.CASES),
        "command lines": len(test_bad_input_cli.CASES),
    }
    total = sum(hand_written.values()) + sum(GENERATED.values())
    print(f"bad-input cases: {hand_written} hand-written, {GENERATED} generated (at least), {total} in all")
    assert sum(hand_written.values()) >= 100
    assert sum(GENERATED.values()) >= 100
    assert total >= 200
