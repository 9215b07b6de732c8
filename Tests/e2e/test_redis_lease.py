"""One writer per run across gateways sharing a Redis store (docs/REDIS.md, "Writer leases"): two real
`tailgate serve --store redis://…` processes and a real `redis-server`; the second gateway refuses a
worker the first publishes, and continues its run after the first is killed with `kill -9`."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import signal
import subprocess
import time

import pytest

from nginx_support import free_port, wait_until

NDJSON = "application/x-ndjson"
LEASE_TTL = 2  # seconds (--lease-ttl); the default is 10


@pytest.fixture
def redis_url(tmp_path):
    """A `redis-server` of the test's own on a free loopback port, without persistence."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        pytest.skip("redis-server not found (scripts/test.sh installs it)")
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _accepts(port) or proc.poll() is not None, 10, 0.02, "redis-server to listen")
        except AssertionError:
            pass
        if proc.poll() is None and _accepts(port):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def post(port: int, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": NDJSON, **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())
    finally:
        conn.close()


def lines(first: int, last: int) -> bytes:
    return b"".join(json.dumps({"message": f"line {n}"}).encode() + b"\n" for n in range(first, last + 1))


def stored_messages(gw, worker: str) -> list[tuple[int, str]]:
    result = gw.http(f"/api/workers/{worker}/logs", timeout=30)
    assert result.status == 200, result.text
    return [(record["seq"], record["message"]) for record in map(json.loads, result.text.splitlines()) if record]


def test_a_second_gateway_refuses_a_held_worker_and_takes_it_over_after_a_kill(gateway, redis_url):
    store = ("--store", redis_url, "--lease-ttl", str(LEASE_TTL))
    a = gateway(*store)
    status, _, answer = post(a.port, "/api/workers/job/records", lines(1, 20), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "1"})
    assert status == 200 and answer["accepted"] == 20 and answer["offset"] == 20, answer
    epoch = answer["epoch"]

    b = gateway(*store)
    # gateway B did not bring the run back at start: A holds it.
    assert "published from other processes going on" not in b.log(), b.log()
    status, headers, answer = post(b.port, "/api/workers/job/records", lines(21, 25), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "21"})
    assert status == 503, answer
    assert answer["error"]["code"] == "worker_published_elsewhere", answer
    assert f"pid {a.proc.pid}" in answer["error"]["message"], answer
    assert 1 <= int(headers["retry-after"]) <= LEASE_TTL, headers
    # A still accepts it: the refusal took nothing from A.
    status, _, answer = post(a.port, "/api/workers/job/records", lines(21, 25), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "21"})
    assert status == 200 and answer["first_seq"] == 21 and answer["offset"] == 25, answer

    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    killed = time.monotonic()

    # The publisher asks B where it stands until A's lease has expired; then the run goes on there.
    def accepted():
        status, _, answer = post(b.port, "/api/workers/job/records", b"", {"Tailgate-Publisher": "p1"})
        return answer if status == 200 else None

    answer = wait_until(accepted, LEASE_TTL + 10, 0.1, "gateway B to accept the worker")
    # A renewed its lease at most a third of the TTL before it was killed.
    assert time.monotonic() - killed >= LEASE_TTL * 2 / 3 - 0.3, "B accepted before A's lease could have expired"
    assert answer["epoch"] == epoch and answer["offset"] == 25, answer
    status, _, answer = post(b.port, "/api/workers/job/records", lines(22, 40), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "22"})
    assert status == 200 and answer["accepted"] == 15 and answer["duplicates"] == 4 and answer["first_seq"] == 26, answer
    assert answer["epoch"] == epoch, answer
    assert stored_messages(b, "job") == [(n, f"line {n}") for n in range(1, 41)]
