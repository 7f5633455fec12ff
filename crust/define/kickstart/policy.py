"""Crust's policy on top of kickstart syntax (as lorax's check_kickstart): what Crust can honour
for a Debian image. Anything it cannot honour is an error naming the line, never ignored."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crust.define.kickstart.model import KickstartConfig, KickstartProblem, Network, Repo, Script, SshKey, User
from crust.define.kickstart.syntax import command_line

SUPPORTED_COMMANDS = frozenset(
    {"rootpw", "user", "sshkey", "timezone", "lang", "keyboard", "network", "services", "part", "partition", "bootloader", "repo"}
)
HINTS = {
    "autopart": "declare the layout with `part /boot/efi` and `part /`",
    "clearpart": "remove it: Crust always writes a fresh disk image",
    "zerombr": "remove it: Crust always writes a fresh disk image",
    "reboot": "remove it: there is no installer run to end",
    "poweroff": "remove it: there is no installer run to end",
    "shutdown": "remove it: there is no installer run to end",
    "text": "remove it: there is no installer run",
    "graphical": "remove it: there is no installer run",
    "url": "the distribution's sources come from distributions/*.toml; use `repo` for extra sources",
    "selinux": "remove it: Debian appliances do not use SELinux",
    "firewall": "configure nftables in a role instead",
    "firstboot": "remove it; first-boot work belongs in a role's systemd unit",
}
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(:[a-z0-9]+)?(=[A-Za-z0-9.+~:\-]+|/[a-z0-9\-]+)?$")
CRYPT_RE = re.compile(r"^\$(1|5|6|y|gy|2[abxy]?|7)\$\S+$")
LANG_RE = re.compile(r"^(C|POSIX|C\.UTF-8|[a-z]{2,3}(_[A-Z]{2})?(\.UTF-8)?(@[a-z]+)?)$")
HOSTNAME_RE = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
ROOT_PART_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"


def check_policy(handler: Any, text: str, *, allow_plaintext: bool) -> KickstartConfig:
    """Crust's own rules on top of kickstart syntax. Returns the config to apply."""
    lines = text.splitlines()
    for name, command in handler.commands.items():
        if getattr(command, "seen", False) and name not in SUPPORTED_COMMANDS:
            line = getattr(command, "lineno", None) or command_line(text, name)
            words = lines[line - 1].split() if line and line <= len(lines) else []
            word = words[0] if words else name  # as written: `reboot`, not pykickstart's `halt`
            raise KickstartProblem(
                line,
                f"command {word!r} cannot be honoured for a Debian image",
                HINTS.get(word, "remove it; supported: " + ", ".join(sorted(SUPPORTED_COMMANDS - {"partition"}))),
            )
    for lineno, line in enumerate(lines, start=1):
        words = line.split()
        if words and words[0] in ("%addon", "%anaconda"):
            raise KickstartProblem(
                lineno, f"{words[0]} sections cannot be honoured for a Debian image", "remove the section; configure the tree in a role"
            )
    packages = _check_packages(handler, text)
    return KickstartConfig(
        packages=packages[0],
        excluded=packages[1],
        repos=_check_repos(handler),
        root_password_hash=_check_rootpw(handler, allow_plaintext),
        users=_check_users(handler, allow_plaintext),
        sshkeys=_check_sshkeys(handler),
        timezone=_check_timezone(handler),
        lang=_check_lang(handler),
        keymap=_check_keyboard(handler),
        network=_check_network(handler),
        services_enabled=tuple(handler.services.enabled),
        services_disabled=tuple(handler.services.disabled),
        **_check_parts(handler),
        kernel_append=_check_bootloader(handler),
        scripts=_check_scripts(handler, text),
    )


def _check_packages(handler: Any, text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    pk = handler.packages
    line = command_line(text, "%packages")
    if pk.groupList or pk.excludedGroupList or pk.environment:
        raise KickstartProblem(line, "package groups and environments (@name) do not exist on Debian", "list the packages by name")
    for option in ("nocore", "multiLib", "instLangs", "timeout", "retries"):
        if getattr(pk, option) not in (False, None):
            raise KickstartProblem(line, f"%packages option {option!r} cannot be honoured", "remove it")
    for name in pk.packageList + pk.excludedList:
        if not PACKAGE_RE.match(name):
            raise KickstartProblem(command_line(text, name) or line, f"{name!r} is not a Debian package name", "use the name apt knows, e.g. nginx")
    both = set(_section_lines(text, "%packages")) & {f"-{name}" for name in pk.excludedList}
    both = {name[1:] for name in both if name[1:] in _section_lines(text, "%packages")}
    if both:
        raise KickstartProblem(line, f"package {sorted(both)[0]!r} is both included and excluded", "keep one of the two lines")
    return tuple(pk.packageList), tuple(pk.excludedList)


def _section_lines(text: str, header: str) -> list[str]:
    lines: list[str] = []
    inside = False
    for line in text.splitlines():
        word = line.strip()
        if word.split(" ")[0] == header:
            inside = True
        elif word == "%end":
            inside = False
        elif inside and word and not word.startswith("#"):
            lines.append(word)
    return lines


def _check_repos(handler: Any) -> tuple[Repo, ...]:
    repos = []
    for repo in handler.repo.repoList:
        for option in ("mirrorlist", "metalink", "proxy", "cost", "sslcacert", "sslclientcert", "sslclientkey", "ignoregroups"):
            if getattr(repo, option, None):
                raise KickstartProblem(repo.lineno, f"repo option --{option} cannot be honoured", "remove it")
        if getattr(repo, "noverifyssl", False):
            raise KickstartProblem(repo.lineno, "repo --noverifyssl is refused: apt sources must be verified", "remove it")
        if not repo.baseurl or not re.match(r"^https?://\S+$", repo.baseurl):
            raise KickstartProblem(
                repo.lineno, f"repo {repo.name!r} needs --baseurl=http(s)://...", "give the archive URI, e.g. --baseurl={{ distro.mirror }}"
            )
        suite, _, comps = repo.name.partition(":")
        repos.append(
            Repo(
                suite=suite,
                uri=repo.baseurl.rstrip("/"),
                components=tuple(comps.split(",")) if comps else ("main",),
                pinned=tuple(repo.includepkgs),
                excluded=tuple(repo.excludepkgs),
                keep=bool(repo.install),
            )
        )
    return tuple(repos)


def _check_hash(value: str, what: str, line: int) -> str:
    if not CRYPT_RE.match(value):
        raise KickstartProblem(line, f"{what}: --iscrypted value is not a crypt(3) hash", "generate one with `openssl passwd -6`")
    return value


def _hash_plaintext(value: str) -> str:
    """SHA-512 crypt of a plain-text password (only when plain text is explicitly allowed)."""
    from crust.runner import run  # as every command: no credential of Crust's environment reaches it

    return run(["openssl", "passwd", "-6", "-stdin"], capture=True, input_text=value).stdout.strip()


def _check_rootpw(handler: Any, allow: bool) -> str:
    rp = handler.rootpw
    if not rp.seen or rp.lock:
        if rp.seen and rp.password and not rp.isCrypted and not allow:
            raise KickstartProblem(rp.lineno, "rootpw: a plain-text password is refused", "use --iscrypted or --lock")
        return ""
    if not rp.password:
        return ""
    if rp.isCrypted:
        return _check_hash(rp.password, "rootpw", rp.lineno)
    if not allow:
        raise KickstartProblem(
            rp.lineno,
            "rootpw: a plain-text password is refused",
            "use --iscrypted with a hash, or --lock; or set security.allow_plaintext_passwords = true",
        )
    return _hash_plaintext(rp.password)


def _check_users(handler: Any, allow: bool) -> tuple[User, ...]:
    users = []
    for u in handler.user.userList:
        password = ""
        if u.password and not u.lock:
            if u.isCrypted:
                password = _check_hash(u.password, f"user {u.name}", u.lineno)
            elif not allow:
                raise KickstartProblem(
                    u.lineno,
                    f"user {u.name}: a plain-text password is refused",
                    "use --iscrypted with a hash, or --lock; or set security.allow_plaintext_passwords = true",
                )
            else:
                password = _hash_plaintext(u.password)
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", u.name):
            raise KickstartProblem(u.lineno, f"user {u.name!r} is not a valid user name", "use lower-case letters, digits, '_' and '-'")
        users.append(
            User(
                name=u.name,
                groups=tuple(g for g in u.groups if g),
                password_hash=password,
                shell=u.shell or "/bin/bash",
                homedir=u.homedir or f"/home/{u.name}",
                uid=u.uid,
                gecos=u.gecos or "",
            )
        )
    return tuple(users)


def _check_sshkeys(handler: Any) -> tuple[SshKey, ...]:
    known = {"root"} | {u.name for u in handler.user.userList}
    keys = []
    for k in handler.sshkey.sshUserList:
        if k.username not in known:
            raise KickstartProblem(k.lineno, f"sshkey for unknown user {k.username!r}", "add a `user --name=...` line first")
        if not re.match(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-\S+|sk-\S+) [A-Za-z0-9+/=]+( .*)?$", k.key.strip()):
            raise KickstartProblem(k.lineno, "sshkey is not an OpenSSH public key line", "paste the contents of a .pub file")
        keys.append(SshKey(k.username, k.key.strip()))
    return tuple(keys)


def _check_timezone(handler: Any) -> str:
    tz = handler.timezone
    if not tz.seen:
        return "Etc/UTC"
    if tz.ntpservers or tz.nontp:
        raise KickstartProblem(tz.lineno, "timezone --ntpservers/--nontp cannot be honoured", "configure time sync in a role")
    if not re.match(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$", tz.timezone) or (
        Path("/usr/share/zoneinfo").is_dir() and not (Path("/usr/share/zoneinfo") / tz.timezone).is_file()
    ):
        raise KickstartProblem(tz.lineno, f"unknown time zone {tz.timezone!r}", "use a name from /usr/share/zoneinfo, e.g. Etc/UTC or Europe/Berlin")
    return str(tz.timezone)


def _check_lang(handler: Any) -> str:
    lang = handler.lang
    if not lang.seen:
        return "C.UTF-8"
    if lang.addsupport:
        raise KickstartProblem(lang.lineno, "lang --addsupport cannot be honoured", "remove it")
    if not LANG_RE.match(lang.lang):
        raise KickstartProblem(lang.lineno, f"{lang.lang!r} is not a locale name", "use e.g. C.UTF-8 or en_US.UTF-8")
    return str(lang.lang)


def _check_keyboard(handler: Any) -> str:
    kb = handler.keyboard
    if not kb.seen:
        return "us"
    layout = kb.vc_keymap or (kb.x_layouts[0] if kb.x_layouts else "") or kb._keyboard
    if not re.match(r"^[a-z]{2,8}([-_][a-z0-9]+)?$", layout or ""):
        raise KickstartProblem(kb.lineno, f"{layout!r} is not a keyboard layout", "use e.g. us or de")
    return str(layout)


def _check_network(handler: Any) -> Network:
    nets = handler.network.network
    if len(nets) > 1:
        raise KickstartProblem(nets[1].lineno, "only one `network` line is supported", "merge the lines")
    if not nets:
        raise KickstartProblem(None, "no `network --hostname=...` line", "add `network --bootproto=dhcp --hostname=NAME`")
    n = nets[0]
    for option in ("bondslaves", "bridgeslaves", "teamslaves", "vlanid", "essid", "wpakey", "wepkey", "ethtool", "ipv6", "dhcpclass"):
        if getattr(n, option, None):
            raise KickstartProblem(n.lineno, f"network --{option} cannot be honoured", "remove it; configure complex networking in a role")
    if n.bootProto not in ("dhcp", "static"):
        raise KickstartProblem(n.lineno, f"network --bootproto={n.bootProto} cannot be honoured", "use dhcp or static")
    if not n.hostname or not HOSTNAME_RE.match(n.hostname):
        raise KickstartProblem(n.lineno, f"network --hostname {n.hostname!r} is not a valid host name", "use lower-case letters, digits and '-'")
    address = ""
    if n.bootProto == "static":
        if not (n.ip and n.netmask):
            raise KickstartProblem(n.lineno, "network --bootproto=static needs --ip and --netmask", "add them")
        import ipaddress

        try:
            address = str(ipaddress.ip_interface(f"{n.ip}/{n.netmask}"))
        except ValueError as exc:
            raise KickstartProblem(n.lineno, f"network: {exc}", "give a valid --ip and --netmask") from None
    device = n.device or ""
    if device == "link":
        device = ""
    return Network(
        hostname=n.hostname,
        device=device,
        dhcp=n.bootProto == "dhcp",
        address=address,
        gateway=n.gateway or "",
        nameservers=tuple(s for s in (n.nameserver or "").split(",") if s),
    )


def _check_parts(handler: Any) -> dict[str, Any]:
    parts = handler.partition.partitions
    root = [p for p in parts if p.mountpoint == "/"]
    esp = [p for p in parts if p.mountpoint == "/boot/efi"]
    for p in parts:
        if p.mountpoint not in ("/", "/boot/efi"):
            raise KickstartProblem(
                p.lineno, f"partition {p.mountpoint!r} cannot be honoured", "Crust builds an ESP (/boot/efi) and one root partition (/)"
            )
    if not root:
        raise KickstartProblem(None, "no root partition", "add `part / --fstype=ext4 --size=MIB`")
    r = root[0]
    if r.fstype not in ("", "ext4"):
        raise KickstartProblem(r.lineno, f"root filesystem {r.fstype!r} cannot be honoured", "use --fstype=ext4")
    if not r.size or r.size < 256:
        raise KickstartProblem(r.lineno, "root partition needs --size of at least 256 (MiB)", "set --size=2048")
    esp_size = 64
    if esp:
        e = esp[0]
        if e.fstype not in ("efi", "vfat"):
            raise KickstartProblem(e.lineno, "/boot/efi must have --fstype=efi", "use --fstype=efi")
        if not e.size or e.size < 33:
            raise KickstartProblem(e.lineno, "the ESP needs --size of at least 33 (MiB) for FAT32", "set --size=64")
        esp_size = e.size
    for p in parts:
        if p.encrypted or p.label or p.fsopts or p.mkfsopts or p.onPart or p.disk:
            raise KickstartProblem(p.lineno, "part options other than --fstype, --size and --grow cannot be honoured", "remove them")
    return {"root_size_mib": int(r.size), "root_grow": bool(r.grow), "esp_size_mib": int(esp_size)}


def _check_bootloader(handler: Any) -> tuple[str, ...]:
    bl = handler.bootloader
    if not bl.seen:
        return ()
    for option in ("location", "password", "timeout", "driveorder", "md5pass", "bootDrive", "extlinux"):
        value = getattr(bl, option, None)
        if value and not (option == "location" and value in ("mbr", "none")):
            raise KickstartProblem(bl.lineno, f"bootloader --{option} cannot be honoured", "Crust boots a UKI; only --append is used")
    words = tuple((bl.appendLine or "").split())
    for word in words:
        if word.startswith(("console=", "root=", "rw", "ro")) and word.split("=")[0] in ("root",):
            raise KickstartProblem(bl.lineno, f"bootloader --append must not set {word.split('=')[0]}=", "Crust sets the root device itself")
    return words


def _check_scripts(handler: Any, text: str) -> tuple[Script, ...]:
    scripts = []
    for s in handler.scripts:
        kind = {0: "%pre", 1: "%post", 2: "%traceback", 3: "%pre-install", 4: "%onerror"}.get(s.type, "%?")
        if kind != "%post":
            raise KickstartProblem(s.lineno, f"{kind} cannot be honoured: there is no installer run", "use %post")
        if s.logfile:
            raise KickstartProblem(s.lineno, "%post --log cannot be honoured: the output goes to the build log", "remove --log")
        interp = s.interp or "/bin/sh"
        scripts.append(Script(body=s.script, interpreter=interp, chroot=bool(s.inChroot), line=int(s.lineno)))
    return tuple(scripts)
