"""Each kickstart command's effect on a tree (a small fake tree with the files it touches)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crust.define.kickstart import Network, Repo, SshKey, User, load
from crust.distros.debian import apt
from crust.tree import configure
from tests.conftest import need_root, need_tool

PASSWD = "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nsudo:x:27:\nadm:x:4:\nwww-data:x:33:\n"
SHADOW = "root:*:19000:0:99999:7:::\nwww-data:*:19000:0:99999:7:::\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for d in ("etc/default", "etc/systemd/system", "usr/lib/systemd/system", "root", "home", "tmp"):
        (root / d).mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    (root / "etc/shadow").write_text(SHADOW)
    (root / "etc/gshadow").write_text("root:*::\nsudo:*::\nadm:*::\nwww-data:*::\n")
    (root / "usr/lib/systemd/system/nginx.service").write_text("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")
    (root / "usr/lib/systemd/system/apt-daily.timer").write_text("[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n")
    os.makedirs(root / "etc/systemd/system/timers.target.wants")
    os.symlink("/usr/lib/systemd/system/apt-daily.timer", root / "etc/systemd/system/timers.target.wants/apt-daily.timer")
    return root


def test_timezone(tree: Path) -> None:
    configure.set_timezone(tree, "Europe/Berlin")
    assert os.readlink(tree / "etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin"
    assert (tree / "etc/timezone").read_text() == "Europe/Berlin\n"


def test_lang(tree: Path) -> None:
    configure.set_lang(tree, "de_DE.UTF-8")
    assert (tree / "etc/default/locale").read_text() == "LANG=de_DE.UTF-8\n"
    assert (tree / "etc/locale.gen").read_text() == "de_DE.UTF-8 UTF-8\n"


def test_implied_packages() -> None:
    base = "network --hostname=x\npart / --size=1024\n"
    assert "locales" not in apt.implied_packages(load(base, allow_plaintext=False))
    assert "locales" in apt.implied_packages(load(base + "lang de_DE.UTF-8\n", allow_plaintext=False))


def test_keyboard(tree: Path) -> None:
    configure.set_keyboard(tree, "de-nodeadkeys")
    text = (tree / "etc/default/keyboard").read_text()
    assert 'XKBLAYOUT="de"' in text and 'XKBVARIANT="nodeadkeys"' in text
    assert (tree / "etc/vconsole.conf").read_text() == "KEYMAP=de-nodeadkeys\n"


def test_network_dhcp(tree: Path) -> None:
    configure.configure_network(tree, Network("demo", "", True, "", "", ()))
    assert (tree / "etc/hostname").read_text() == "demo\n"
    assert "127.0.1.1\tdemo" in (tree / "etc/hosts").read_text()
    net = (tree / "etc/systemd/network/80-crust.network").read_text()
    assert "Name=en* eth*" in net and "DHCP=yes" in net


def test_network_static(tree: Path) -> None:
    configure.configure_network(tree, Network("demo", "ens3", False, "10.0.0.5/24", "10.0.0.1", ("1.1.1.1",)))
    net = (tree / "etc/systemd/network/80-crust.network").read_text()
    assert "Name=ens3" in net and "Address=10.0.0.5/24" in net and "Gateway=10.0.0.1" in net and "DNS=1.1.1.1" in net
    assert "DHCP" not in net


def test_root_locked_and_hash(tree: Path) -> None:
    configure.set_root_password(tree, "")
    assert (tree / "etc/shadow").read_text().startswith("root:!*:")
    configure.set_root_password(tree, "$6$salt$hash")
    assert (tree / "etc/shadow").read_text().startswith("root:$6$salt$hash:")


def test_user_and_sshkey(tree: Path) -> None:
    need_root()
    need_tool("useradd")
    configure.create_users(tree, (User("ops", ("sudo", "nosuchgroup"), "$6$s$h", "/bin/bash", "/home/ops", 1500, "Operator"),))
    passwd = (tree / "etc/passwd").read_text()
    assert "ops:x:1500:" in passwd and ":Operator:/home/ops:/bin/bash" in passwd
    assert "sudo:x:27:ops" in (tree / "etc/group").read_text()
    assert "ops:$6$s$h:" in (tree / "etc/shadow").read_text()
    configure.install_ssh_keys(tree, (SshKey("ops", "ssh-ed25519 AAAA ops@x"),))
    auth = tree / "home/ops/.ssh/authorized_keys"
    assert auth.read_text() == "ssh-ed25519 AAAA ops@x\n"
    assert (auth.stat().st_mode & 0o777, auth.stat().st_uid) == (0o600, 1500)


def test_user_without_password_is_locked(tree: Path) -> None:
    need_root()
    need_tool("useradd")
    configure.create_users(tree, (User("svc", (), "", "/bin/sh", "/home/svc", None, ""),))
    assert "svc:!:" in (tree / "etc/shadow").read_text()


def test_services(tree: Path) -> None:
    need_tool("systemctl")
    configure.set_services(tree, ("nginx",), ("apt-daily.timer",))
    assert (tree / "etc/systemd/system/multi-user.target.wants/nginx.service").is_symlink()
    assert not (tree / "etc/systemd/system/timers.target.wants/apt-daily.timer").exists()


def test_repos_and_pins(tree: Path) -> None:
    repo = Repo("bookworm-backports", "http://deb.debian.org/debian", ("main",), ("suricata",), ("linux-image-amd64",), True)
    apt.write_repos(tree, (repo,), "/usr/share/keyrings/debian-archive-keyring.gpg")
    sources = (tree / "etc/apt/sources.list.d/crust-bookworm-backports.sources").read_text()
    assert "Suites: bookworm-backports" in sources and "URIs: http://deb.debian.org/debian" in sources
    prefs = (tree / "etc/apt/preferences.d/crust-bookworm-backports.pref").read_text()
    assert "Package: suricata\nPin: release n=bookworm-backports\nPin-Priority: 990" in prefs
    assert "Package: linux-image-amd64\nPin: release n=bookworm-backports\nPin-Priority: -1" in prefs


def test_fstab_and_grow(tree: Path) -> None:
    configure.write_fstab(tree, "1234-uuid", grow=True)
    assert "UUID=1234-uuid\t/\text4\trw,relatime,errors=remount-ro,x-systemd.growfs\t0\t1" in (tree / "etc/fstab").read_text()
    configure.write_grow_config(tree)
    assert "Type=root" in (tree / "etc/repart.d/50-root.conf").read_text()


def test_post_nochroot_sees_the_tree(tree: Path, tmp_path: Path) -> None:
    need_root()
    need_tool("unshare")
    ks = load(
        "network --hostname=x\npart / --size=1024\n%post --nochroot\necho built > $INSTALL_ROOT/etc/marker\n%end\n",
        allow_plaintext=False,
        allow_host_scripts=True,
    )
    configure.run_scripts(tree, ks.scripts, tmp_path)
    assert (tree / "etc/marker").read_text() == "built\n"


def test_failing_post_fails_the_build(tree: Path, tmp_path: Path) -> None:
    need_root()
    need_tool("unshare")
    from crust.errors import CommandError

    ks = load("network --hostname=x\npart / --size=1024\n%post --nochroot\nexit 3\n%end\n", allow_plaintext=False, allow_host_scripts=True)
    with pytest.raises(CommandError) as err:
        configure.run_scripts(tree, ks.scripts, tmp_path)
    assert err.value.status == 3


def test_mask_generators(tree: Path) -> None:
    configure.mask_generators(tree, ("systemd-ssh-generator",))
    assert os.readlink(tree / "etc/systemd/system-generators/systemd-ssh-generator") == "/dev/null"


def test_mask_units_wins_over_the_unit_files(tree: Path) -> None:
    configure.mask_units(tree, ("modprobe@drm.service", "sys-kernel-debug.mount"))
    assert os.readlink(tree / "etc/systemd/system/modprobe@drm.service") == "/dev/null"
    assert os.readlink(tree / "etc/systemd/system/sys-kernel-debug.mount") == "/dev/null"


def test_the_build_id_stamp_stays_in_the_tree(tmp_path: Path) -> None:
    """common_release_file comes from an appliance file: the tree step's BUILD_ID stamp must
    write inside the tree only, never through a link or a '..' to a host file."""
    from crust.steps.tree import stamp_build_id

    tree, host = tmp_path / "tree", tmp_path / "host-file"
    (tree / "etc").mkdir(parents=True)
    host.write_text("APPLIANCE=host\n")
    (tree / "etc/linked").symlink_to(host)
    for hostile in ("../host-file", "/../../host-file", "/etc/linked"):
        stamp_build_id(tree, hostile, "0123456789ab")
    assert host.read_text() == "APPLIANCE=host\n"
    (tree / "etc/crust-release").write_text("APPLIANCE=wsgi\nBUILD_ID=old\n")
    stamp_build_id(tree, "/etc/crust-release", "0123456789ab")
    assert (tree / "etc/crust-release").read_text() == "APPLIANCE=wsgi\nBUILD_ID=0123456789ab\n"
