"""The IDS appliance's alerts API (pure WSGI, stdlib only): filters, limits, read-only."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "roles" / "ids" / "files"))
import crust_ids_alerts as app

EVENTS = [
    {"timestamp": "2026-11-28T10:00:00.000000+0000", "event_type": "flow"},
    {"timestamp": "2026-11-28T10:00:01.000000+0000", "event_type": "alert", "src_ip": "10.0.2.2", "dest_ip": "10.0.2.15",
     "dest_port": 80, "proto": "TCP", "alert": {"signature_id": 9000001, "signature": "CRUST test", "severity": 3}},
    {"timestamp": "2026-11-28T10:05:00.000000+0000", "event_type": "alert", "src_ip": "10.0.2.2", "dest_ip": "10.0.2.15",
     "dest_port": 22, "proto": "TCP", "alert": {"signature_id": 2200000, "signature": "decoder", "severity": 2}},
]  # fmt: skip


@pytest.fixture
def eve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "eve.json"
    path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in EVENTS))
    monkeypatch.setattr(app, "EVE_LOG", str(path))
    monkeypatch.setattr(app.read_alerts, "__defaults__", (None, None, 100, str(path)))
    return path


def get(path: str, query: str = "", method: str = "GET") -> tuple[str, Any]:
    seen: dict[str, str] = {}

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    body = b"".join(app.application({"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO()}, start))
    return seen["status"], body.decode()


def test_alerts_newest_first(eve: Path) -> None:
    status, body = get("/api/alerts")
    assert status == "200 OK"
    assert [a["sid"] for a in json.loads(body)["alerts"]] == [2200000, 9000001]


@pytest.mark.parametrize(
    ("query", "sids"),
    [
        ("sid=9000001", [9000001]),
        ("since=2026-11-28T10:01:00Z", [2200000]),
        ("since=2026-11-28T10:00:00.5%2B00:00", [2200000, 9000001]),
        ("limit=1", [2200000]),
        ("sid=1", []),
    ],
)
def test_filters(eve: Path, query: str, sids: list[int]) -> None:
    status, body = get("/api/alerts", query)
    assert status == "200 OK"
    assert [a["sid"] for a in json.loads(body)["alerts"]] == sids


@pytest.mark.parametrize("query", ["sid=abc", "limit=0", "limit=5000", "since=yesterday", "file=/etc/shadow"])
def test_bad_queries(eve: Path, query: str) -> None:
    status, body = get("/api/alerts", query)
    assert status == "400 Bad Request" and "error" in json.loads(body)


def test_read_only_and_no_other_paths(eve: Path) -> None:
    assert get("/api/alerts", method="POST")[0] == "405 Method Not Allowed"
    assert get("/../../etc/passwd")[0] == "404 Not Found"
    status, body = get("/alerts")
    assert status == "200 OK" and "CRUST test" in body and "<table" in body


def test_missing_log_is_empty(tmp_path: Path) -> None:
    assert app.read_alerts(path=str(tmp_path / "none.json")) == []
