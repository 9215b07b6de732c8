"""The REST API and the HTTP answers around the streams, against a real gateway with demo workers."""

import json
import re
import time

import pytest

WORKER_FIELDS = {"id", "state", "log_stream_path", "log_stream_url", "subscribers", "first_seq", "last_seq",
                 "records_total", "started_at", "stopped_at"}
LEVELS = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
ISO_UTC_MICROS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def wait_for_records(gw, worker, count, timeout=10.0):
    """Waits until `worker` has published at least `count` records; returns its Worker object."""
    deadline = time.monotonic() + timeout
    while True:
        answer = gw.http(f"/api/workers/{worker}")
        if answer.status == 200 and answer.json()["last_seq"] >= count:
            return answer.json()
        if time.monotonic() > deadline:
            pytest.fail(f"{worker} published fewer than {count} records in {timeout} s: {answer.text}")
        time.sleep(0.05)


def worker_stream_urls(gw, host=None):
    """The original design's `get_status()`: each worker's id mapped to its stream URL."""
    answer = gw.http("/api/workers", headers={"Host": host} if host else None)
    assert answer.status == 200, answer.text
    return {worker["id"]: worker["log_stream_url"] for worker in answer.json()["workers"]}


def test_demo_workers_are_listed_with_their_stream_urls(gateway):
    gw = gateway("--demo", "3", "--demo-rate", "20")
    answer = gw.http("/api/workers")
    assert answer.status == 200
    assert answer.header("content-type").startswith("application/json")
    workers = answer.json()["workers"]
    assert [w["id"] for w in workers] == ["demo-1", "demo-2", "demo-3"]
    for worker in workers:
        assert WORKER_FIELDS <= worker.keys(), f"missing {WORKER_FIELDS - worker.keys()} in {worker}"
        assert worker["state"] == "running"
        assert worker["log_stream_path"] == f"/ws/workers/{worker['id']}"
        assert worker["stopped_at"] is None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", worker["started_at"])
    assert worker_stream_urls(gw) == {
        f"demo-{n}": f"ws://127.0.0.1:{gw.port}/ws/workers/demo-{n}" for n in (1, 2, 3)}


def test_stream_url_honours_the_host_header(gateway):
    gw = gateway("--demo", "2", "--allowed-host", "logs.example.com", "--allowed-host", "gw.internal")
    assert worker_stream_urls(gw, host="logs.example.com:8443") == {
        "demo-1": "ws://logs.example.com:8443/ws/workers/demo-1",
        "demo-2": "ws://logs.example.com:8443/ws/workers/demo-2",
    }
    one = gw.http("/api/workers/demo-2", headers={"Host": "gw.internal"})
    assert one.status == 200
    assert one.json()["id"] == "demo-2"
    assert one.json()["log_stream_url"] == "ws://gw.internal/ws/workers/demo-2"


def test_a_host_the_gateway_does_not_answer_to_is_refused(gateway):
    # DNS rebinding: a page on evil.example, re-pointed to 127.0.0.1, sends Host: evil.example.
    gw = gateway("--demo", "1", "--allowed-host", "logs.example.com")
    refused = gw.http("/api/workers", headers={"Host": "evil.example:8080"})
    assert refused.status == 403 and refused.json()["error"]["code"] == "host_not_allowed"
    assert "--allowed-host evil.example" in refused.json()["error"]["message"]
    assert gw.http("/", headers={"Host": "evil.example"}).status == 403
    for host in ("localhost:8080", f"127.0.0.1:{gw.port}", "[::1]", "logs.example.com"):
        assert gw.http("/api/workers", headers={"Host": host}).status == 200, host


def test_a_web_page_of_another_site_cannot_inject_records(gateway):
    # A CORS "simple request" (text/plain, no preflight) from any page the user visits.
    gw = gateway()
    forged = gw.http("/api/workers/victim/records", method="POST", body=b"ERROR fake alarm\n",
                     headers={"Content-Type": "text/plain", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert forged.status == 403 and forged.json()["error"]["code"] == "cross_site_request"
    assert gw.http("/api/workers/victim").status == 404, "nothing was published"
    stop = gw.http("/api/workers/victim/stop", method="POST", headers={"Origin": "http://evil.example"})
    assert stop.status == 403 and stop.json()["error"]["code"] == "origin_not_allowed"
    # A program (curl, tailgate run, the Python handler) sends neither header and publishes as before.
    assert gw.http("/api/workers/victim/records", method="POST", body=b"real line\n",
                   headers={"Content-Type": "text/plain"}).json()["accepted"] == 1


def test_unknown_worker_is_a_404_json_error(gateway):
    gw = gateway("--demo", "1")
    answer = gw.http("/api/workers/002050.SZ")
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "worker_not_found"
    assert "002050.SZ" in answer.json()["error"]["message"]


def test_plain_get_on_a_stream_path_is_426_json(gateway):
    gw = gateway("--demo", "1")
    answer = gw.http("/ws/workers/demo-1")
    assert answer.status == 426
    assert answer.header("content-type").startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] and error["message"]


def test_healthz(gateway):
    gw = gateway()
    answer = gw.http("/healthz")
    assert (answer.status, answer.json()) == (200, {"status": "ok"})


def test_text_logs_are_console_lines_matching_the_records(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "400")
    wait_for_records(gw, "demo-1", 120)
    records_answer = gw.http("/api/workers/demo-1/logs?since=0&limit=100")
    assert records_answer.status == 200
    records = [json.loads(line) for line in records_answer.text.splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 101))

    text_answer = gw.http("/api/workers/demo-1/logs?since=0&limit=100&format=text")
    assert text_answer.status == 200
    assert text_answer.header("content-type").startswith("text/plain")
    lines = text_answer.text.split("\n")
    assert lines[-1] == "" and len(lines) == 101, f"{len(lines) - 1} lines, expected 100"
    line_shape = re.compile(rf"^{ISO_UTC_MICROS} +({'|'.join(LEVELS)}) +[^ :][^:]*: .*$")
    for line, record in zip(lines, records):
        assert line_shape.match(line), f"not `TIMESTAMP LEVEL logger: message`: {line!r}"
        expected = (rf"^{re.escape(record['timestamp'])} +{record['level']} +"
                    rf"{re.escape(record['logger_name'])}: {re.escape(record['message'])}$")
        assert re.match(expected, line), f"{line!r} does not show record {record}"


def test_logs_download_is_an_attachment(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "100")
    wait_for_records(gw, "demo-1", 5)
    answer = gw.http("/api/workers/demo-1/logs?download=1&limit=5")
    assert answer.status == 200
    assert "attachment" in (answer.header("content-disposition") or "")
    assert len(answer.text.splitlines()) == 5
