"""Smoke checks of the Moksha appliance, end to end from the host: AMQP and WebSocket clients.

The browser user's credentials are what the page uses (/config.js); the AMQP side uses the
hub's user, read from inside the guest through the guest agent. See wsgi_checks.py for the
context these functions get.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
from typing import Any

import pika
import websocket

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SECONDS = 5.0  # the acceptance bound for a message to cross


def web_credentials(ctx: Any) -> dict[str, str]:
    with _OPENER.open(ctx.url(80, "/config.js"), timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r"CRUST_BROKER = (\{.*\});", text)
    assert match, f"/config.js has no credentials: {text[:80]!r}"
    creds: dict[str, str] = json.loads(match.group(1))
    return creds


def hub_credentials(ctx: Any) -> tuple[str, str]:
    env = ctx.guest_exec(["cat", "/etc/crust-moksha/hub.env"])
    assert env.status == 0, "no /etc/crust-moksha/hub.env in the guest yet"
    values = dict(line.split("=", 1) for line in env.stdout.splitlines() if "=" in line)
    return values["CRUST_MOKSHA_USER"], values["CRUST_MOKSHA_PASSWORD"]


def frame(command: str, headers: dict[str, str], body: str = "") -> str:
    return command + "\n" + "".join(f"{k}:{v}\n" for k, v in headers.items()) + "\n" + body + "\x00"


def parse_frames(data: str) -> list[tuple[str, dict[str, str], str]]:
    frames = []
    for chunk in data.split("\x00"):
        raw = chunk.lstrip("\r\n")
        if not raw:
            continue
        head, _, body = raw.partition("\n\n")
        lines = head.splitlines()
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        frames.append((lines[0], headers, body))
    return frames


class StompOverWebSocket:
    """The page's protocol, from Python: STOMP 1.2 frames over the appliance's /ws."""

    def __init__(self, ctx: Any) -> None:
        creds = web_credentials(ctx)
        host, port = ctx.address(80)
        self.ws = websocket.create_connection(f"ws://{host}:{port}/ws", timeout=10, subprotocols=["v12.stomp"])
        self.ws.send(frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": creds["login"], "passcode": creds["passcode"]}))
        command, headers, body = self.receive(10)[0]
        assert command == "CONNECTED", f"broker answered {command}: {headers.get('message', body)}"

    def receive(self, timeout: float) -> list[tuple[str, dict[str, str], str]]:
        self.ws.settimeout(timeout)
        return parse_frames(self.ws.recv())

    def subscribe(self, destination: str) -> None:
        self.ws.send(frame("SUBSCRIBE", {"id": "0", "destination": destination, "ack": "auto", "receipt": "subscribed"}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(c == "RECEIPT" for c, _, _ in self.receive(10)):
                return
        raise AssertionError("no receipt for SUBSCRIBE")

    def send(self, destination: str, body: str) -> None:
        self.ws.send(frame("SEND", {"destination": destination, "content-type": "application/json"}, body))

    def close(self) -> None:
        self.ws.close()


def amqp(ctx: Any) -> pika.BlockingConnection:
    user, password = hub_credentials(ctx)
    host, port = ctx.address(5672)
    params = pika.ConnectionParameters(host, port, "/", pika.PlainCredentials(user, password), connection_attempts=1, socket_timeout=5)
    return pika.BlockingConnection(params)


def amqp_to_websocket(ctx: Any) -> str:
    """Publish on AMQP (amq.topic, key "chat"); a WebSocket chat client has it within 5 s."""
    text = f"from AMQP {secrets.token_hex(4)}"
    client = StompOverWebSocket(ctx)
    try:
        client.subscribe("/topic/chat")
        connection = amqp(ctx)
        try:
            sent = time.monotonic()
            connection.channel().basic_publish("amq.topic", "chat", json.dumps({"user": "amqp", "text": text}))
            while time.monotonic() - sent < SECONDS:
                for command, _headers, body in client.receive(max(0.1, SECONDS - (time.monotonic() - sent))):
                    if command == "MESSAGE" and text in body:
                        latency = time.monotonic() - sent
                        ctx.log(f"AMQP to WebSocket: {latency * 1000:.0f} ms")
                        return f"arrived in {latency * 1000:.0f} ms"
        finally:
            connection.close()
    except websocket.WebSocketTimeoutException:
        pass
    finally:
        client.close()
    raise AssertionError(f"{text!r} did not reach the WebSocket client within {SECONDS:.0f} s")


def websocket_to_amqp(ctx: Any) -> str:
    """A chat message sent over WebSocket (as the page does) reaches an AMQP consumer."""
    text = f"from WebSocket {secrets.token_hex(4)}"
    connection = amqp(ctx)
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "amq.topic", "chat")
        client = StompOverWebSocket(ctx)
        try:
            sent = time.monotonic()
            client.send("/topic/chat", json.dumps({"user": "websocket", "text": text}))
        finally:
            client.close()
        while time.monotonic() - sent < SECONDS:
            _method, _props, body = channel.basic_get(queue, auto_ack=True)
            if body and text in body.decode():
                latency = time.monotonic() - sent
                return f"arrived in {latency * 1000:.0f} ms"
            time.sleep(0.05)
    finally:
        connection.close()
    raise AssertionError(f"{text!r} did not reach the AMQP consumer within {SECONDS:.0f} s")


def stats(ctx: Any) -> dict[str, Any]:
    with _OPENER.open(ctx.url(80, "/stats"), timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def hub_is_consuming(ctx: Any) -> str:
    """The producer's metrics came back through the broker to the consumer: the hub is live
    (its unit is active as soon as the process starts, before it subscribes)."""
    counts = stats(ctx)["counts"]
    assert counts.get("metrics", 0) >= 1, f"the hub's consumer has counted no metrics yet: {counts}"
    return f"counted {counts}"


def hub_counted_chat(ctx: Any) -> str:
    """The hub's consumer saw the chat messages of the two checks before (at /stats)."""
    counts = stats(ctx)["counts"]
    chat = counts.get("chat", 0)
    assert chat >= 2, f"the hub counted {chat} chat messages (expected 2 or more): {counts}"
    return f"counted {counts}"


def guest_is_refused(ctx: Any) -> str:
    """RabbitMQ's default guest/guest must not open the broker from outside."""
    host, port = ctx.address(5672)
    params = pika.ConnectionParameters(host, port, "/", pika.PlainCredentials("guest", "guest"), connection_attempts=1, socket_timeout=5)
    try:
        pika.BlockingConnection(params).close()
    except pika.exceptions.ProbableAuthenticationError:
        return "guest/guest refused"
    except pika.exceptions.AMQPConnectionError as exc:
        if "ACCESS_REFUSED" in repr(exc) or "403" in repr(exc):
            return "guest/guest refused"
        raise AssertionError(f"the broker did not answer: {exc!r}") from None
    raise AssertionError("guest/guest logged in")


def refused_login(ctx: Any, user: str, password: str) -> str:
    """Log in over AMQP from the host; the broker's refusal, or AssertionError if it let us in."""
    host, port = ctx.address(5672)
    params = pika.ConnectionParameters(host, port, "/", pika.PlainCredentials(user, password), connection_attempts=1, socket_timeout=5)
    try:
        pika.BlockingConnection(params).close()
    except pika.exceptions.ProbableAuthenticationError as exc:
        return f"refused ({exc!r})"
    except pika.exceptions.AMQPConnectionError as exc:
        if "ACCESS_REFUSED" in repr(exc) or "403" in repr(exc):
            return f"refused ({exc!r})"
        raise AssertionError(f"the broker did not answer: {exc!r}") from None
    raise AssertionError(f"{user} logged in over AMQP from outside")


def web_user_refused_over_amqp(ctx: Any) -> str:
    """The browsers' credentials (public at /config.js) open nothing over AMQP from outside:
    they work only through the page's Web-STOMP (the checks above log in with them there)."""
    creds = web_credentials(ctx)
    refusal = refused_login(ctx, creds["login"], creds["passcode"])
    # The broker hides the reason from the client; its log says it (shown, not required).
    log = ctx.guest_exec(["sh", "-c", "grep -h 'can only connect via localhost' /var/log/rabbitmq/*.log | tail -n 1"])
    why = f"; broker log: {log.stdout.strip()[-120:]}" if log.stdout.strip() else ""
    return f"{creds['login']} over AMQP from outside: {refusal}{why}"


def web_send(ctx: Any, destination: str, text: str) -> tuple[str, str]:
    """SEND text with a receipt as the browsers' user. What the broker did: ("RECEIPT", ""),
    ("ERROR", message) or ("CLOSED", the WebSocket close reason): a refused publish ends the
    connection (Web-STOMP may close it without an ERROR frame)."""
    client = StompOverWebSocket(ctx)
    try:
        body = json.dumps({"user": "smoke", "text": text})
        client.ws.send(frame("SEND", {"destination": destination, "content-type": "application/json", "receipt": "sent"}, body))
        receipt = False
        deadline = time.monotonic() + SECONDS
        # A receipt may come before the broker refuses the publish: read until an ERROR, the
        # connection's end or the deadline.
        while time.monotonic() < deadline:
            client.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                opcode, data = client.ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                break
            except (websocket.WebSocketConnectionClosedException, OSError) as exc:
                return "CLOSED", f"connection lost ({exc})"
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                payload = bytes(data or b"")
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                return "CLOSED", f"closed by the broker ({code} {payload[2:].decode(errors='replace')})".replace(" )", ")")
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            for command, headers, frame_body in parse_frames(data.decode() if isinstance(data, bytes) else data):
                if command == "ERROR":
                    return "ERROR", f"{headers.get('message', '')}: {frame_body.strip()[:160]}"
                receipt = receipt or command == "RECEIPT"
        return ("RECEIPT", "") if receipt else ("NOTHING", "")
    finally:
        client.close()


def web_user_cannot_publish_metrics(ctx: Any) -> str:
    """The browsers' user may publish to "chat" but not to "metrics": the broker refuses that
    SEND (an ERROR or the connection closed) and an AMQP consumer of "metrics" never gets it,
    while one of "chat" gets the allowed message."""
    marker = secrets.token_hex(6)
    connection = amqp(ctx)
    try:
        channel = connection.channel()
        queues = {}
        for key in ("chat", "metrics"):
            queues[key] = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(queues[key], "amq.topic", key)

        def seen_on(key: str, seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                _method, _props, body = channel.basic_get(queues[key], auto_ack=True)
                if body and marker.encode() in body:
                    return True
                if body is None:
                    time.sleep(0.05)
            return False

        allowed, _ = web_send(ctx, "/topic/chat", f"chat {marker}")
        assert allowed == "RECEIPT", f"a SEND to /topic/chat got {allowed}, not a receipt"
        assert seen_on("chat", SECONDS), "the allowed chat message did not reach an AMQP consumer of chat"
        refused, how = web_send(ctx, "/topic/metrics", f"metrics {marker}")
        assert refused in ("ERROR", "CLOSED"), f"a SEND to /topic/metrics got {refused}: the broker took it"
        assert not seen_on("metrics", 2.0), f"the SEND to /topic/metrics reached an AMQP consumer of metrics ({how})"
    finally:
        connection.close()
    return f"/topic/chat: receipt, delivered; /topic/metrics: {refused.lower()} ({how}), not delivered"


def subscription_queues_are_bounded(ctx: Any) -> str:
    """A queue named as the browsers' user's may be (stomp-subscription-*) keeps at most 1000
    messages, dropping the oldest, whatever is published to it."""
    name = f"stomp-subscription-crust-smoke-{secrets.token_hex(4)}"
    connection = amqp(ctx)
    try:
        channel = connection.channel()
        channel.queue_declare(name, durable=True, auto_delete=False)
        try:
            channel.confirm_delivery()
            for i in range(1100):
                channel.basic_publish("", name, str(i).encode())
            declared = channel.queue_declare(name, passive=True)
            count = declared.method.message_count
            first = channel.basic_get(name, auto_ack=True)[2]
        finally:
            channel.queue_delete(name)
    finally:
        connection.close()
    assert count == 1000, f"{name} holds {count} of 1100 messages published (expected the bound, 1000)"
    assert first == b"100", f"the oldest message kept is {first!r} (expected b'100': the oldest are dropped)"
    return f"1100 published, {count} kept, the oldest kept is message {first.decode()}"
