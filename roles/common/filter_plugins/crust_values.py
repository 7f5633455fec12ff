"""Filters that keep role variables data: check a value's shape, or quote it for its file.

Appliance variables are data from whoever wrote the appliance file: a value may produce any
image, but never a broken or injected configuration. Ansible loads this file for every role
that depends on the common role (a legacy role's filter_plugins are added to the plugin path
when the role is loaded).

crust_check(value, kind): "" when the value has the shape KIND allows (a list: each element),
else one line saying what is wrong. Each role's tasks/validate.yml asserts it for the
variables that go into files or command lines unquoted (paths, names, addresses...).

systemd_quote(value, exec=False): one word of a unit file setting (systemd.syntax(7) and the
"Command lines" section of systemd.service(5)). The word is left bare when it holds only
characters that no part of systemd's parser treats specially; otherwise it is double-quoted
with C escapes for backslash, double quote and control characters (a newline cannot end the
line), and "%" is doubled everywhere (specifiers are expanded on the whole line, quoted or
not). With exec=True (ExecStart= and friends) "$" is doubled too (environment variable
substitution); in Environment= it has no special meaning. A NUL cannot be represented.
"""

import re

from ansible.errors import AnsibleFilterError

_BARE = re.compile(r"[A-Za-z0-9_./:=,+@-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _escape(char):
    if char in _ESCAPES:
        return _ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\x{ord(char):02x}"
    return char


def systemd_quote(value, exec=False):
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise AnsibleFilterError(f"systemd_quote: expected a string, got {type(value).__name__}")
    text = str(value)
    if "\x00" in text:
        raise AnsibleFilterError("systemd_quote: a NUL character cannot be written into a unit file")
    text = text.replace("%", "%%")
    if exec:
        text = text.replace("$", "$$")
    if _BARE.fullmatch(text):
        return text
    return '"' + "".join(_escape(c) for c in text) + '"'


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH_PART = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9_.+-]+"  # a name, never "." or ".."
_IMAGE_PATH = rf"(?:/{_PATH_PART})+"

# kind -> (regular expression the whole value must match, what it describes)
KINDS = {
    "image_path": (_IMAGE_PATH, "an absolute path in the image ('/'-separated names of letters, digits and . _ + -; no '.' or '..')"),
    "image_path_or_empty": (rf"(?:{_IMAGE_PATH})?", "empty or an absolute path in the image ('/'-separated names of letters, digits and . _ + -)"),
    "url_prefix": (r"/(?:[A-Za-z0-9._~-]+/)*", "a URL path prefix: '/' or '/NAME/.../' (letters, digits and . _ ~ -, ending in '/')"),
    "env_file": (rf"-?{_IMAGE_PATH}", "an absolute path in the image, optionally after '-' (letters, digits and . _ + - between slashes)"),
    "relative_path": (rf"{_PATH_PART}(?:/{_PATH_PART})*", "a relative path ('/'-separated names of letters, digits and . _ + -; no '.' or '..')"),
    "file_name": (r"[A-Za-z0-9][A-Za-z0-9._+-]*", "a file name (letters, digits and . _ + -)"),
    "user": (r"[a-z_][a-z0-9_-]{0,31}", "a user or group name (a-z, 0-9, _ and -, starting with a letter or _, at most 32)"),
    "unit": (r"[A-Za-z0-9_.:@-]+\.(?:service|socket|target|timer|path|mount|device|slice|scope)", "a systemd unit name (NAME.service, .target...)"),
    "bind": (r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}", "HOST:PORT (an address or host name, [IPv6]:PORT)"),
    "python_callable": (
        rf"{_NAME}(?:\.{_NAME})*(?::{_NAME}(?:\.{_NAME})*(?:\(\))?)?",
        "module:callable (dotted Python names, optionally callable())",
    ),
    "python_module": (rf"{_NAME}(?:\.{_NAME})*", "a dotted Python module name"),
    "python_module_or_empty": (rf"(?:{_NAME}(?:\.{_NAME})*)?", "empty or a dotted Python module name"),
    "token": (r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}", "a single word of letters, digits and . _ + ~ - (at most 64)"),
    "size": (r"[0-9]+[KMGTPE]?", "a size: digits with an optional K, M, G, T, P or E"),
    "interface": (r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}", "auto or a network interface name (letters, digits and _ . -, at most 15)"),
    "address_group": (r"any|[0-9A-Fa-f.:/,!\[\]]+", "a Suricata address group ([CIDR,...], !negations, or any) without spaces"),
    "calendar": (
        r"[A-Za-z0-9,:/*.~+-]+(?: [A-Za-z0-9,:/*.~+-]+)*",
        "a systemd calendar expression (letters, digits, single spaces and , : / * . ~ + -)",
    ),
    "rule_source": (r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*", "a suricata-update source name (such as et/open)"),
    "npm_package": (r"(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*", "an npm package name (optionally @scope/name)"),
    "version": (r"[0-9]+(?:\.[0-9]+)*(?:[-+][0-9A-Za-z.-]+)?", "a version (digits and dots, optionally -pre or +build)"),
    "env_prefix": (r"[A-Z][A-Z0-9_]{0,31}", "an environment variable prefix (A-Z, 0-9 and _, starting with a letter)"),
    "broker_user": (r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "a broker user name (letters, digits and . _ -, at most 64)"),
    "broker_password": (r"(?:[A-Za-z0-9._~+/=-]{12,128})?", "empty (made at first boot) or 12-128 of letters, digits and . _ ~ + / = -"),
    "erlang_atom": (r"[a-z][a-z0-9_]*", "a RabbitMQ plugin name (a-z, 0-9 and _)"),
    "pg_name": (r"[^\x00-\x1f\x7f]{1,63}", "a PostgreSQL name (1-63 characters, no control characters)"),
    "url_scheme": (r"[a-z][a-z0-9+.-]{0,31}", "a URL scheme (a-z, 0-9 and + . -, starting with a letter)"),
    "django_user": (r"[A-Za-z0-9@.+_-]{1,150}", "a Django user name (1-150 letters, digits and @ . + - _)"),
    "email": (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+", "an e-mail address (NAME@DOMAIN)"),
    "time_zone": (r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*", "a time zone name (UTC, Europe/Paris...)"),
    "language_code": (r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*", "a language code (en-us, fr, pt-br...)"),
    "host_pattern": (r"\*|\.?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\]", "a host name, .domain (and its subdomains), an [IPv6] address or *"),
    "origin": (r"https?://(?:\*\.)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?", "an origin: http(s)://HOST[:PORT] (*.DOMAIN for subdomains)"),
    "dns_name": (
        r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
        "a DNS name (labels of letters, digits and -, separated by dots)",
    ),
    "pg_password": (r"[^\x00-\x1f\x7f]{0,128}", "at most 128 characters, no control characters"),
}
NUMBERS = {
    "port": (1, 65535, "a port number (1-65535)"),
    "positive": (1, 1 << 31, "a positive integer"),
    "percent": (1, 100, "a percentage (1-100)"),
    "count": (0, 1024, "0 (worked out at boot) or a count up to 1024"),
}


def crust_check(value, kind):
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = crust_check(item, kind)
            if problem:
                return f"[{index}] {problem}"
        return ""
    if kind in NUMBERS:
        low, high, what = NUMBERS[kind]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"{value!r} is not {what}"
        return ""
    if kind not in KINDS:
        raise AnsibleFilterError(f"crust_check: unknown kind {kind!r}")
    pattern, what = KINDS[kind]
    if kind == "interface" and value == "auto":
        return ""
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        return f"{value!r} is not {what}"
    if kind == "pg_name" and len(value.encode("utf-8")) > 63:
        return f"{value!r} is longer than PostgreSQL's 63 bytes"
    return ""


class FilterModule:
    def filters(self):
        return {"systemd_quote": systemd_quote, "crust_check": crust_check}
