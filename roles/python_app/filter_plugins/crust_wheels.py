"""missing_wheels(requirements, cache, python): the pinned requirements (name==version, with
or without extras) that have no wheel in the build host's wheel cache for the image's CPython
(python: "313" for 3.13) on x86_64 Linux; the tags are those the role's `pip download` asks for.

Runs in the Ansible controller: asking `pip download --no-index` the same question cost 0.9 s
of every role step that installs a venv (a pip start and a module run on the host); this reads
the cache's file names (packaging, pip's own tag logic, comes with ansible-core). A wheel it
does not recognise only makes the role fetch again with pip, which decides.
"""

import os

from ansible.errors import AnsibleFilterError
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64", "any"]


def missing_wheels(requirements, cache, python):
    if not isinstance(python, str) or not python.isdigit() or len(python) < 2:
        raise AnsibleFilterError(f"missing_wheels: python must be digits like '313', got {python!r}")
    version = (int(python[0]), int(python[1:]))
    interpreter = f"cp{python}"
    supported = set(cpython_tags(version, abis=[interpreter, "abi3", "none"], platforms=PLATFORMS))
    supported |= set(compatible_tags(version, interpreter, PLATFORMS))
    cached = set()
    try:
        names = os.listdir(cache)
    except FileNotFoundError:
        names = []
    for name in names:
        if not name.endswith(".whl"):
            continue
        try:
            project, release, _, tags = parse_wheel_filename(name)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if tags & supported:
            cached.add((project, release))
    missing = []
    for requirement in requirements:
        project, _, release = str(requirement).partition("==")
        try:
            wanted = (canonicalize_name(project.split("[", 1)[0]), Version(release))
        except InvalidVersion:
            missing.append(requirement)
            continue
        if wanted not in cached:
            missing.append(requirement)
    return missing


class FilterModule:
    def filters(self):
        return {"missing_wheels": missing_wheels}
