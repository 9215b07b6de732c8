"""Any gateway serves any worker (docs/REDIS.md, "Any gateway serves any worker"): real `tailgate serve
--store redis://…` processes on one real `redis-server`. A gateway whose subscribers ask for a worker
that another gateway writes follows the run's stream in Redis into a local mirror and fans out from
it: the same seqs and the same bytes as on the writer; the run's `end` comes through; a mirror becomes
the run's writer when its publisher moves to this gateway, and its subscribers see the seqs go on; Redis
is read once per gateway and run, however many subscribers."""
from __future__ import annotations

import json
import signal
import subprocess
import time

from nginx_support import wait_until
from test_redis_lease import LEASE_TTL, lines, post, redis_url  # noqa: F401 - redis_url is a fixture
from ws_subscriber import Subscriber


def _store(redis_url):
    return ("--store", redis_url, "--lease-ttl", str(LEASE_TTL))


def _redis(redis_url, *command: str) -> str:
    port = redis_url.rsplit(":", 1)[1]
    return subprocess.run(["redis-cli", "-p", port, *command], capture_output=True, text=True, timeout=10, check=True).stdout


def test_an_in_process_worker_of_one_gateway_streams_from_another_with_the_same_seqs_and_bytes(gateway, redis_url):
    a = gateway(*_store(redis_url), "--demo", "1", "--demo-rate", "200")
    b = gateway(*_store(redis_url))
    on_a = Subscriber(a.ws_url("/ws/workers/demo-1?since=0"))
    on_b = Subscriber(b.ws_url("/ws/workers/demo-1?since=0"))
    try:
        for subscriber in (on_a, on_b):
            subscriber.wait_for(lambda s=subscriber: len(s.records) >= 400, 30, "400 records")
        assert on_a.hello["epoch"] == on_b.hello["epoch"]
        assert on_b.hello["replay_from"] == 1
        on_b.check_invariant()
        assert not on_b.gaps and on_b.end is None
        count = min(len(on_a.records), len(on_b.records))
        # The same records, seq for seq, byte for byte (as JSON values: the same fields and values).
        assert on_b.records[:count] == on_a.records[:count]
        # Live, not replayed at the end: B's records keep arriving while A's do.
        before = len(on_b.records)
        on_b.wait_for(lambda: len(on_b.records) >= before + 100, 10, "100 more live records on B")
        workers = json.loads(b.http("/api/workers/demo-1").text)
        assert workers["state"] == "running" and workers["epoch"] == on_a.hello["epoch"], workers
    finally:
        on_a.close()
        on_b.close()


def test_the_writers_end_reaches_the_mirrors_subscribers(gateway, redis_url):
    a = gateway(*_store(redis_url))
    b = gateway(*_store(redis_url))
    status, _, answer = post(a.port, "/api/workers/job/records", lines(1, 30))
    assert status == 200 and answer["accepted"] == 30, answer
    on_b = Subscriber(b.ws_url("/ws/workers/job?since=0"))
    try:
        on_b.wait_for(lambda: len(on_b.records) >= 30, 15, "the 30 records on B")
        status, _, answer = post(a.port, "/api/workers/job/records", lines(31, 35))
        assert status == 200, answer
        status, _, _ = post(a.port, "/api/workers/job/stop?reason=done%20for%20today")
        assert status in (200, 202)
        on_b.wait_for(lambda: on_b.end is not None, 15, "end on B")
        assert [r["seq"] for r in on_b.records] == list(range(1, 36))
        assert [r["message"] for r in on_b.records] == [f"line {n}" for n in range(1, 36)]
        assert on_b.end["last_seq"] == 35, on_b.end
    finally:
        on_b.close()


def test_a_mirror_becomes_the_writer_when_the_publisher_moves_after_a_kill(gateway, redis_url):
    a = gateway(*_store(redis_url))
    b = gateway(*_store(redis_url))
    headers = {"Tailgate-Publisher": "p1"}
    status, _, answer = post(a.port, "/api/workers/job/records", lines(1, 20), {**headers, "Tailgate-Offset": "1"})
    assert status == 200 and answer["offset"] == 20, answer
    on_b = Subscriber(b.ws_url("/ws/workers/job?since=0"))
    try:
        on_b.wait_for(lambda: len(on_b.records) >= 20, 15, "20 records on B")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)

        def accepted():
            status, _, answer = post(b.port, "/api/workers/job/records", b"", headers)
            return answer if status == 200 else None

        answer = wait_until(accepted, LEASE_TTL + 10, 0.1, "gateway B to take the run over")
        assert answer["offset"] == 20 and answer["epoch"] == on_b.hello["epoch"], answer
        status, _, answer = post(b.port, "/api/workers/job/records", lines(18, 40), {**headers, "Tailgate-Offset": "18"})
        assert status == 200 and answer["accepted"] == 20 and answer["duplicates"] == 3 and answer["first_seq"] == 21, answer
        # The same subscriber, on the same connection: the seqs go on, no end, no gap.
        on_b.wait_for(lambda: len(on_b.records) >= 40, 15, "records 21-40 on B")
        assert [r["seq"] for r in on_b.records] == list(range(1, 41))
        assert [r["message"] for r in on_b.records] == [f"line {n}" for n in range(1, 41)]
        assert on_b.end is None and not on_b.gaps
        assert _redis(redis_url, "GET", "tailgate:{job}:lease").find(f"pid {b.proc.pid}") >= 0
    finally:
        on_b.close()


def test_redis_is_read_once_per_gateway_and_run_however_many_subscribers(gateway, redis_url):
    a = gateway(*_store(redis_url), "--demo", "1", "--demo-rate", "100")
    b = gateway(*_store(redis_url))

    def xread_calls() -> int:
        stats = _redis(redis_url, "INFO", "commandstats")
        for line in stats.splitlines():
            if line.startswith("cmdstat_xread:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def reads_during(subscribers: list[Subscriber], seconds: float) -> int:
        for subscriber in subscribers:
            subscriber.wait_for(lambda s=subscriber: len(s.records) > 0, 15, "records")
        before = xread_calls()
        time.sleep(seconds)
        return xread_calls() - before

    one = [Subscriber(b.ws_url("/ws/workers/demo-1?tail=1"))]
    try:
        with_one = reads_during(one, 2)
    finally:
        for subscriber in one:
            subscriber.close()
    many = [Subscriber(b.ws_url("/ws/workers/demo-1?tail=1")) for _ in range(40)]
    try:
        with_many = reads_during(many, 2)
        assert all(not s.gaps and s.end is None for s in many)
    finally:
        for subscriber in many:
            subscriber.close()
    assert with_one > 0
    # One blocking read at a time for the run, whatever the number of subscribers (the rate follows
    # the writer's batches, not the subscribers: 40 subscribers would mean about 40 times as many).
    assert with_many <= with_one * 2 + 10, (with_one, with_many)


def test_a_pattern_on_one_gateway_follows_the_workers_another_gateway_writes(gateway, redis_url):
    from websockets.sync.client import connect

    a = gateway(*_store(redis_url), "--demo", "2", "--demo-rate", "50")
    b = gateway(*_store(redis_url))
    status, _, answer = post(b.port, "/api/workers/demo-local/records", lines(1, 3))
    assert status == 200, answer
    seqs: dict[str, list[int]] = {}
    deadline = time.monotonic() + 30
    with connect(b.ws_url("/ws/streams?workers=demo-*&tail=0"), open_timeout=10) as ws:
        # demo-1 and demo-2 are written by A: B finds them in Redis (its list of runs is read every 5 s).
        while time.monotonic() < deadline and not all(len(seqs.get(w, [])) >= 20 for w in ("demo-1", "demo-2")):
            message = json.loads(ws.recv(timeout=10))
            if message["type"] == "logs":
                seqs.setdefault(message["worker"], []).extend(r["seq"] for r in message["records"])
    for worker in ("demo-1", "demo-2"):
        got = seqs.get(worker, [])
        assert len(got) >= 20, (worker, seqs.keys())
        assert got == list(range(got[0], got[0] + len(got))), f"{worker}: seqs not contiguous"


def test_a_gateway_hands_an_idle_run_back_so_its_publisher_can_continue_it_elsewhere(gateway, redis_url):
    # A gateway that restarted gets its workers' publishing back from nginx (hashed per worker) while
    # the gateway that took them over still holds their leases: it hands a run back once no publisher
    # has been connected to it for --hand-back seconds.
    a = gateway(*_store(redis_url), "--hand-back", "2")
    b = gateway(*_store(redis_url), "--hand-back", "2")
    headers = {"Tailgate-Publisher": "p1"}
    status, _, answer = post(a.port, "/api/workers/job/records", lines(1, 20), {**headers, "Tailgate-Offset": "1"})
    assert status == 200 and answer["offset"] == 20, answer
    epoch = answer["epoch"]
    on_a = Subscriber(a.ws_url("/ws/workers/job?since=0"))
    try:
        on_a.wait_for(lambda: len(on_a.records) >= 20, 15, "20 records on A")
        sent_at = time.monotonic()
        status, headers_b, answer = post(b.port, "/api/workers/job/records", b"", headers)
        assert status == 503 and answer["error"]["code"] == "worker_published_elsewhere", answer

        def accepted():
            status, _, answer = post(b.port, "/api/workers/job/records", b"", headers)
            return answer if status == 200 else None

        answer = wait_until(accepted, 15, 0.2, "gateway B to get the run")
        assert time.monotonic() - sent_at >= 1.0, "A handed the run back before it was idle"
        assert answer["epoch"] == epoch and answer["offset"] == 20, answer
        status, _, answer = post(b.port, "/api/workers/job/records", lines(21, 40), {**headers, "Tailgate-Offset": "21"})
        assert status == 200 and answer["first_seq"] == 21 and answer["epoch"] == epoch, answer
        # A's subscriber follows the run B writes now, on the same connection.
        on_a.wait_for(lambda: len(on_a.records) >= 40, 15, "records 21-40 on A")
        assert [r["seq"] for r in on_a.records] == list(range(1, 41))
        assert on_a.end is None and not on_a.gaps
        assert _redis(redis_url, "GET", "tailgate:{job}:lease").find(f"pid {b.proc.pid}") >= 0
        # And back to A once B has had no publisher for a while: the same run, seqs going on.
        answer = wait_until(lambda: (lambda r: r[2] if r[0] == 200 else None)(post(a.port, "/api/workers/job/records", b"", headers)),
                            15, 0.2, "gateway A to get the run back")
        assert answer["epoch"] == epoch and answer["offset"] == 40, answer
        status, _, answer = post(a.port, "/api/workers/job/records", lines(41, 45), {**headers, "Tailgate-Offset": "41"})
        assert status == 200 and answer["first_seq"] == 41, answer
        on_a.wait_for(lambda: len(on_a.records) >= 45, 15, "records 41-45 on A")
        assert [r["seq"] for r in on_a.records] == list(range(1, 46))
    finally:
        on_a.close()


def test_a_run_handed_back_that_nobody_continues_ends_as_idle(gateway, redis_url):
    a = gateway(*_store(redis_url), "--hand-back", "1", "--idle-stop", "4")
    status, _, answer = post(a.port, "/api/workers/job/records", lines(1, 5), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "1"})
    assert status == 200, answer
    on_a = Subscriber(a.ws_url("/ws/workers/job?since=0"))
    try:
        on_a.wait_for(lambda: on_a.end is not None, 20, "end")
        assert on_a.end["status"] == "idle" and on_a.end["reason"].startswith("idle:"), on_a.end
        assert [r["seq"] for r in on_a.records] == [1, 2, 3, 4, 5]
        assert _redis(redis_url, "HGET", f"tailgate:{{job}}:manifest:{answer['epoch']}", "status").strip() == "idle"
    finally:
        on_a.close()


def test_stopping_a_worker_on_a_gateway_that_only_mirrors_it(gateway, redis_url):
    a = gateway(*_store(redis_url))
    b = gateway(*_store(redis_url))
    status, _, answer = post(a.port, "/api/workers/job/records", lines(1, 10))
    assert status == 200, answer
    on_b = Subscriber(b.ws_url("/ws/workers/job?since=0"))
    try:
        on_b.wait_for(lambda: len(on_b.records) >= 10, 15, "10 records on B")
        # A writes the run: B does not end it for its own subscribers only, it sends the publisher to A.
        status, headers, answer = post(b.port, "/api/workers/job/stop?reason=done")
        assert status == 503 and answer["error"]["code"] == "worker_published_elsewhere", answer
        assert "retry-after" in headers
        assert on_b.end is None
        # Once A is gone (its lease expired), B takes the run over to stop it: the run ends everywhere.
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        answer = wait_until(lambda: (lambda r: r[2] if r[0] == 200 else None)(post(b.port, "/api/workers/job/stop?exit_code=0")),
                            LEASE_TTL + 10, 0.2, "B to stop the run")
        assert answer["stopped"] is True and answer["status"] == "succeeded", answer
        on_b.wait_for(lambda: on_b.end is not None, 15, "end on B")
        assert on_b.end["status"] == "succeeded" and on_b.end["last_seq"] == 10, on_b.end
        assert [r["seq"] for r in on_b.records] == list(range(1, 11))
        assert _redis(redis_url, "HGET", f"tailgate:{{job}}:manifest:{on_b.hello['epoch']}", "status").strip() == "succeeded"
    finally:
        on_b.close()
