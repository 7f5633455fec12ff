"""The IDS appliance's alerts API (pure WSGI, stdlib only): filters, limits, read-only."""

from __future__ import annotations

import datetime as dt
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
    return path


def get(path: str, query: str = "", method: str = "GET") -> tuple[str, Any]:
    seen: dict[str, str] = {}

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status
        assert dict(headers)["Content-Length"]

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
        ("until=2026-11-28T10:05:00Z", [9000001]),
        ("until=2026-11-28T10:05:00.000001Z", [2200000, 9000001]),
        ("since=2026-11-28T10:00:01Z&until=2026-11-28T10:00:02Z", [9000001]),
        ("until=2026-11-28T10:00:00Z", []),
    ],
)
def test_filters(eve: Path, query: str, sids: list[int]) -> None:
    status, body = get("/api/alerts", query)
    assert status == "200 OK"
    assert [a["sid"] for a in json.loads(body)["alerts"]] == sids


@pytest.mark.parametrize(
    "query",
    [
        "sid=abc",
        "limit=0",
        "limit=1001",
        "limit=5000",
        "since=yesterday",
        "until=tomorrow",
        "file=/etc/shadow",
        "sid=1&sid=2",
        "sid=1&since=2026-11-28T10:00:00Z&until=2026-11-28T10:00:00Z&limit=5&x=1",
        "since=" + "1" * 1100,
    ],
)
def test_bad_queries(eve: Path, query: str) -> None:
    status, body = get("/api/alerts", query)
    assert status == "400 Bad Request" and "error" in json.loads(body)


def test_read_only_and_no_other_paths(eve: Path) -> None:
    assert get("/api/alerts", method="POST")[0] == "405 Method Not Allowed"
    assert get("/../../etc/passwd")[0] == "404 Not Found"
    status, body = get("/alerts")
    assert status == "200 OK" and "CRUST test" in body and "<table" in body


def test_missing_log_is_empty(tmp_path: Path) -> None:
    assert app.read_alerts(path=str(tmp_path / "none.json")) == ([], False)


def test_head_and_405_allow(eve: Path) -> None:
    assert get("/api/alerts", method="HEAD")[0] == "200 OK"
    for method in ("PUT", "DELETE", "PATCH"):
        assert get("/api/alerts", method=method)[0] == "405 Method Not Allowed"


def write_events(path: Path, count: int, start: dt.datetime, pad: int = 0) -> None:
    """count alerts a second apart (sid = index), each line padded to about pad bytes."""
    with path.open("w") as fh:
        for i in range(count):
            event = {"timestamp": (start + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f+0000"), "event_type": "alert",
                     "alert": {"signature_id": i}, "pad": "x" * pad}  # fmt: skip
            fh.write(json.dumps(event, separators=(",", ":")) + "\n")


START = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)


def test_one_request_reads_at_most_its_budget(tmp_path: Path) -> None:
    """A log larger than the budget: the scan ends at the budget and says so."""
    path = tmp_path / "eve.json"
    write_events(path, 2000, START, pad=900)  # about 2 MB
    reads: list[int] = []
    alerts, truncated = app.read_alerts(since=START, limit=1000, path=str(path), budget=200_000, opener=recording_open(reads))
    assert sum(reads) <= 200_000
    assert truncated and 150 < len(alerts) < 230, len(alerts)
    assert [a["sid"] for a in alerts[:3]] == [1999, 1998, 1997]
    alerts, truncated = app.read_alerts(limit=5, path=str(path), budget=200_000)
    assert not truncated and [a["sid"] for a in alerts] == [1999, 1998, 1997, 1996, 1995]


def test_scan_stops_once_past_since(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    write_events(path, 2000, START, pad=900)
    reads: list[int] = []
    alerts, truncated = app.read_alerts(since=START + dt.timedelta(seconds=1990), path=str(path), opener=recording_open(reads))
    assert [a["sid"] for a in alerts] == list(range(1999, 1989, -1)) and not truncated
    # 10 alerts wanted and 60 s of slack: a few blocks, not the 2 MB file
    assert sum(reads) <= 3 * app.BLOCK, sum(reads)


def test_scan_tolerates_slightly_out_of_order_lines(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    write_events(path, 100, START)
    lines = path.read_text().splitlines(keepends=True)
    lines[95], lines[96] = lines[96], lines[95]  # a thread wrote sid 96 before sid 95
    path.write_text("".join(lines))
    alerts, _ = app.read_alerts(since=START + dt.timedelta(seconds=95), path=str(path))
    assert sorted(a["sid"] for a in alerts) == [95, 96, 97, 98, 99]


def test_first_line_and_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    write_events(path, 3, START)
    with path.open("a") as fh:
        fh.write('{"event_type":"alert","x":"' + "y" * (app.MAX_LINE + 10) + '"}\n')
    alerts, truncated = app.read_alerts(path=str(path))
    assert [a["sid"] for a in alerts] == [2, 1, 0] and not truncated


def test_page_title_is_escaped(eve: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUST_APP_TITLE", "<b>Sensor & co</b>")
    status, body = get("/alerts")
    assert status == "200 OK" and "<h1>&lt;b&gt;Sensor &amp; co&lt;/b&gt;</h1>" in body


class Recording:
    """A file whose reads are counted (what one request reads of the log)."""

    def __init__(self, fh: Any, reads: list[int]) -> None:
        self.fh, self.reads = fh, reads

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def seek(self, *args: int) -> int:
        pos: int = self.fh.seek(*args)
        return pos

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.fh.read(n)
        self.reads.append(len(data))
        return data


def recording_open(reads: list[int]) -> Any:
    return lambda p, mode="r": Recording(open(p, mode), reads)
