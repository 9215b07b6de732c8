"""Failure behaviour of gateways sharing a Redis store (docs/REDIS.md, "Failure behaviour"): a real
`redis-server` (with its append-only file, so a restart keeps what it acknowledged) and real
`tailgate serve --store redis://…` processes.

- Redis killed while a gateway is serving: streams go on from memory, `/readyz` answers 503, what is
  published meanwhile waits in the store's queue and lands in Redis once it is back (every record once).
- The queue's bound (`--store-queue`) exceeded while Redis is away: the overflow is counted in words
  ("N records dropped for Redis") in `/api/stats` and the log, and Redis holds everything else.
- A gateway killed with `kill -9`: another gateway ends its in-process worker's run as `interrupted`
  with the reason once the dead gateway's writer lease has expired.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from nginx_support import free_port, wait_until
from test_history import post
from ws_subscriber import Subscriber

LEASE_TTL = 2  # seconds (--lease-ttl) for the kill -9 test
MAINTENANCE_INTERVAL = 5  # seconds: RedisStoreConfiguration.maintenanceInterval's default (no flag sets it)


class RedisServer:
    """A `redis-server` of the test's own on a fixed loopback port, AOF with `appendfsync always`, which
    can be killed and started again on the same port and folder."""

    def __init__(self, binary: str, folder):
        self.binary = binary
        self.folder = folder
        self.proc = None
        self.port = 0
        for _ in range(3):
            self.port = free_port()
            if self.start(must=False):
                return
        pytest.fail("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, must: bool = True) -> bool:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            if _accepts(self.port) and self.cli("PING") == "PONG":
                return True
            time.sleep(0.02)
        self.kill()
        if must:
            pytest.fail(f"redis-server did not start again on port {self.port}")
        return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cli(self, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-p", str(self.port), "--raw", *args], capture_output=True, text=True, timeout=10)
        return result.stdout.strip()


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def redis_server(tmp_path):
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK) or not shutil.which("redis-cli"):
        pytest.skip("redis-server not found (scripts/test.sh installs it)")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(binary, folder)
    yield server
    server.kill()


def lines(first: int, last: int, pad: int = 0) -> bytes:
    return b"".join(json.dumps({"message": f"line {n}" + " " * pad}).encode() + b"\n" for n in range(first, last + 1))


def publish(gw, first: int, last: int, pad: int = 0) -> dict:
    status, answer = post(gw.port, "/api/workers/job/records", lines(first, last, pad),
                          {"Tailgate-Publisher": "p1", "Tailgate-Offset": str(first)})
    assert status == 200 and answer["accepted"] == last - first + 1, answer
    return answer


def stored(gw, worker: str = "job") -> list[tuple[int, str]]:
    result = gw.http(f"/api/workers/{worker}/logs", timeout=30)
    assert result.status == 200, result.text
    return [(record["seq"], record["message"].rstrip()) for record in map(json.loads, result.text.splitlines()) if record]


def readiness(gw) -> tuple[int, dict]:
    result = gw.http("/readyz")
    return result.status, (result.json() if result.body.strip() else {})


def test_redis_away_streams_go_on_publishing_waits_and_lands_once_redis_is_back(gateway, redis_server):
    g = gateway("--store", redis_server.url)
    wait_until(lambda: readiness(g)[0] == 200, 10, 0.05, "the gateway to be ready")
    answer = publish(g, 1, 50)
    epoch = answer["epoch"]
    subscriber = Subscriber(g.ws_url("/ws/workers/job?since=0"))
    try:
        subscriber.wait_for(lambda: subscriber.covered_to >= 50, 10, "records 1-50")

        redis_server.kill()
        killed = time.monotonic()
        status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(readiness(g)), 10, 0.05, "/readyz to say not ready")
        assert body["reason"] == "store_failed", body
        print(f"/readyz 503 {time.monotonic() - killed:.2f} s after Redis was killed")

        # Publishers are answered from memory; subscribers get the records live.
        for first in range(51, 451, 50):
            assert publish(g, first, first + 49)["epoch"] == epoch
        subscriber.wait_for(lambda: subscriber.covered_to >= 450, 10, "records 51-450 while Redis is away")
        stats = g.http("/api/stats").json()["store"]
        assert stats["state"] == "failed" and stats["write_queue"] > 0 and stats["failed_writes"] == 0, stats
        assert "records dropped" not in (stats["last_error"] or ""), stats
        assert readiness(g)[0] == 503

        redis_server.start()
        restarted = time.monotonic()
        wait_until(lambda: readiness(g)[0] == 200, 15, 0.05, "/readyz to be ready again once Redis is back")
        print(f"/readyz 200 {time.monotonic() - restarted:.2f} s after Redis was back")
        stats = g.http("/api/stats").json()["store"]
        assert stats["state"] == "ok" and stats["last_error"] is None and stats["failed_writes"] == 0, stats
        wait_until(lambda: g.http("/api/stats").json()["store"]["write_queue"] == 0, 10, 0.05, "the queue to be written")
        publish(g, 451, 460)
        subscriber.wait_for(lambda: subscriber.covered_to >= 460, 10, "records 451-460 after Redis is back")
        subscriber.check_invariant()
        assert [r["seq"] for r in subscriber.records] == list(range(1, 461)) and subscriber.end is None
    finally:
        subscriber.close()

    # What Redis holds, read by a fresh gateway: every record once, in order.
    wait_until(lambda: redis_server.cli("HGET", f"tailgate:{{job}}:manifest:{epoch}", "last_seq") == "460", 10, 0.05,
               "Redis's manifest to reach seq 460")
    fresh = gateway("--store", redis_server.url)
    assert stored(fresh) == [(n, f"line {n}") for n in range(1, 461)]
    assert redis_server.cli("HGET", f"tailgate:{{job}}:offsets:{epoch}", "p1") == "460"


def test_over_the_store_queue_the_dropped_records_are_counted_in_words(gateway, redis_server):
    g = gateway("--store", redis_server.url, "--store-queue", "64KiB")
    wait_until(lambda: readiness(g)[0] == 200, 10, 0.05, "the gateway to be ready")
    epoch = publish(g, 1, 10)["epoch"]
    redis_server.kill()
    wait_until(lambda: readiness(g)[0] == 503, 10, 0.05, "/readyz to say not ready")
    # 1,000 records of about 230 bytes in batches of 20: more than 64 KiB.
    for first in range(11, 1011, 20):
        publish(g, first, first + 19, pad=200)
    stats = g.http("/api/stats").json()["store"]
    match = re.fullmatch(r"(\d+) records dropped for Redis: more than 64 KiB waited for it \((.+)\); they are in memory only",
                         stats["last_error"] or "")
    assert match, stats
    dropped = int(match[1])
    assert 0 < dropped < 1000 and stats["failed_writes"] > 0, stats
    assert "not connected to Redis" in match[2], stats
    assert "the store drops records for Redis" in g.log(), g.log()

    redis_server.start()
    wait_until(lambda: readiness(g)[0] == 200, 15, 0.05, "/readyz to be ready again once Redis is back")
    wait_until(lambda: f"{dropped} records dropped for Redis while it did not take writes; Redis takes writes again" in g.log(),
               5, 0.05, "the log to count the dropped records")
    assert g.http("/api/stats").json()["store"]["last_error"] is None
    wait_until(lambda: g.http("/api/stats").json()["store"]["write_queue"] == 0, 10, 0.05, "the queue to be written")

    # Redis holds everything but the dropped records (the oldest queued were kept, the rest dropped).
    fresh = gateway("--store", redis_server.url)
    seqs = [seq for seq, _ in stored(fresh)]
    assert len(seqs) == 1010 - dropped and seqs == sorted(set(seqs)), (len(seqs), dropped)
    assert seqs[:10] == list(range(1, 11))
    assert redis_server.cli("HGET", f"tailgate:{{job}}:manifest:{epoch}", "status") == "running"


def test_a_killed_gateways_in_process_run_ends_interrupted_on_another_gateway(gateway, redis_server):
    store = ("--store", redis_server.url, "--lease-ttl", str(LEASE_TTL))
    a = gateway(*store, "--demo", "1", "--demo-rate", "20")
    b = gateway(*store)
    publish(b, 1, 5)  # a remote worker of B's: untouched

    def run_on_b():
        workers = {w["id"]: w for w in b.http("/api/workers").json()["workers"]}
        return workers.get("demo-1")

    # B sees A's run (its list of runs is read from Redis every maintenance interval).
    seen = wait_until(lambda: (lambda w: w if w and w["last_seq"] > 0 else None)(run_on_b()), MAINTENANCE_INTERVAL + 5, 0.1,
                      "gateway B to list A's demo-1")
    assert seen["status"] == "running" and seen["owner"] == "in-process", seen
    epoch = seen["epoch"]
    # A subscriber of the run on B (B follows it from Redis).
    on_b = Subscriber(b.ws_url("/ws/workers/demo-1?tail=0"))
    try:
        on_b.wait_for(lambda: len(on_b.records) >= 3, 15, "live records of A's demo-1 on B")

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        killed = time.monotonic()
        ended = wait_until(lambda: (lambda w: w if w and w["status"] != "running" else None)(run_on_b()),
                           LEASE_TTL + MAINTENANCE_INTERVAL + 5, 0.1, "gateway B to end A's in-process run")
        waited = time.monotonic() - killed
        print(f"demo-1 ended on B {waited:.2f} s after kill -9 of A")
        # Its subscriber on B gets the end with the reason, after every record Redis holds.
        on_b.wait_for(lambda: on_b.end is not None, 10, "end on B's subscriber")
        assert on_b.end["reason"] == ended["reason"] and on_b.end["status"] == "interrupted", on_b.end
        on_b.check_invariant()
        last_seq = int(redis_server.cli("HGET", f"tailgate:{{demo-1}}:manifest:{epoch}", "last_seq"))
        assert on_b.end["last_seq"] == last_seq and on_b.covered_to == last_seq, (on_b.end, on_b.covered_to, last_seq)
    finally:
        on_b.close()
    assert ended["status"] == "interrupted" and ended["epoch"] == epoch, ended
    assert waited >= LEASE_TTL * 2 / 3 - 0.3, "ended before A's lease could have expired"
    assert re.fullmatch(r"the gateway writing this run stopped renewing its writer lease \(gateway [0-9a-f]{16} "
                        rf"127\.0\.0\.1, pid {a.proc.pid} died or lost Redis\)", ended["reason"] or ""), ended
    assert ended["stopped_at"] is not None, ended
    manifest = f"tailgate:{{demo-1}}:manifest:{epoch}"
    assert redis_server.cli("HGET", manifest, "status") == "interrupted"
    assert redis_server.cli("HGET", manifest, "reason") == ended["reason"]
    # B's own remote worker is untouched.
    job = {w["id"]: w for w in b.http("/api/workers").json()["workers"]}["job"]
    assert job["status"] == "running", job


def test_redis_frozen_past_the_command_timeout_the_gateway_keeps_serving_and_writes_each_record_once(gateway, redis_server):
    # SIGSTOP: connections stay open but nothing answers; the client's command timeout (5 s) closes them
    # and reconnects to a server that accepts but does not answer. A lease TTL above the freeze keeps
    # the worker's lease alive through it. (Before the writer paused between attempts, a closing
    # connection failing its pipeline at once made it recurse until the gateway crashed.)
    g = gateway("--store", redis_server.url, "--lease-ttl", "30")
    wait_until(lambda: readiness(g)[0] == 200, 10, 0.05, "the gateway to be ready")
    epoch = publish(g, 1, 10)["epoch"]
    subscriber = Subscriber(g.ws_url("/ws/workers/job?since=0"))
    try:
        redis_server.proc.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        first = 11
        while time.monotonic() - frozen < 7:
            publish(g, first, first + 9)
            first += 10
            time.sleep(0.25)
        last = first - 1
        status, body = readiness(g)
        assert status == 503 and body["reason"] == "store_failed", body
        subscriber.wait_for(lambda: subscriber.covered_to >= last, 10, f"records up to {last} while Redis is frozen")
        redis_server.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: readiness(g)[0] == 200, 15, 0.05, "/readyz to be ready again once Redis answers")
        wait_until(lambda: g.http("/api/stats").json()["store"]["write_queue"] == 0, 10, 0.05, "the queue to be written")
        assert g.proc.poll() is None
        subscriber.check_invariant()
        assert [r["seq"] for r in subscriber.records] == list(range(1, last + 1)) and subscriber.end is None
    finally:
        subscriber.close()
    wait_until(lambda: redis_server.cli("HGET", f"tailgate:{{job}}:manifest:{epoch}", "last_seq") == str(last), 10, 0.05,
               f"Redis's manifest to reach seq {last}")
    fresh = gateway("--store", redis_server.url)
    assert stored(fresh) == [(n, f"line {n}") for n in range(1, last + 1)]
