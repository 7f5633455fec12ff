"""Kickstart syntax (pykickstart, warnings are errors) and Crust's policy, table-driven."""

from __future__ import annotations

import json

import pytest

from crust.define.kickstart import KickstartProblem, load

BASE = """\
rootpw --lock
timezone Europe/Berlin --utc
lang en_US.UTF-8
keyboard de
network --bootproto=dhcp --hostname=demo
part /boot/efi --fstype=efi --size=64
part / --fstype=ext4 --size=2048 --grow
bootloader --append="quiet splash"
services --enabled=nginx --disabled=apt-daily.timer
user --name=ops --groups=sudo,adm --iscrypted --password=$6$salt$abcdefghijklmnop
sshkey --username=ops "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk ops@example"
repo --name=bookworm-backports --baseurl=http://deb.debian.org/debian --includepkgs=suricata
%packages
nginx
suricata
-vim-tiny
%end
%post
echo one
%end
%post --nochroot --interpreter=/bin/bash
echo two
%end
"""


def test_good_kickstart() -> None:
    ks = load(BASE, allow_plaintext=False, allow_host_scripts=True)
    assert ks.root_password_hash == ""
    assert ks.timezone == "Europe/Berlin"
    assert ks.lang == "en_US.UTF-8"
    assert ks.keymap == "de"
    assert ks.network.hostname == "demo" and ks.network.dhcp
    assert (ks.esp_size_mib, ks.root_size_mib, ks.root_grow) == (64, 2048, True)
    assert ks.kernel_append == ("quiet", "splash")
    assert ks.services_enabled == ("nginx",) and ks.services_disabled == ("apt-daily.timer",)
    assert ks.users[0].name == "ops" and ks.users[0].groups == ("sudo", "adm")
    assert ks.users[0].password_hash.startswith("$6$")
    assert ks.sshkeys[0].username == "ops"
    assert ks.repos[0].suite == "bookworm-backports" and ks.repos[0].pinned == ("suricata",)
    assert ks.packages == ("nginx", "suricata") and ks.excluded == ("vim-tiny",)
    assert [(s.chroot, s.interpreter) for s in ks.scripts] == [(True, "/bin/sh"), (False, "/bin/bash")]


BAD = [
    # (old line, new line, words in the error, line number of the problem)
    ("rootpw --lock", "rootpw secret", "plain-text password is refused", 1),
    ("rootpw --lock", "rootpw --iscrypted notahash", "not a crypt(3) hash", 1),
    (
        "user --name=ops --groups=sudo,adm --iscrypted --password=$6$salt$abcdefghijklmnop",
        "user --name=ops --password=hunter2",
        "plain-text password is refused",
        10,
    ),
    ("user --name=ops --groups=sudo,adm --iscrypted --password=$6$salt$abcdefghijklmnop", "user --name=Bad!", "not a valid user name", 10),
    (
        'sshkey --username=ops "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk ops@example"',
        'sshkey --username=nobody "ssh-ed25519 AAAA x"',
        "unknown user",
        11,
    ),
    (
        'sshkey --username=ops "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk ops@example"',
        'sshkey --username=ops "not a key"',
        "not an OpenSSH public key",
        11,
    ),
    ("timezone Europe/Berlin --utc", "timezone Mars/Olympus", "unknown time zone", 2),
    ("timezone Europe/Berlin --utc", "timezone Etc/UTC --ntpservers=pool.ntp.org", "ntpservers", 2),
    ("lang en_US.UTF-8", "lang klingon!", "not a locale name", 3),
    ("network --bootproto=dhcp --hostname=demo", "network --bootproto=dhcp --hostname=Bad_Host", "not a valid host name", 5),
    ("network --bootproto=dhcp --hostname=demo", "network --bootproto=static --hostname=demo", "needs --ip and --netmask", 5),
    ("network --bootproto=dhcp --hostname=demo", "network --bootproto=bootp --hostname=demo", "bootproto=bootp", 5),
    ("part / --fstype=ext4 --size=2048 --grow", "part / --fstype=xfs --size=2048", "root filesystem 'xfs'", 7),
    (
        "part / --fstype=ext4 --size=2048 --grow",
        "part / --fstype=ext4 --size=2048\npart /var --fstype=ext4 --size=100",
        "partition '/var' cannot be honoured",
        8,
    ),
    ("part / --fstype=ext4 --size=2048 --grow", "part / --fstype=ext4 --size=2048\npart / --fstype=ext4 --size=1024", "already been defined", 8),
    ("part / --fstype=ext4 --size=2048 --grow", "part / --fstype=ext4 --size=100", "at least 256", 7),
    ("part /boot/efi --fstype=efi --size=64", "part /boot/efi --fstype=efi --size=20", "at least 33", 6),
    ('bootloader --append="quiet splash"', 'bootloader --append="root=/dev/sda1"', "must not set root=", 8),
    ('bootloader --append="quiet splash"', "bootloader --timeout=5", "--timeout cannot be honoured", 8),
    (
        "repo --name=bookworm-backports --baseurl=http://deb.debian.org/debian --includepkgs=suricata",
        "repo --name=x --mirrorlist=http://m",
        "--mirrorlist cannot be honoured",
        12,
    ),
    (
        "repo --name=bookworm-backports --baseurl=http://deb.debian.org/debian --includepkgs=suricata",
        "repo --name=x --baseurl=ftp://m",
        "needs --baseurl=http",
        12,
    ),
    ("nginx\n", "@web-server\n", "package groups", 13),
    ("nginx\n", "Not_A_Package\n", "not a Debian package name", 14),
    ("-vim-tiny", "-nginx", "both included and excluded", 13),
    ("services --enabled=nginx --disabled=apt-daily.timer", "firstboot --disable", "command 'firstboot' cannot be honoured", 9),
    ("services --enabled=nginx --disabled=apt-daily.timer", "selinux --enforcing", "command 'selinux' cannot be honoured", 9),
    ("services --enabled=nginx --disabled=apt-daily.timer", "frobnicate --now", "Unknown command: frobnicate", 9),
    ("%post\necho one", "%pre\necho one", "%pre cannot be honoured", 18),
    ("%post\necho one", "%post --log=/root/post.log\necho one", "--log cannot be honoured", 18),
    ("%packages", "%packages --nocore", "nocore", 13),
]


@pytest.mark.parametrize(("old", "new", "words", "line"), BAD)
def test_bad_kickstart(old: str, new: str, words: str, line: int) -> None:
    assert old in BASE
    with pytest.raises(KickstartProblem) as err:
        load(BASE.replace(old, new, 1), allow_plaintext=False, allow_host_scripts=True)
    assert words in err.value.message + err.value.hint
    assert err.value.line == line


def test_plaintext_allowed_only_when_asked() -> None:
    text = BASE.replace("rootpw --lock", "rootpw --plaintext s3cret")
    with pytest.raises(KickstartProblem):
        load(text, allow_plaintext=False, allow_host_scripts=True)
    ks = load(text, allow_plaintext=True, allow_host_scripts=True)
    assert ks.root_password_hash.startswith("$6$") and "s3cret" not in ks.root_password_hash


def test_missing_network_line() -> None:
    with pytest.raises(KickstartProblem) as err:
        load(BASE.replace("network --bootproto=dhcp --hostname=demo\n", ""), allow_plaintext=False, allow_host_scripts=True)
    assert "network --hostname" in err.value.message


def test_defaults_when_commands_absent() -> None:
    text = "network --hostname=x\npart / --size=1024\n"
    ks = load(text, allow_plaintext=False, allow_host_scripts=True)
    assert (ks.timezone, ks.lang, ks.keymap, ks.root_password_hash) == ("Etc/UTC", "C.UTF-8", "us", "")
    assert ks.esp_size_mib == 64 and not ks.root_grow


def test_json_round_trip() -> None:
    from crust.define.kickstart import from_json, to_json

    ks = load(BASE, allow_plaintext=False, allow_host_scripts=True)
    assert from_json(json.loads(json.dumps(to_json(ks)))) == ks


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("repo --name=../../../etc/evil --baseurl=http://deb.example/debian", "is not SUITE or SUITE:COMPONENT"),
        ("repo --name=trixie:main,../x --baseurl=http://deb.example/debian", "is not SUITE or SUITE:COMPONENT"),
        ("repo --name=trixie --baseurl=http://deb.example/debian|x<y>", "has characters a URI does not"),
        ("user --name=eve --homedir=/home/../../root --lock", "is not a plain absolute path"),
        ("user --name=eve --homedir=home/eve --lock", "is not a plain absolute path"),
        ("user --name=eve --shell=/bin/sh;id --lock", "is not a plain absolute path"),
        ("user --name=eve --groups=sudo,../x --lock", "is not a valid group name"),
        ("services --enabled=../../etc/passwd", "is not a unit name"),
        ("bootloader --append=init=/bin/sh", "would boot a shell or another init"),
        ("bootloader --append=rd.break", "would boot a shell or another init"),
        ("bootloader --append='quiet systemd.unit=rescue.target'", "would boot a shell or another init"),
        ("network --bootproto=dhcp --hostname=demo --device=eth0/../x", "is not an interface name"),
        ("network --bootproto=static --hostname=demo --ip=10.0.0.2 --netmask=255.255.255.0 --gateway=evil", "is not an IP address"),
        ("rootpw --iscrypted $1$salt$qJH7.N4xYta3aEG/dfqo/0", "MD5-crypt and DES password hashes are refused"),
        ("user --name=eve --iscrypted --password=abJnggxhB/yWI", "MD5-crypt and DES password hashes are refused"),
    ],
)
def test_names_and_paths_that_could_leave_the_tree_are_refused(line: str, words: str) -> None:
    """Issue 15: names and paths from a kickstart are joined to the tree on the host; each is
    refused (KickstartProblem, exit 2 at validate) with its line."""
    base = "part / --size=1024\n" + ("" if line.startswith("rootpw") else "rootpw --lock\n")
    text = base + ("" if line.startswith("network") else "network --bootproto=dhcp --hostname=demo\n") + line + "\n"
    with pytest.raises(KickstartProblem) as err:
        load(text, allow_plaintext=False)
    assert words in err.value.message
    assert err.value.line == text.splitlines().index(line) + 1


def test_host_scripts_need_the_appliance_to_opt_in() -> None:
    text = "network --hostname=x\npart / --size=1024\n%post --nochroot\ntouch $INSTALL_ROOT/x\n%end\n"
    with pytest.raises(KickstartProblem) as err:
        load(text, allow_plaintext=False)
    assert "runs as root on the build host" in err.value.message and "security.allow_host_scripts = true" in err.value.hint
    assert err.value.line == 3
    assert load(text, allow_plaintext=False, allow_host_scripts=True).scripts[0].chroot is False
