"""End-to-end tests of publishing over HTTP: `POST /api/workers/{id}/records` and `POST …/stop`, against a
real gateway process, with real sockets (raw chunked requests, a second loopback source address)."""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from pathlib import Path

import pytest
from ws_subscriber import Subscriber

NDJSON = "application/x-ndjson"
TEXT = "text/plain"


# ----------------------------------------------------------------------------------------- helpers

class StreamingPost:
    """A `POST …/records` with a chunked body sent piece by piece over a raw socket."""

    def __init__(self, port: int, worker: str, content_type: str = NDJSON, source: str | None = None,
                 timeout: float = 120):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall((f"POST /api/workers/{worker}/records HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())

    def send(self, data: bytes):
        if data:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def finish(self) -> tuple[int, dict]:
        self.sock.sendall(b"0\r\n\r\n")
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        body = response.read()
        self.sock.close()
        return response.status, json.loads(body)


def post(port: int, path: str, body: bytes, content_type: str = NDJSON, source: str | None = None,
         timeout: float = 60) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        data = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json"), response.getheaders()
        return response.status, json.loads(data)
    finally:
        conn.close()


def publish(port: int, worker: str, lines: list[bytes], content_type: str = NDJSON) -> dict:
    status, answer = post(port, f"/api/workers/{worker}/records", b"".join(line + b"\n" for line in lines),
                          content_type)
    assert status == 200, answer
    return answer


def ring(gw, worker: str, query: str = "") -> list[dict]:
    result = gw.http(f"/api/workers/{worker}/logs{query}", timeout=60)
    assert result.status == 200, result.text
    return [json.loads(line) for line in result.text.splitlines() if line]


def good(n: int) -> bytes:
    return json.dumps({"message": f"good {n}", "level": "INFO", "logger_name": "ingest", "line_no": n}).encode()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def report(request, text: str):
    """Prints a measurement on the terminal, past pytest's output capture."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + text, flush=True)


# ----------------------------------------------------------------------------------------- streaming

@pytest.mark.parametrize("content_type", [NDJSON, TEXT])
def test_an_open_chunked_body_publishes_each_line_as_it_arrives(gateway, content_type):
    gw = gateway()
    worker = "stream-ndjson" if content_type == NDJSON else "stream-text"

    def line(k: int) -> bytes:
        if content_type == NDJSON:
            return json.dumps({"message": f"line {k}", "level": "NOTICE", "metadata": {"k": str(k)}}).encode() + b"\n"
        return f"\x1b[32mline {k}\x1b[0m\n".encode()

    body = StreamingPost(gw.port, worker, content_type)
    body.send(line(1))
    wait_until(lambda: gw.http(f"/api/workers/{worker}").status == 200, 30, "the worker to appear")
    subscriber = Subscriber(gw.ws_url(f"/ws/workers/{worker}?since=0"))
    for k in range(1, 6):
        if k > 1:
            # Split the line over two chunks: it is published when its newline arrives.
            data = line(k)
            body.send(data[:5])
            time.sleep(0.05)
            body.send(data[5:])
        # Line k must reach the subscriber while line k+1 has not been sent yet.
        subscriber.wait_for(lambda: len(subscriber.records) >= k, 30, f"line {k} (line {k + 1} not sent yet)")
    status, answer = body.finish()
    assert status == 200
    assert answer.pop("epoch")
    assert answer == {"accepted": 5, "rejected": 0, "duplicates": 0, "first_seq": 1, "last_seq": 5, "errors": []}
    records = subscriber.records
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    if content_type == NDJSON:
        assert [(r["message"], r["level"], r["metadata"]) for r in records] == \
            [(f"line {k}", "NOTICE", {"k": str(k)}) for k in range(1, 6)]
    else:
        assert [(r["message"], r["level"]) for r in records] == \
            [(f"\x1b[32mline {k}\x1b[0m", "INFO") for k in range(1, 6)]  # ANSI codes kept
    assert gw.http(f"/api/workers/{worker}").json()["state"] == "running"
    subscriber.close()


def test_ndjson_fields_are_kept(gateway):
    gw = gateway()
    line = {"message": "order filled", "level": "WARNING", "timestamp": "2026-11-27T13:16:40.123456Z",
            "logger_name": "TurtleBreakout", "module": "strategies.turtle", "func_name": "on_fill",
            "line_no": 204, "metadata": {"order_id": "26", "symbol": "002050.SZ"}, "ignored": [1, 2]}
    answer = publish(gw.port, "fields", [json.dumps(line).encode(), b'{"message":"minimal"}'])
    assert answer["accepted"] == 2 and answer["rejected"] == 0
    first, second = ring(gw, "fields")
    assert first == {"seq": 1, **{k: v for k, v in line.items() if k != "ignored"}}
    assert second["message"] == "minimal" and second["level"] == "INFO" and "metadata" not in second


# ----------------------------------------------------------------------------------------- bad lines

BAD_LINES = [
    ("invalid JSON", b'{"message": "unterminated', "invalid JSON"),
    ("invalid JSON (trailing garbage)", b'{"message": "x"} trailing', "invalid JSON"),
    ("non-object (array)", b'[1, 2, 3]', "must be a JSON object"),
    ("non-object (string)", b'"just a string"', "must be a JSON object"),
    ("missing message", b'{"level": "INFO"}', "missing 'message'"),
    ("wrong type: message", b'{"message": 5}', "'message' must be a string"),
    ("wrong type: level", b'{"message": "m", "level": 30}', "'level' must be a string"),
    ("wrong type: line_no", b'{"message": "m", "line_no": "204"}', "'line_no' must be a whole number"),
    ("wrong type: line_no fraction", b'{"message": "m", "line_no": 1.5}', "'line_no' must be a whole number"),
    ("wrong type: logger_name", b'{"message": "m", "logger_name": ["a"]}', "'logger_name' must be a string"),
    ("wrong type: metadata", b'{"message": "m", "metadata": ["a"]}', "'metadata' must be an object"),
    ("wrong type: metadata value", b'{"message": "m", "metadata": {"n": 1}}', "metadata 'n' must be a string"),
    ("wrong type: timestamp", b'{"message": "m", "timestamp": "yesterday"}', "'timestamp' must be an ISO-8601"),
    ("unknown level", b'{"message": "m", "level": "LOUD"}', "unknown level 'LOUD'"),
    ("invalid UTF-8", b'{"message": "bad \xff\xfe bytes"}', "UTF-8"),
    ("invalid UTF-8 (truncated sequence)", b'{"message": "cut \xe2\x82"}', "UTF-8"),
    ("over --max-record-bytes", json.dumps({"message": "x" * 2000}).encode(), "exceeds the limit of 1024 bytes"),
]


def test_each_bad_line_class_is_rejected_and_reported(gateway):
    gw = gateway("--max-record-bytes", "1024")
    failures = []
    for index, (name, bad, reason) in enumerate(BAD_LINES):
        worker = f"bad-{index}"
        answer = publish(gw.port, worker, [good(1), bad, good(2)])
        messages = [r["message"] for r in ring(gw, worker)]
        expected = {"accepted": 2, "rejected": 1, "first_seq": 1, "last_seq": 2}
        if {k: answer.get(k) for k in expected} != expected or len(answer["errors"]) != 1 \
                or answer["errors"][0]["line"] != 2 or reason.lower() not in answer["errors"][0]["message"].lower() \
                or messages != ["good 1", "good 2"]:
            failures.append(f"{name}: sent {bad[:60]!r}: answer {answer}, ring {messages}")
    assert not failures, "\n".join(failures)


def test_text_bad_lines(gateway):
    gw = gateway("--max-record-bytes", "1024")
    lines = [b"first", b"bad \xff utf-8", b"x" * 2000, "\u00e9t\u00e9 \x1b[1mbold\x1b[0m".encode(), b"last"]
    status, answer = post(gw.port, "/api/workers/text-bad/records", b"\n".join(lines) + b"\n", TEXT)
    assert status == 200
    assert answer["accepted"] == 3 and answer["rejected"] == 2
    assert [(e["line"], e["message"]) for e in answer["errors"]] == \
        [(2, "invalid UTF-8"), (3, "line exceeds the limit of 1024 bytes")]
    assert [r["message"] for r in ring(gw, "text-bad")] == ["first", "\u00e9t\u00e9 \x1b[1mbold\x1b[0m", "last"]


def test_mixed_lines_streamed_in_odd_pieces(gateway):
    """Good and bad lines, split at random byte positions (inside UTF-8 characters and over the size
    limit): the counts match and every good line is in the ring, in order."""
    gw = gateway("--max-record-bytes", "1024")
    rng = random.Random(7)
    lines, good_messages, bad_lines = [], [], []
    for n in range(1, 401):
        if rng.random() < 0.3:
            bad = rng.choice(BAD_LINES)[1]
            lines.append(bad)
            bad_lines.append(n)
        else:
            message = f"good {n} — ✓ {'y' * rng.randrange(0, 300)}"
            lines.append(json.dumps({"message": message, "level": rng.choice(["DEBUG", "INFO", "ERROR"])},
                                    ensure_ascii=False).encode())
            good_messages.append(message)
    body = b"".join(line + (b"\r\n" if rng.random() < 0.2 else b"\n") for line in lines)
    stream = StreamingPost(gw.port, "mixed")
    position = 0
    while position < len(body):
        size = rng.randrange(1, 700)
        stream.send(body[position:position + size])
        position += size
    status, answer = stream.finish()
    assert status == 200
    assert answer["accepted"] == len(good_messages)
    assert answer["rejected"] == len(bad_lines)
    assert answer["last_seq"] - answer["first_seq"] + 1 == len(good_messages)
    assert [e["line"] for e in answer["errors"]] == bad_lines[:len(answer["errors"])]
    assert 1 <= len(answer["errors"]) <= len(bad_lines)
    assert [r["message"] for r in ring(gw, "mixed")] == good_messages


def test_unsupported_content_type(gateway):
    gw = gateway()
    status, answer = post(gw.port, "/api/workers/ct/records", b"<xml/>", "application/xml")
    assert status == 415 and answer["error"]["code"] == "unsupported_media_type"


# ----------------------------------------------------------------------------------------- access

def test_publish_from_restricts_publishers(gateway):
    gw = gateway("--host", "0.0.0.0", "--publish-from", "127.0.0.1/32")
    try:
        socket.create_connection(("127.0.0.1", gw.port), source_address=("127.0.0.2", 0)).close()
    except OSError as error:
        pytest.skip(f"cannot use 127.0.0.2 as a source address here: {error}")
    status, answer = post(gw.port, "/api/workers/acl/records", good(1) + b"\n", source="127.0.0.2")
    assert status == 403
    assert answer["error"]["code"] == "publish_not_allowed" and "127.0.0.2" in answer["error"]["message"]
    assert gw.http("/api/workers/acl").status == 404  # nothing was published
    status, answer = post(gw.port, "/api/workers/acl/records", good(1) + b"\n", source="127.0.0.1")
    assert status == 200 and answer["accepted"] == 1
    status, answer = post(gw.port, "/api/workers/acl/stop", b"", source="127.0.0.2")
    assert status == 403 and answer["error"]["code"] == "publish_not_allowed"
    assert gw.http("/api/workers/acl").json()["state"] == "running"
    status, answer = post(gw.port, "/api/workers/acl/stop", b"", source="127.0.0.1")
    assert status == 200 and answer.pop("epoch")
    assert answer == {"stopped": True, "worker": "acl", "status": "stopped", "exit_code": None}
    # Reading stays open to everyone.
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30, source_address=("127.0.0.2", 0))
    conn.request("GET", "/api/workers/acl/logs")
    assert conn.getresponse().status == 200
    conn.close()


def test_in_process_worker_ids_are_not_publishable(gateway):
    gw = gateway("--demo", "1")
    status, answer = post(gw.port, "/api/workers/demo-1/records", good(1) + b"\n")
    assert status == 409 and answer["error"]["code"] == "worker_owned_in_process"
    status, answer = post(gw.port, "/api/workers/demo-1/stop", b"")
    assert status == 409 and answer["error"]["code"] == "worker_owned_in_process"
    assert gw.http("/api/workers/demo-1").json()["state"] == "running"


def test_stop_ends_subscribers(gateway):
    gw = gateway()
    publish(gw.port, "stopper", [good(1), good(2)])
    subscriber = Subscriber(gw.ws_url("/ws/workers/stopper?since=0"))
    subscriber.wait_for(lambda: len(subscriber.records) == 2, 30, "2 records")
    status, answer = post(gw.port, "/api/workers/stopper/stop", b"")
    assert status == 200
    subscriber.wait_for(lambda: subscriber.close_code is not None, 30, "the close")
    end = dict(subscriber.end)
    assert end.pop("epoch")
    assert end == {"type": "end", "worker": "stopper", "last_seq": 2, "reason": "worker stopped", "status": "stopped", "exit_code": None}
    assert subscriber.close_code == 1000
    status, answer = post(gw.port, "/api/workers/nobody/stop", b"")
    assert status == 404 and answer["error"]["code"] == "worker_not_found"
    status, answer = post(gw.port, "/api/workers/bad%20id/records", good(1))
    assert status == 400 and answer["error"]["code"] == "bad_worker_id"


# ----------------------------------------------------------------------------------------- backpressure

FLOOD = 300_000


def test_flood_is_slowed_by_backpressure_not_memory(gateway, request):
    gw = gateway()
    publish(gw.port, "flood", [b'{"message":"flood starts"}'])
    subscriber = Subscriber(gw.ws_url("/ws/workers/flood?since=0"))
    subscriber.wait_for(lambda: len(subscriber.records) == 1, 30, "the first record")

    lines = [b'{"message":"flood %06d bar 002050.SZ close=10.%02d","level":"INFO","logger_name":"flood",'
             b'"module":"bench","func_name":"flood","line_no":%d}\n' % (n, n % 100, n) for n in range(FLOOD)]
    chunks = [b"".join(lines[i:i + 2000]) for i in range(0, FLOOD, 2000)]
    body_bytes = sum(map(len, chunks))
    pid = gw.proc.pid
    rss_before = rss_kib(pid)
    rss_max = [rss_before]
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            try:
                rss_max[0] = max(rss_max[0], rss_kib(pid))
            except (OSError, AssertionError):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stream = StreamingPost(gw.port, "flood", timeout=600)
    started = time.perf_counter()
    for chunk in chunks:
        stream.send(chunk)
    sent = time.perf_counter()
    status, answer = stream.finish()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    rss_after = rss_kib(pid)
    stats = gw.http("/api/stats").json()

    assert status == 200, answer
    assert answer["rejected"] == 0 and answer["errors"] == []
    assert answer["accepted"] == FLOOD
    assert answer["last_seq"] - answer["first_seq"] + 1 == FLOOD
    assert answer["first_seq"] == 2
    # The ring's tail is the flood's tail, in order, nothing lost or reordered.
    tail = ring(gw, "flood", "?limit=1000")
    assert [r["seq"] for r in tail] == list(range(answer["last_seq"] - 999, answer["last_seq"] + 1))
    assert [r["message"].encode() for r in tail] == \
        [json.loads(line)["message"].encode() for line in lines[-1000:]]
    worker = gw.http("/api/workers/flood").json()
    assert worker["last_seq"] == answer["last_seq"] and worker["records_total"] == FLOOD + 1
    # The subscriber sees every seq, as a record or inside a gap, in order.
    subscriber.wait_for(lambda: subscriber.covered_to >= answer["last_seq"], 300, "the subscriber to catch up")
    subscriber.check_invariant()
    assert subscriber.records[-1]["seq"] == answer["last_seq"]
    subscriber.close()

    rate = FLOOD / elapsed
    report(request, f"[ingest] {FLOOD:,} NDJSON lines ({body_bytes / 1e6:.1f} MB) over one chunked connection: "
                    f"{elapsed:.2f} s, {rate:,.0f} records/s (debug build, shared CPUs; body fully written "
                    f"after {sent - started:.2f} s); gateway VmRSS {rss_before / 1024:.0f} MiB before, "
                    f"{rss_max[0] / 1024:.0f} MiB max, {rss_after / 1024:.0f} MiB after; subscriber got "
                    f"{len(subscriber.records):,} records and {len(subscriber.gaps)} gaps; "
                    f"ingest pauses {stats.get('ingest_pauses', stats.get('ingestPauses', '?'))}")
    assert rss_max[0] < 300 * 1024, f"gateway memory grew to {rss_max[0] / 1024:.0f} MiB"
