"""Smoke checks of the config appliance (Puppet Server), from the host and through the guest agent.

See wsgi_checks.py for the context these functions get. The agents these checks run are on the
appliance itself (root, through the guest agent), each with its own certname and its own
directories under /run/crust-check (kept between a check's attempts, so a retry sends the same
key and CSR again rather than a second one for a name the CA has seen).
"""

from __future__ import annotations

import configparser
import http.client
import re
import shlex
import ssl
import time
from typing import Any

CA_CERT = "/etc/puppet/puppetserver/ca/ca_crt.pem"
SECRET = "/etc/puppet/crust/autosign-secret"
SAMPLE = "/etc/crust-puppet-sample"
SIGNED = "crust-check-signed"  # its CSR carries the shared secret
PENDING = "crust-check-pending"  # its CSR does not
CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"


def run(ctx: Any, script: str, timeout: float = 300) -> Any:
    return ctx.guest_exec(["/bin/sh", "-c", script], timeout=timeout)


def server_name(ctx: Any) -> str:
    """The server's certname, from puppet.conf's [server] section (read here: `puppet config
    print` would start Puppet's Ruby in the guest, about 50 s under emulation)."""
    conf = ctx.guest_exec(["cat", "/etc/puppet/puppet.conf"])
    assert conf.status == 0, f"cat /etc/puppet/puppet.conf: {conf.stderr.strip()[-300:]}"
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(conf.stdout)
    name = parser.get("server", "certname", fallback="").strip()
    assert name, f"puppet.conf names no certname in [server]: {conf.stdout[-300:]!r}"
    return name


def status_over_tls(ctx: Any) -> str:
    """GET /status/v1/simple on 8140, the server's certificate verified against the CA the
    appliance made on this boot (its file is younger than the boot)."""
    ca = ctx.guest_exec(["cat", CA_CERT])
    assert ca.status == 0, f"no CA certificate yet ({CA_CERT})"
    ages = run(ctx, f"stat -c %Y {CA_CERT}; sed -n 's/^btime //p' /proc/stat")
    made, booted = (int(v) for v in ages.stdout.split())
    assert made >= booted, f"the CA certificate ({made}) is older than this boot ({booted}): it came with the image"
    context = ssl.create_default_context(cadata=ca.stdout)
    context.check_hostname = False  # its name is the guest's host name; the host reaches it on 127.0.0.1
    host, port = ctx.address(8140)
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        conn.request("GET", "/status/v1/simple")
        response = conn.getresponse()
        body = response.read().decode(errors="replace").strip()
        peer = conn.sock.getpeercert() if conn.sock is not None else None
    finally:
        conn.close()
    assert response.status == 200 and body == "running", f"status API answered {response.status}: {body[:200]!r}"
    subject = dict(item[0] for item in peer["subject"]) if peer else {}
    return f"status 'running' over TLS; the server's certificate ({subject.get('commonName', '?')}) verified against the CA made {made - booted} s into this boot"


def agent(ctx: Any, certname: str, with_secret: bool) -> Any:
    """One `puppet agent --test` run as certname against this server (exit status in stdout's last line)."""
    home = f"/run/crust-check/{certname}"
    attributes = (
        f'printf \'custom_attributes:\\n  "{CHALLENGE_PASSWORD}": "%s"\\n\' "$(cat {SECRET})" > {home}/conf/csr_attributes.yaml'
        if with_secret
        else ":"
    )
    script = f"""
set -u
mkdir -p {home}/conf
chmod 0700 {home}
{attributes}
puppet agent --test --detailed-exitcodes --waitforcert 0 --certname {shlex.quote(certname)} \\
    --server {shlex.quote(server_name(ctx))} --confdir {home}/conf \\
    --vardir {home}/var --ssldir {home}/ssl --logdir {home}/log --rundir {home}/run 2>&1
echo "exit status $?"
"""
    return run(ctx, script, timeout=min(540.0, max(30.0, ctx.deadline - time.monotonic())))


def exit_status(output: str) -> int:
    found = re.search(r"exit status (\d+)\s*$", output)
    assert found, f"the agent's run did not finish: {output[-300:]!r}"
    return int(found.group(1))


def agent_with_secret_applies_catalog(ctx: Any) -> str:
    """An agent whose CSR carries the shared secret is signed by the policy and applies the
    sample catalog: the file crust_sample manages appears with its content."""
    ran = agent(ctx, SIGNED, with_secret=True)
    status = exit_status(ran.stdout)
    assert status in (0, 2), f"puppet agent --test exited {status}: {ran.stdout[-600:]}"
    sample = ctx.guest_exec(["cat", SAMPLE])
    assert sample.status == 0, f"{SAMPLE} is not there after the run"
    assert re.fullmatch(rf"Managed by Puppet for {SIGNED} from \S+\n", sample.stdout), f"{SAMPLE} holds {sample.stdout!r}"
    return f"signed through the policy; the catalog applied (exit {status}): {SAMPLE} says {sample.stdout.strip()!r}"


def ca_list(ctx: Any, *args: str) -> dict[str, set[str]]:
    """`puppetserver ca list` parsed: section title -> certnames."""
    listed = run(ctx, "puppetserver ca list " + " ".join(args) + " 2>&1")
    sections: dict[str, set[str]] = {}
    current = None
    for line in listed.stdout.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.strip().rstrip(":")
            sections[current] = set()
        elif current is not None and line.strip():
            sections[current].add(line.split()[0])
    assert sections or "No certificates to list" in listed.stdout, f"puppetserver ca list {' '.join(args)}: {listed.stdout[-400:]}"
    return sections


def csr_without_secret_stays_pending(ctx: Any) -> str:
    """An agent whose CSR has no secret gets no certificate: its request stays pending."""
    ran = agent(ctx, PENDING, with_secret=False)
    status = exit_status(ran.stdout)
    assert status == 1, f"the agent without the secret exited {status}, not 1: {ran.stdout[-600:]}"
    pending = ca_list(ctx).get("Requested Certificates", set())
    assert PENDING in pending, f"{PENDING} is not among the requested certificates: {sorted(pending)}"
    signed = ca_list(ctx, "--all").get("Signed Certificates", set())
    assert PENDING not in signed, f"{PENDING} was signed"
    return f"{PENDING}: no certificate (agent exit 1), its CSR pending"


def ca_list_shows_the_signed(ctx: Any) -> str:
    """`puppetserver ca list --all`: signed, the server's own certificate and the agent's with the
    secret; requested, the one without."""
    sections = ca_list(ctx, "--all")
    server = server_name(ctx)
    signed, requested = sections.get("Signed Certificates", set()), sections.get("Requested Certificates", set())
    assert signed == {server, SIGNED}, f"signed: {sorted(signed)}, expected {sorted({server, SIGNED})}"
    assert requested == {PENDING}, f"requested: {sorted(requested)}, expected [{PENDING!r}]"
    return f"signed: {', '.join(sorted(signed))}; requested: {PENDING}"
