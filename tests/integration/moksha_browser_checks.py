"""A real browser on the Moksha appliance's live page (headless Debian chromium via selenium).

Used as the test.module of a copy of appliances/moksha.toml in the integration suite: the
appliance's own checks, plus browser_chat.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location("moksha_checks", Path(__file__).with_name("moksha_checks.py"))
assert _spec is not None and _spec.loader is not None
moksha_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(moksha_checks)
globals().update({k: v for k, v in vars(moksha_checks).items() if callable(v) and not k.startswith("_")})


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium on a throw-away profile, quit and its profile removed on the way out."""
    import os

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ):  # fmt: skip
        options.add_argument(arg)
    with tempfile.TemporaryDirectory(prefix="crust-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def browser_chat(ctx: Any) -> str:
    """AMQP -> the page's DOM, and the page's chat form -> an AMQP consumer."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as driver:
        driver.get(ctx.url(80, "/"))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "status").text == "live")
        connection = moksha_checks.amqp(ctx)
        try:
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(queue, "amq.topic", "chat")
            # AMQP -> the page
            text = f"to the browser {secrets.token_hex(4)}"
            sent = time.monotonic()
            channel.basic_publish("amq.topic", "chat", json.dumps({"user": "amqp", "text": text}))
            WebDriverWait(driver, 5, poll_frequency=0.02).until(
                lambda d: any(text in li.text for li in d.find_elements(By.CSS_SELECTOR, "#messages li.chat-message"))
            )
            to_dom_ms = (time.monotonic() - sent) * 1000
            ctx.log(f"AMQP to browser DOM: {to_dom_ms:.0f} ms")
            # the page -> AMQP
            typed = f"from the browser {secrets.token_hex(4)}"
            driver.find_element(By.ID, "chat-text").send_keys(typed)
            driver.find_element(By.ID, "chat-send").click()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                _m, _p, body = channel.basic_get(queue, auto_ack=True)
                if body and typed in body.decode():
                    return f"AMQP -> browser DOM in {to_dom_ms:.0f} ms; typed message reached AMQP"
                time.sleep(0.05)
            raise AssertionError(f"{typed!r} typed in the page did not reach the AMQP consumer within 5 s")
        finally:
            connection.close()
