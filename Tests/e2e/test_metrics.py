"""`GET /metrics` and `GET /readyz` end to end (docs/PROTOCOL.md, "Metrics" and "Readiness"): the real
gateway's Prometheus text, read with the parser of the official Python client (`prometheus_client`),
counters that move as records are published over HTTP and delivered to a WebSocket subscriber, refusals
by reason, who may scrape (by address and by a `metrics` token), and readiness while the store fails and
while the gateway shuts down."""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ws_subscriber import Subscriber
from nginx_support import wait_until as wait_for

NDJSON = "application/x-ndjson"
SECRET = b"a metrics scraping secret, 16+ bytes"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(workers: list[str], scope: str, secret: bytes = SECRET) -> str:
    """An HS256 JWT with the documented claims, as an identity service would mint it."""
    header = {"alg": "HS256", "typ": "JWT", "kid": "default"}
    claims = {"workers": workers, "scope": " ".join(scope.split(",")), "exp": int(time.time() + 3600)}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(reply) -> str:
    return reply.json()["error"]["code"]


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


def scrape(gw, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of `/metrics`, as (sample name, sorted labels) -> value, through prometheus_client's parser."""
    reply = gw.http("/metrics", headers=headers)
    assert reply.status == 200, reply.text
    assert reply.header("content-type").startswith("text/plain; version=0.0.4"), reply.header("content-type")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def families(gw) -> dict[str, str]:
    """Metric family name -> type."""
    return {family.name: family.type for family in text_string_to_metric_families(gw.http("/metrics").text)}


def post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": NDJSON, **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def lines(first: int, last: int) -> bytes:
    return b"".join(json.dumps({"message": f"order {n} filled at 12.{n:02d}", "level": "INFO",
                                "logger_name": "strategy.orders"}).encode() + b"\n" for n in range(first, last + 1))


def wait_until(predicate, timeout: float, what: str):
    """Waits until `predicate()` is true (and returns it), failing after `timeout` seconds."""
    return wait_for(predicate, timeout, 0.05, what)


# ------------------------------------------------------------------------------------- the text itself

def test_metrics_are_prometheus_text_with_the_documented_families(gateway):
    gw = gateway()
    types = families(gw)
    # prometheus_client names counter families without their _total suffix.
    expected = {
        "tailgate_connections_open": "gauge", "tailgate_connections_accepted": "counter",
        "tailgate_connections_dropped": "counter", "tailgate_streams_open": "gauge", "tailgate_streams_opened": "counter",
        "tailgate_records_published": "counter", "tailgate_records_delivered": "counter",
        "tailgate_records_dropped_before_ring": "counter", "tailgate_stream_payload_bytes": "counter",
        "tailgate_stream_wire_bytes": "counter", "tailgate_gaps": "counter", "tailgate_stalled_closes": "counter",
        "tailgate_too_big_closes": "counter", "tailgate_ingest_records": "counter", "tailgate_workers": "gauge",
        "tailgate_ring_bytes": "gauge", "tailgate_store_bytes": "gauge", "tailgate_store_state": "gauge",
        "tailgate_store_failed_writes": "counter", "tailgate_ready": "gauge",
        "tailgate_publish_to_write_seconds": "histogram", "tailgate_event_loop_delay_seconds": "histogram",
    }
    missing = {name: kind for name, kind in expected.items() if types.get(name) != kind}
    assert not missing, f"missing or mistyped: {missing}; have {sorted(types)}"
    samples = scrape(gw)
    assert value(samples, "tailgate_store_state", state="ok") == 1
    assert value(samples, "tailgate_ready") == 1
    assert not any(name.startswith("tailgate_worker_") for name, _ in samples), "per-worker series only with the flag"
    # HEAD: the headers, no body.
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("HEAD", "/metrics")
    head = conn.getresponse()
    assert head.status == 200 and head.read() == b""
    conn.close()


# ------------------------------------------------------------------------ counters move as records flow

def test_counters_move_as_records_are_published_and_delivered(gateway):
    gw = gateway()
    status, answer = post(gw.port, "/api/workers/orders/records", lines(1, 1))
    assert status == 200 and answer["accepted"] == 1, answer
    sub = Subscriber(gw.ws_url("/ws/workers/orders?tail=0"))  # offers permessage-deflate
    sub.wait_for(lambda: sub.hello is not None, 10, "hello")
    before = scrape(gw)

    status, answer = post(gw.port, "/api/workers/orders/records", lines(2, 201))
    assert status == 200 and answer["accepted"] == 200, answer
    sub.wait_for(lambda: sub.covered_to >= 201, 20, "200 records live")
    status, answer = post(gw.port, "/api/workers/orders/records", lines(202, 203) + b"{not json\n" + b"\n" + b'{"level":"LOUD"}\n')
    assert status == 200 and answer["accepted"] == 2 and answer["rejected"] == 2, answer
    sub.wait_for(lambda: sub.covered_to >= 203, 20, "the last records")
    sub.check_invariant()

    wait_until(lambda: value(scrape(gw), "tailgate_records_delivered_total") - value(before, "tailgate_records_delivered_total") >= 202,
               10, "the deliveries to be counted")
    after = scrape(gw)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("tailgate_records_published_total") == 202
    assert grew("tailgate_records_delivered_total") == 202
    assert grew("tailgate_ingest_records_total", outcome="accepted") == 202
    assert grew("tailgate_ingest_records_total", outcome="rejected") == 2
    payload, wire = grew("tailgate_stream_payload_bytes_total"), grew("tailgate_stream_wire_bytes_total")
    assert payload > 202 * 80, payload
    assert 0 < wire < payload, f"compressed on the wire: {wire} of {payload} bytes"
    assert grew("tailgate_deflate_output_bytes_total") < grew("tailgate_deflate_input_bytes_total")
    assert value(after, "tailgate_streams_open") == 1 and value(after, "tailgate_streams_opened_total") >= 1
    assert value(after, "tailgate_workers", state="running", owner="remote") == 1
    assert value(after, "tailgate_ring_bytes") > 0 and value(after, "tailgate_store_bytes") > 0
    # Publish-to-write latency was sampled for the live writes; the loops' delay four times a second.
    assert grew("tailgate_publish_to_write_seconds_count") >= 1
    assert value(after, "tailgate_publish_to_write_seconds_bucket", le="+Inf") == value(after, "tailgate_publish_to_write_seconds_count")
    wait_until(lambda: value(scrape(gw), "tailgate_event_loop_delay_seconds_count") >= 2, 5, "event-loop delay samples")
    sub.close()
    wait_until(lambda: value(scrape(gw), "tailgate_streams_open") == 0, 10, "the stream to be counted closed")


def test_per_worker_series_behind_the_flag(gateway):
    gw = gateway("--metrics-per-worker")
    for worker, count in (("alpha", 3), ("beta", 5)):
        status, answer = post(gw.port, f"/api/workers/{worker}/records", lines(1, count))
        assert status == 200 and answer["accepted"] == count
    wait_until(lambda: value(scrape(gw), "tailgate_worker_records_published_total", worker="beta") == 5, 10, "beta's count")
    samples = scrape(gw)
    assert value(samples, "tailgate_worker_records_published_total", worker="alpha") == 3
    assert value(samples, "tailgate_worker_subscribers", worker="alpha") == 0
    assert value(samples, "tailgate_worker_ring_bytes", worker="beta") > 0
    assert value(samples, "tailgate_records_published_total") == 8


# ------------------------------------------------------------------------------------ refusals by reason

def test_refusals_are_counted_by_reason_and_status(gateway):
    gw = gateway("--max-subscribers-per-worker", "1")
    post(gw.port, "/api/workers/busy/records", lines(1, 1))
    before = scrape(gw)
    assert gw.http("/api/workers/ghost").status == 404
    assert gw.http("/api/workers/ghost").status == 404
    assert gw.http("/api/workers", method="DELETE").status == 405
    first = Subscriber(gw.ws_url("/ws/workers/busy"))
    first.wait_for(lambda: first.hello is not None, 10, "hello")
    with pytest.raises(Exception) as refused:
        Subscriber(gw.ws_url("/ws/workers/busy"))
    assert "503" in str(refused.value), refused.value
    after = scrape(gw)

    def grew(code, status):
        return (value(after, "tailgate_http_refusals_total", code=code, status=status)
                - value(before, "tailgate_http_refusals_total", code=code, status=status))

    assert grew("worker_not_found", "404") == 2
    assert grew("method_not_allowed", "405") == 1
    assert grew("too_many_subscribers", "503") == 1
    first.close()


# ----------------------------------------------------------------------------------- who may scrape

def test_only_allowed_addresses_may_scrape(gateway):
    gw = gateway("--metrics-from", "10.0.0.0/8")
    reply = gw.http("/metrics")
    assert reply.status == 403 and error_code(reply) == "metrics_not_allowed"
    message = reply.json()["error"]["message"]
    assert "127.0.0.1 may not read metrics" in message and "10.0.0.0/8" in message and "--metrics-from" in message, message
    # The refusal is counted like any other; /healthz and /readyz stay open.
    assert gw.http("/healthz").status == 200 and gw.http("/readyz").status == 200
    assert gateway().http("/metrics").status == 200, "loopback is allowed by default"


def test_a_metrics_token_scrapes_from_an_address_not_allowed(gateway, gateway_binary, secret_file):
    made = subprocess.run([str(gateway_binary), "token", "--secret-file", str(secret_file), "--worker", "*",
                           "--scope", "metrics", "--ttl", "10m"], capture_output=True, text=True, timeout=20)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert claims_of(token)["scope"] == "metrics"
    gw = gateway("--metrics-from", "10.0.0.0/8", "--auth-secret-file", str(secret_file))
    assert gw.http("/metrics", headers=bearer(token)).status == 200
    samples = scrape(gw, headers=bearer(token))
    assert value(samples, "tailgate_ready") == 1
    assert gw.http(f"/metrics?access_token={token}").status == 200
    # No token: 401; a read or publish token: 403 metrics_not_allowed; a forged one: 401.
    assert error_code(gw.http("/metrics")) == "auth_required"
    for scope in ("read", "publish", "read,publish"):
        reply = gw.http("/metrics", headers=bearer(sign(["*"], scope=scope)))
        assert reply.status == 403 and error_code(reply) == "metrics_not_allowed", scope
    assert error_code(gw.http("/metrics", headers=bearer(sign(["*"], scope="metrics", secret=b"not the secret at all!!")))) == "token_invalid"
    # A metrics token opens nothing else.
    reply = gw.http("/api/workers", headers=bearer(token))
    assert reply.status == 403 and error_code(reply) == "scope_not_allowed"
    # A token signed elsewhere with the documented claims works the same.
    assert gw.http("/metrics", headers=bearer(sign(["*"], scope="read metrics"))).status == 200


@pytest.mark.parametrize("args, flag", [
    (["--metrics-from", "nonsense"], "--metrics-from"),
    (["--metrics-from", "10.0.0.0/33"], "--metrics-from"),
])
def test_bad_metrics_flags_are_refused(gateway_binary, args, flag):
    result = subprocess.run([str(gateway_binary), "serve", "--port", "0", *args], capture_output=True, text=True,
                            timeout=10, stdin=subprocess.DEVNULL)
    assert result.returncode > 0
    assert flag in result.stderr and "is not an address or CIDR block" in result.stderr, result.stderr


def test_token_command_refuses_an_unknown_scope(gateway_binary, secret_file):
    result = subprocess.run([str(gateway_binary), "token", "--secret-file", str(secret_file), "--worker", "*",
                             "--scope", "metric"], capture_output=True, text=True, timeout=20)
    assert result.returncode > 0 and "metrics" in result.stderr, result.stderr


# -------------------------------------------------------------------------------------------- readiness

def test_readyz_says_ready_and_healthz_is_unchanged(gateway):
    gw = gateway()
    ready = gw.http("/readyz")
    assert ready.status == 200 and ready.json() == {"status": "ready"}
    assert gw.http("/healthz").json() == {"status": "ok"}
    assert gw.http("/readyz", method="POST").status == 405


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_readyz_is_503_while_the_store_fails_and_200_once_it_recovers(gateway, tmp_path):
    disk = tmp_path / "small-disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "2m"):
        pytest.skip("needs root to mount a small tmpfs (mount -t tmpfs)")
    try:
        gw = gateway("--data-dir", str(disk / "data"))
        post(gw.port, "/api/workers/full/records", lines(0, 0))
        assert gw.http("/readyz").status == 200
        filler = disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "count=100"], capture_output=True)
        for first in range(1, 20001, 2000):
            status, answer = post(gw.port, "/api/workers/full/records", lines(first, first + 1999))
            assert status == 200 and answer["accepted"] == 2000, answer
        wait_until(lambda: gw.http("/readyz").status == 503, 20, "/readyz to say the store fails")
        reply = gw.http("/readyz").json()
        assert reply["status"] == "not_ready" and reply["reason"] == "store_failed", reply
        samples = scrape(gw)
        assert value(samples, "tailgate_store_state", state="failed") == 1
        assert value(samples, "tailgate_store_state", state="ok") == 0
        assert value(samples, "tailgate_store_failed_writes_total") > 0
        assert value(samples, "tailgate_ready") == 0
        assert gw.http("/healthz").status == 200, "alive, only not ready"
        filler.unlink()
        wait_until(lambda: (post(gw.port, "/api/workers/full/records", lines(1, 10))[0] == 200
                            and gw.http("/readyz").status == 200), 30, "/readyz to recover")
        assert value(scrape(gw), "tailgate_store_state", state="ok") == 1
        gw.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _silent_stream(port: int, worker: str) -> socket.socket:
    """A stream opened by hand that never reads again: at shutdown the gateway waits for its close reply."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"GET /ws/workers/{worker} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_readyz_is_503_once_shutdown_begins(gateway):
    gw = gateway("--demo", "1")
    kept = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    kept.request("GET", "/readyz")
    first = kept.getresponse()
    assert first.status == 200 and json.loads(first.read()) == {"status": "ready"}
    silent = _silent_stream(gw.port, "demo-1")  # holds the shutdown open for about two seconds
    try:
        gw.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            kept.request("GET", "/readyz")
            reply = kept.getresponse()
            body = json.loads(reply.read())
            if reply.status == 503:
                break
            assert reply.status == 200 and time.monotonic() < deadline, (reply.status, body)
            time.sleep(0.02)
        assert body["reason"] == "shutting_down", body
        assert gw.proc.wait(10) == 0
    finally:
        silent.close()
        kept.close()
