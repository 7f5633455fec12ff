"""Crust's policy on top of kickstart syntax (as lorax's check_kickstart): what Crust can honour
for a Debian image. Anything it cannot honour is an error naming the line, never ignored."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crust.define.kickstart.accounts import ABSOLUTE_PATH_RE, check_rootpw, check_sshkeys, check_users
from crust.define.kickstart.model import KickstartConfig, KickstartProblem, Network, Repo, Script
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
SUITE_RE = re.compile(r"^[a-z0-9][a-z0-9.+~-]{0,63}$")
COMPONENT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
URI_RE = re.compile(r"^https?://[A-Za-z0-9._~:/?#@!$&*+,;=%\[\]-]+$")
UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._:\\-]{0,255}$")
DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")
# Kernel arguments that give a shell or another init instead of the appliance's boot.
UNSAFE_KERNEL_ARGS = re.compile(
    r"^(init|rdinit)=|^rd\.(break|shell|emergency)(=|$)|^systemd\.(debug[-_]shell|unit=(rescue|emergency))|^(single|emergency|rescue|s|S|1)$"
)
LANG_RE = re.compile(r"^(C|POSIX|C\.UTF-8|[a-z]{2,3}(_[A-Z]{2})?(\.UTF-8)?(@[a-z]+)?)$")
HOSTNAME_RE = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
ROOT_PART_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"


def check_policy(handler: Any, text: str, *, allow_plaintext: bool, allow_host_scripts: bool = False) -> KickstartConfig:
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
        root_password_hash=check_rootpw(handler, allow_plaintext),
        users=check_users(handler, allow_plaintext),
        sshkeys=check_sshkeys(handler),
        timezone=_check_timezone(handler),
        lang=_check_lang(handler),
        keymap=_check_keyboard(handler),
        network=_check_network(handler),
        services_enabled=_check_services(handler, handler.services.enabled),
        services_disabled=_check_services(handler, handler.services.disabled),
        **_check_parts(handler),
        kernel_append=_check_bootloader(handler),
        scripts=_check_scripts(handler, text, allow_host_scripts),
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
        if not URI_RE.fullmatch(repo.baseurl):
            raise KickstartProblem(repo.lineno, f"repo --baseurl {repo.baseurl!r} has characters a URI does not", "give a plain http(s) URI")
        suite, _, comps = repo.name.partition(":")
        components = comps.split(",") if comps else ["main"]
        if not SUITE_RE.fullmatch(suite) or not all(COMPONENT_RE.fullmatch(c) for c in components):
            raise KickstartProblem(
                repo.lineno,
                f"repo --name {repo.name!r} is not SUITE or SUITE:COMPONENT,...",
                "use a suite name like bookworm-backports (lower-case letters, digits, '.', '+', '~', '-')",
            )
        for name in [*repo.includepkgs, *repo.excludepkgs]:
            if not PACKAGE_RE.match(name):
                raise KickstartProblem(repo.lineno, f"repo: {name!r} is not a Debian package name", "use the name apt knows, e.g. nginx")
        repos.append(
            Repo(
                suite=suite,
                uri=repo.baseurl.rstrip("/"),
                components=tuple(components),
                pinned=tuple(repo.includepkgs),
                excluded=tuple(repo.excludepkgs),
                keep=bool(repo.install),
            )
        )
    return tuple(repos)


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
    if device and not DEVICE_RE.fullmatch(device):
        raise KickstartProblem(n.lineno, f"network --device {device!r} is not an interface name", "use e.g. ens3, or leave it out")
    nameservers = tuple(s for s in (n.nameserver or "").split(",") if s)
    for option, value in [("--gateway", n.gateway or ""), *(("--nameserver", ns) for ns in nameservers)]:
        if value:
            import ipaddress

            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise KickstartProblem(n.lineno, f"network {option} {value!r} is not an IP address", "give an IPv4 or IPv6 address") from None
    return Network(
        hostname=n.hostname,
        device=device,
        dhcp=n.bootProto == "dhcp",
        address=address,
        gateway=n.gateway or "",
        nameservers=nameservers,
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
        if UNSAFE_KERNEL_ARGS.search(word):
            raise KickstartProblem(
                bl.lineno, f"bootloader --append {word!r} would boot a shell or another init", "remove it: an image boots its own init"
            )
        if word.startswith(("console=", "root=", "rw", "ro")) and word.split("=")[0] in ("root",):
            raise KickstartProblem(bl.lineno, f"bootloader --append must not set {word.split('=')[0]}=", "Crust sets the root device itself")
    return words


def _check_services(handler: Any, names: list[str]) -> tuple[str, ...]:
    for name in names:
        if not UNIT_RE.fullmatch(name):
            raise KickstartProblem(handler.services.lineno, f"services: {name!r} is not a unit name", "name a unit, e.g. nginx or nginx.service")
    return tuple(names)


def _check_scripts(handler: Any, text: str, allow_host_scripts: bool) -> tuple[Script, ...]:
    scripts = []
    for s in handler.scripts:
        kind = {0: "%pre", 1: "%post", 2: "%traceback", 3: "%pre-install", 4: "%onerror"}.get(s.type, "%?")
        if kind != "%post":
            raise KickstartProblem(s.lineno, f"{kind} cannot be honoured: there is no installer run", "use %post")
        if s.logfile:
            raise KickstartProblem(s.lineno, "%post --log cannot be honoured: the output goes to the build log", "remove --log")
        interp = s.interp or "/bin/sh"
        if not ABSOLUTE_PATH_RE.fullmatch(interp):
            raise KickstartProblem(s.lineno, f"%post --interpreter {interp!r} is not a plain absolute path", "write e.g. /bin/sh or /usr/bin/python3")
        if not s.inChroot and not allow_host_scripts:
            raise KickstartProblem(
                s.lineno,
                "%post --nochroot runs as root on the build host, not in the image",
                "use %post (it runs in the image's tree), or set security.allow_host_scripts = true in the appliance file",
            )
        scripts.append(Script(body=s.script, interpreter=interp, chroot=bool(s.inChroot), line=int(s.lineno)))
    return tuple(scripts)
