"""Each appliance beyond wsgi, built and smoke-tested for real (`build NAME --test`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, build_py, need_tool, start_build_py, without_boot_analysis

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


def smoke(name: str, *options: str) -> dict[str, Any]:
    return passed(name, build_py(*options, "test", name, "--force", "--json"))


def shipped_without_boot_analysis(folder: Path) -> Path:
    """FOLDER (made here) with the shipped appliance files, whose boots skip systemd-analyze: the
    boot analysis (some 12 s of the guest's time under TCG) is test_smoke's, on wsgi; these boots
    are about the appliances' checks, and they share the CPU with the session's other work."""
    shutil.copytree(ROOT / "appliances", folder)
    for path in folder.glob("*.toml"):
        path.write_text(without_boot_analysis(path.read_text()))
    return folder


def passed(name: str, out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 0, out.stderr[-5000:]
    record: dict[str, Any] = json.loads(out.stdout)[0]
    print(f"{name}: all checks passed {record['boot_to_pass_s']}s from domain start ({record['accel']})")
    return record


@pytest.fixture(scope="module", autouse=True)
def config_boot(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The config appliance's smoke test, started before this module's other tests and run beside
    theirs: Puppet Server's JVM starts on one CPU of its guest for 10-20 minutes under TCG, and
    the other appliances boot on the core it leaves. test_config, the last test, waits for it."""
    manifest = built("config")
    folder = shipped_without_boot_analysis(tmp_path_factory.mktemp("config-appliances") / "appliances")
    run = start_build_py("--appliances", str(folder), "test", "config", "--force", "--json", logs=tmp_path_factory.mktemp("config-boot"))
    yield manifest, run
    run.stop()


def test_turbogears2(built: Built, tmp_path: Path) -> None:
    manifest = built("turbogears2")
    assert "postgresql" in manifest["packages"]
    record = smoke("turbogears2", "--appliances", str(shipped_without_boot_analysis(tmp_path / "appliances")))
    seen = {c["name"]: c["seen"] for c in record["checks"]}
    assert "written and read back" in seen["a record created through the API is read back"]
    assert seen["front page from the template"].startswith("HTTP 200")


def test_pyramid(built: Built, tmp_path: Path) -> None:
    manifest = built("pyramid")
    assert "postgresql" in manifest["packages"]
    record = smoke("pyramid", "--appliances", str(shipped_without_boot_analysis(tmp_path / "appliances")))
    seen = {c["name"]: c["seen"] for c in record["checks"]}
    assert "written and read back" in seen["a record created through the API is read back"]
    assert seen["front page from the template"].startswith("HTTP 200")


# The second boot of test_django: only what it compares (the boot analysis is the first's).
SECRET_KEY_ONLY = """
[test]
ports = [80]
boot_timeout = 1500
boot_analysis = false
module = "django_checks.py"

[[test.checks]]
type = "unit"
unit = "crust-django-setup.service"
timeout = 900

[[test.checks]]
name = "secret key made on this machine"
type = "python"
function = "secret_key_made_here"
"""


def test_django(built: Built, tmp_path: Path) -> None:
    """Every check passes, and two boots of the one image make two different secret keys."""
    manifest = built("django")
    assert {"postgresql", "nginx"} <= set(manifest["packages"])
    first = smoke("django", "--appliances", str(shipped_without_boot_analysis(tmp_path / "shipped")))
    seen = {c["name"]: c["seen"] for c in first["checks"]}
    assert seen["a note written through the ORM is read back from PostgreSQL"].endswith("read back from PostgreSQL")
    assert seen["a static file comes from nginx, with cache headers"].startswith("Cache-Control: max-age=")
    assert seen["manage.py check --deploy finds no errors"].startswith("no errors; warnings:")
    folder = tmp_path / "appliances"
    folder.mkdir()
    shutil.copy(ROOT / "appliances" / "django_checks.py", folder)
    text = (ROOT / "appliances" / "django.toml").read_text()
    (folder / "django.toml").write_text(text[: text.index("[test]")] + SECRET_KEY_ONLY)
    second = {c["name"]: c["seen"] for c in smoke("django", "--appliances", str(folder))["checks"]}
    key = "secret key made on this machine"
    assert seen[key].startswith("secret key sha256 ") and second[key].startswith("secret key sha256 ")
    assert seen[key] != second[key], "two boots of one image share a secret key"


def test_moksha(built: Built, tmp_path: Path) -> None:
    """Every check of the appliance, and headless chromium on the live page (AMQP -> DOM, the
    page's form -> AMQP), in one boot: a check of the browser's is added before the last."""
    need_tool("chromium")
    need_tool("chromedriver")
    manifest = built("moksha")
    assert "rabbitmq-server" in manifest["packages"]
    folder = tmp_path / "appliances"
    folder.mkdir()
    shutil.copy(ROOT / "appliances" / "moksha_checks.py", folder)
    shutil.copy(ROOT / "tests" / "integration" / "moksha_browser_checks.py", folder)
    text = (ROOT / "appliances" / "moksha.toml").read_text().replace('module = "moksha_checks.py"', 'module = "moksha_browser_checks.py"')
    text = text.replace(
        '[[test.checks]]\ntype = "no_failed_units"',
        '[[test.checks]]\nname = "a real browser chats"\ntype = "python"\nfunction = "browser_chat"\ntimeout = 120\n\n'
        '[[test.checks]]\ntype = "no_failed_units"',
    )
    (folder / "moksha.toml").write_text(without_boot_analysis(text))
    record = smoke("moksha", "--appliances", str(folder))
    seen = {c["name"]: c["seen"] for c in record["checks"]}
    assert seen["AMQP message reaches a WebSocket chat client within 5 s"].startswith("arrived in")
    assert seen["guest cannot log in from outside"] == "guest/guest refused"
    # The browsers' public credentials: Web-STOMP only, chat only, bounded queues (issue 15).
    assert seen["the browsers' user cannot log in over AMQP from outside"].startswith("web over AMQP from outside: refused")
    assert seen["the browsers' user cannot publish to metrics"].endswith("not delivered")
    assert seen["subscription queues are bounded"].startswith("1100 published, 1000 kept, the oldest kept is message 100")
    browser = next(c for c in record["checks"] if c["name"] == "a real browser chats")
    assert browser["passed"] and "typed message reached AMQP" in browser["seen"]
    print(browser["seen"])


def test_ids(built: Built, tmp_path: Path) -> None:
    manifest = built("ids")
    assert "suricata" in manifest["packages"] and "suricata-update" in manifest["packages"]
    record = smoke("ids", "--appliances", str(shipped_without_boot_analysis(tmp_path / "appliances")))
    seen = {c["name"]: c["seen"] for c in record["checks"]}
    assert "visible" in seen["test traffic raises the test signature's alert within 15 s"]
    assert "until in an hour: " in seen["the alerts API filters with until="]
    assert seen["the alerts API refuses oversized reads"].startswith("4 oversized or malformed queries refused (400)")
    print(seen["test traffic raises the test signature's alert within 15 s"])


def test_config(config_boot: Any) -> None:
    """Puppet Server: its CA made on the boot, the policy signs only the CSR with the secret,
    the sample catalog applied by an agent; no CA or key in the image (the audit passed).
    Booted beside the other tests of this module (config_boot); last, as it takes longest."""
    manifest, run = config_boot
    assert {"puppetserver", "puppet-agent"} <= set(manifest["packages"])
    record = passed("config", run.wait(timeout=4200))
    seen = {c["name"]: c["seen"] for c in record["checks"]}
    assert "verified against the CA made" in seen["the status API answers over TLS with this boot's CA"]
    assert "Managed by Puppet for crust-check-signed from " in seen["an agent with the secret is signed and applies the sample"]
    assert seen["a CSR without the secret stays unsigned"].endswith("its CSR pending")
    assert "requested: crust-check-pending" in seen["puppetserver ca list --all shows what was signed"]
