"""Server-Sent Events (`GET /api/workers/{id}/events`, `/api/workers/{id}/runs/{epoch}/events`,
`/api/streams/events`; docs/PROTOCOL.md "Server-Sent Events") against a real gateway process, and
through the real nginx of deploy/nginx.

Events are read as a browser's EventSource reads them (the HTML standard's event-stream parsing: `id:`
and `data:` fields, `:` comments, a blank line dispatches), from a raw HTTP response.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from nginx_support import LOCAL_PUBLISHERS, PROXY_CIDR, nginx, wait_until  # noqa: F401

BEHIND_NGINX = ("--trusted-proxy", PROXY_CIDR, "--publish-from", LOCAL_PUBLISHERS)


# ----------------------------------------------------------------------------------------- helpers

class EventStream:
    """One event-stream response, parsed like EventSource does."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.connection.request("GET", path, headers=headers or {})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.last_event_id = ""
        self.comments: list[str] = []

    def next_event(self) -> tuple[str, dict] | None:
        """(the event's last event id, its data as JSON), or None when the response has ended."""
        data: list[str] = []
        while True:
            raw = self.response.readline()
            if not raw:
                return None
            line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            if line == "":
                if data:
                    return self.last_event_id, json.loads("\n".join(data))
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                self.last_event_id = value
            elif name == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected field {line!r}")

    def close(self):
        # The response holds its own reference to the socket: both must let go of it.
        self.response.close()
        self.connection.close()


def publish(port: int, worker: str, count: int, start: int = 1) -> None:
    body = b"".join(json.dumps({"message": f"record {n}"}).encode() + b"\n" for n in range(start, start + count))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", f"/api/workers/{worker}/records", body=body, headers={"Content-Type": "application/x-ndjson"})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        connection.close()


def read_worker(stream: EventStream, until_seq: int | None = None) -> tuple[dict, list[int], list[str], dict | None]:
    """Reads one worker's events: (hello, record seqs, event ids, end) until `until_seq` is covered or the
    response ends. Checks the invariant and that each id is EPOCH:SEQ, the run and the last seq its message
    covers."""
    event = stream.next_event()
    assert event is not None, "no hello"
    first_id, hello = event
    epoch = hello["epoch"]
    assert hello["type"] == "hello" and first_id == f"{epoch}:{hello['replay_from'] - 1}", event
    next_seq, seqs, ids, end = hello["replay_from"], [], [first_id], None
    while until_seq is None or next_seq <= until_seq:
        event = stream.next_event()
        if event is None:
            break
        event_id, message = event
        ids.append(event_id)
        assert end is None, f"event after end: {message}"
        if message["type"] == "logs":
            assert "worker" not in message
            for record in message["records"]:
                assert record["seq"] == next_seq, (record["seq"], next_seq)
                seqs.append(next_seq)
                next_seq += 1
            assert event_id == f"{epoch}:{next_seq - 1}"
        elif message["type"] == "gap":
            assert message["from"] == next_seq and event_id == f"{epoch}:{message['to']}"
            next_seq = message["to"] + 1
        elif message["type"] == "end":
            assert message["last_seq"] == next_seq - 1 and event_id == f"{epoch}:{message['last_seq']}"
            end = message
            break
        else:
            raise AssertionError(f"unexpected {message}")
    return hello, seqs, ids, end


# ------------------------------------------------------------------------------- one worker

def test_one_worker_as_a_browser_reads_it_then_end_closes_the_response(gateway):
    gw = gateway("--memory-only")
    publish(gw.port, "sse-1", 50)
    stream = EventStream(gw.port, "/api/workers/sse-1/events?tail=10")
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.headers["cache-control"] == "no-cache" and stream.headers["x-accel-buffering"] == "no"
    assert stream.headers["connection"] == "close"
    assert "content-length" not in stream.headers and "transfer-encoding" not in stream.headers
    hello, seqs, ids, _ = read_worker(stream, until_seq=50)
    assert hello["replay_from"] == 41 and hello["worker"] == "sse-1" and seqs == list(range(41, 51))
    publish(gw.port, "sse-1", 5, start=51)
    assert gw.http("/api/workers/sse-1/stop", method="POST").status == 200
    _, more, _, end = read_worker_after(stream, 51, hello["epoch"])
    assert more == list(range(51, 56)) and end["last_seq"] == 55 and end["worker"] == "sse-1"
    assert stream.next_event() is None, "the gateway ends the response after end"
    stream.close()


def read_worker_after(stream: EventStream, next_seq: int, epoch: str) -> tuple[None, list[int], list[str], dict | None]:
    """Continues reading a worker's events from `next_seq` until `end`."""
    seqs, ids = [], []
    while True:
        event = stream.next_event()
        assert event is not None, "the response ended before end"
        event_id, message = event
        ids.append(event_id)
        if message["type"] == "logs":
            for record in message["records"]:
                assert record["seq"] == next_seq
                seqs.append(next_seq)
                next_seq += 1
        elif message["type"] == "end":
            assert event_id == f"{epoch}:{message['last_seq']}" == f"{epoch}:{next_seq - 1}"
            return None, seqs, ids, message
        else:
            raise AssertionError(f"unexpected {message}")


def test_last_event_id_resumes_exactly_and_a_stored_run_replays_then_ends(gateway):
    gw = gateway()
    publish(gw.port, "resume-1", 30)
    first = EventStream(gw.port, "/api/workers/resume-1/events?tail=1000")
    hello, seqs, ids, _ = read_worker(first, until_seq=18)
    first.close()
    publish(gw.port, "resume-1", 20, start=31)
    # An EventSource reconnects with the same URL and the last id it saw.
    again = EventStream(gw.port, "/api/workers/resume-1/events?tail=1000", headers={"Last-Event-ID": ids[-1]})
    hello2, seqs2, _, _ = read_worker(again, until_seq=50)
    again.close()
    epoch, last = ids[-1].split(":")
    assert epoch == hello["epoch"] and hello2["replay_from"] == int(last) + 1 and hello2["resumed"] is True
    assert seqs + seqs2 == list(range(1, 51)), "no gap, no duplicate"
    # Last-Event-ID wins over since; a plain seq is accepted too (like since).
    third = EventStream(gw.port, "/api/workers/resume-1/events?since=3", headers={"Last-Event-ID": "45"})
    assert read_worker(third, until_seq=50)[1] == [46, 47, 48, 49, 50]
    third.close()
    # A finished run, by its epoch: replayed from the store, then end, then the response ends.
    assert gw.http("/api/workers/resume-1/stop", method="POST").status == 200
    run = EventStream(gw.port, f"/api/workers/resume-1/runs/{hello['epoch']}/events?since=40")
    hello3, seqs3, _, end = read_worker(run)
    assert seqs3 == list(range(41, 51)) and end is not None and end["epoch"] == hello["epoch"]
    assert run.next_event() is None
    run.close()


def test_an_event_source_that_reconnects_after_the_workers_new_run_gets_the_new_run_whole(gateway):
    gw = gateway()
    publish(gw.port, "rerun-1", 30)
    first = EventStream(gw.port, "/api/workers/rerun-1/events?tail=1000")
    hello, seqs, ids, _ = read_worker(first, until_seq=25)
    first.close()
    assert ids[-1] == f"{hello['epoch']}:{seqs[-1]}" and seqs[-1] >= 25
    # The worker's run ends and a new one begins (its seqs start over), while the EventSource is away.
    assert gw.http("/api/workers/rerun-1/stop", method="POST").status == 200
    publish(gw.port, "rerun-1", 10)
    # It reconnects with the same URL and its last id: not seq 25 of the new run, the new run whole.
    again = EventStream(gw.port, "/api/workers/rerun-1/events?tail=1000", headers={"Last-Event-ID": ids[-1]})
    hello2, seqs2, ids2, _ = read_worker(again, until_seq=10)
    again.close()
    assert hello2["epoch"] != hello["epoch"]
    assert hello2["resumed"] is False and hello["epoch"] in hello2["reason"], hello2
    assert hello2["replay_from"] == 1 and seqs2 == list(range(1, 11)), "no record of the new run skipped"
    assert ids2[-1] == f"{hello2['epoch']}:10"
    # A malformed id is refused before the stream.
    for bad in ["RUN:5", f"{hello2['epoch']}:", ":5", f"{hello2['epoch']}:5:5"]:
        reply = gw.http("/api/workers/rerun-1/events", headers={"Last-Event-ID": bad})
        assert (reply.status, reply.json()["error"]["code"]) == (400, "bad_parameter"), bad


def test_refusals_are_the_json_errors_of_the_api(gateway, tmp_path):
    gw = gateway("--memory-only", "--max-subscribers-per-worker", "1")
    publish(gw.port, "limited", 3)
    for path, headers, status, code in [
        ("/api/workers/nope/events", {}, 404, "worker_not_found"),
        ("/api/workers/limited/events?since=x", {}, 400, "bad_parameter"),
        ("/api/workers/limited/events", {"Last-Event-ID": "soon"}, 400, "bad_parameter"),
        ("/api/workers/limited/runs/nosuchrun/events", {}, 404, "run_not_found"),
        ("/api/streams/events?workers=bad%20id", {}, 400, "bad_parameter"),
        ("/api/streams/events?resume=limited:1", {}, 400, "bad_parameter"),
        ("/api/streams/events?workers=" + ",".join(f"p{n}-*" for n in range(101)), {}, 400, "bad_parameter"),
    ]:
        reply = gw.http(path, headers=headers)
        assert (reply.status, reply.json()["error"]["code"]) == (status, code), path
        assert reply.header("content-type").startswith("application/json")
    assert gw.http("/api/workers/limited/events", method="POST").status == 405
    holder = EventStream(gw.port, "/api/workers/limited/events")
    assert holder.next_event()[1]["type"] == "hello"
    busy = gw.http("/api/workers/limited/events")
    assert (busy.status, busy.json()["error"]["code"]) == (503, "too_many_subscribers") and busy.header("retry-after")
    holder.close()
    wait_until(lambda: gw.http("/api/workers/limited").json()["subscribers"] == 0, message="the place given back")
    secret = tmp_path / "secret"
    secret.write_bytes(b"sse secret 0123456789abcdef")
    secret.chmod(0o600)
    gw2 = gateway("--memory-only", "--auth-secret-file", str(secret))
    reply = gw2.http("/api/streams/events?workers=*")
    assert (reply.status, reply.json()["error"]["code"]) == (401, "auth_required") and reply.header("www-authenticate")


# ----------------------------------------------------------------------------- many workers

def test_many_workers_events_name_their_worker_carry_no_id_and_follow_new_workers(gateway):
    gw = gateway("--memory-only", "--ping-interval", "1")
    publish(gw.port, "m-1", 10)
    publish(gw.port, "m-2", 10)
    stream = EventStream(gw.port, "/api/streams/events?workers=m-*,nope&tail=3")
    assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
    next_seq: dict[str, int] = {}
    errors = []

    def take_until(condition):
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, f"timed out: {next_seq} {errors}"
            event_id, message = stream.next_event()
            assert event_id == "", f"an id on a many-worker event: {message}"
            worker = message["worker"]
            if message["type"] == "hello":
                next_seq[worker] = message["replay_from"]
            elif message["type"] == "logs":
                for record in message["records"]:
                    assert record["seq"] == next_seq[worker]
                    next_seq[worker] += 1
            elif message["type"] == "error":
                errors.append((worker, message["code"]))
            else:
                raise AssertionError(message)

    take_until(lambda: next_seq.get("m-1") == 11 and next_seq.get("m-2") == 11 and errors)
    assert errors == [("nope", "worker_not_found")]
    publish(gw.port, "m-3", 4)
    take_until(lambda: next_seq.get("m-3") == 5)
    # `: keepalive` every --ping-interval (1 s here), and nothing else while nothing is published.
    started = time.monotonic()
    line = stream.response.readline()
    assert line == b": keepalive\n" and time.monotonic() - started < 2.5, line
    assert stream.response.readline() == b"\n"
    stream.close()


def test_a_client_that_does_not_read_is_disconnected_after_the_stall_timeout(gateway):
    gw = gateway("--memory-only", "--stall-timeout", "1", "--ring-records", "100")
    publish(gw.port, "flood", 1)
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.sendall(b"GET /api/workers/flood/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    stop = threading.Event()

    def flood():
        padding = "y" * 3000
        n = 2
        while not stop.is_set():
            publish_body = b"".join(json.dumps({"message": f"{i} {padding}"}).encode() + b"\n" for i in range(50))
            connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
            connection.request("POST", "/api/workers/flood/records", body=publish_body, headers={"Content-Type": "application/x-ndjson"})
            connection.getresponse().read()
            connection.close()
            n += 50

    publisher = threading.Thread(target=flood, daemon=True)
    publisher.start()
    try:
        wait_until(lambda: gw.http("/api/stats").json()["stalled_closes"] >= 1, timeout=20, message="the stall close")
    finally:
        stop.set()
        publisher.join(10)
    sock.settimeout(10)
    while sock.recv(1 << 20):  # what was in flight, then the end of the connection
        pass
    sock.close()


# ------------------------------------------------------------------------------------ nginx

def test_events_pass_through_nginx_unbuffered(gateway, nginx):
    gw = gateway("--memory-only", *BEHIND_NGINX)
    proxy = nginx(gw.port, ("site-root.conf.template", {}))
    publish(gw.port, "via-nginx", 3)
    stream = EventStream(proxy.port, "/api/workers/via-nginx/events?tail=3")
    assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
    hello, seqs, _, _ = read_worker(stream, until_seq=3)
    assert seqs == [1, 2, 3]
    # One small record published now arrives at once (X-Accel-Buffering: no), not when a buffer fills.
    started = time.monotonic()
    publish(gw.port, "via-nginx", 1, start=4)
    event_id, message = stream.next_event()
    assert message["records"][0]["seq"] == 4 and event_id == f"{hello['epoch']}:4"
    assert time.monotonic() - started < 2
    stream.close()
    many = EventStream(proxy.port, "/api/streams/events?workers=via-*&tail=1")
    assert many.next_event()[1]["type"] == "hello"
    many.close()
