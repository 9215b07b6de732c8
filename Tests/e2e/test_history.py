"""Durable history end to end (docs/PROTOCOL.md, "History" and "Publishing exactly once"): real
gateway processes, real files in a data folder, SIGTERM and `kill -9`, restarts on the same port."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ws_subscriber import Subscriber
from nginx_support import wait_until as wait_for

NDJSON = "application/x-ndjson"


def post(port: int, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
         timeout: float = 60) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": NDJSON, **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def lines(first: int, last: int, level: str = "INFO") -> bytes:
    return b"".join(json.dumps({"message": f"line {n}", "level": level}).encode() + b"\n" for n in range(first, last + 1))


def logs(gw, path: str) -> list[dict]:
    result = gw.http(path, timeout=60)
    assert result.status == 200, result.text
    return [json.loads(line) for line in result.text.splitlines() if line]


def kill9(gw):
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(10)


def wait_until(predicate, timeout: float, what: str):
    """Waits until `predicate()` is true (and returns it), failing after `timeout` seconds."""
    return wait_for(predicate, timeout, 0.05, what)


def restart(gateway, old, *args: str):
    """The same gateway again: same port, same data folder, same arguments unless given."""
    return gateway(*(args or old.args), port=old.port)


# ------------------------------------------------------------------------------------------- restarts

def test_a_remote_run_survives_a_restart_and_its_publisher_continues_it(gateway):
    gw = gateway()
    status, answer = post(gw.port, "/api/workers/job/records", lines(1, 30), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "1"})
    assert status == 200 and answer["accepted"] == 30 and answer["offset"] == 30, answer
    epoch = answer["epoch"]
    gw.stop()

    gw = restart(gateway, gw)
    assert "history in" in gw.log() and "1 published from other processes going on" in gw.log()
    # The run goes on at once (its publisher is expected back): running, same epoch, seqs where they were.
    worker = gw.http("/api/workers/job").json()
    assert worker["state"] == "running" and worker["status"] == "running" and worker["last_seq"] == 30, worker
    assert worker["epoch"] == epoch, worker
    assert [r["message"] for r in logs(gw, "/api/workers/job/logs")] == [f"line {n}" for n in range(1, 31)]

    # The publisher asks where it stands, then sends the rest: same run, seqs go on.
    status, answer = post(gw.port, "/api/workers/job/records", b"", {"Tailgate-Publisher": "p1"})
    assert status == 200 and answer["offset"] == 30 and answer["epoch"] == epoch, answer
    status, answer = post(gw.port, "/api/workers/job/records", lines(25, 40), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "25"})
    assert answer["accepted"] == 10 and answer["duplicates"] == 6 and answer["first_seq"] == 31, answer
    records = logs(gw, "/api/workers/job/logs")
    assert [r["seq"] for r in records] == list(range(1, 41))
    assert [r["message"] for r in records] == [f"line {n}" for n in range(1, 41)]
    worker = gw.http("/api/workers/job").json()
    assert worker["status"] == "running" and worker["epoch"] == epoch


def test_subscribers_resume_a_remote_run_after_a_restart_before_its_publisher_is_back(gateway):
    gw = gateway()
    status, answer = post(gw.port, "/api/workers/job/records", lines(1, 30), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "1"})
    assert status == 200 and answer["accepted"] == 30, answer
    epoch = answer["epoch"]
    sub = Subscriber(gw.ws_url("/ws/workers/job?since=0"))
    sub.wait_for(lambda: len(sub.records) == 30, 20, "the first 30 records")
    kill9(gw)
    sub.wait_for(lambda: sub.close_code is not None, 20, "the stream to drop")

    gw = restart(gateway, gw)
    # Back before the publisher: the run is resumed, nothing is replayed twice, and no `end` comes.
    again = Subscriber(gw.ws_url(f"/ws/workers/job?epoch={epoch}&since=25"))
    again.wait_for(lambda: again.hello is not None and len(again.records) == 5, 20, "hello and the 5 records after 25")
    assert again.hello["resumed"] is True and again.hello["epoch"] == epoch and again.hello["state"] == "running", again.hello
    assert [r["seq"] for r in again.records] == [26, 27, 28, 29, 30]
    time.sleep(0.5)
    assert again.end is None and again.close_code is None
    # The publisher comes back and goes on where the gateway stands: the subscriber gets it live.
    status, answer = post(gw.port, "/api/workers/job/records", lines(31, 40), {"Tailgate-Publisher": "p1", "Tailgate-Offset": "31"})
    assert status == 200 and answer["accepted"] == 10 and answer["first_seq"] == 31 and answer["epoch"] == epoch, answer
    again.wait_for(lambda: len(again.records) == 15, 20, "the publisher's next records, live")
    assert [r["message"] for r in again.records] == [f"line {n}" for n in range(26, 41)]
    again.check_invariant()
    assert not again.gaps
    again.close()


def test_a_resumed_remote_run_whose_publisher_never_returns_stops_as_idle(gateway):
    gw = gateway("--idle-stop", "2")
    status, answer = post(gw.port, "/api/workers/gone/records", lines(1, 5))
    assert status == 200, answer
    gw.stop()
    gw = restart(gateway, gw)
    sub = Subscriber(gw.ws_url("/ws/workers/gone?since=0"))
    sub.wait_for(lambda: sub.end is not None, 20, "the idle stop")
    assert len(sub.records) == 5 and sub.end["status"] == "idle" and "idle" in sub.end["reason"], sub.end
    assert gw.http("/api/workers/gone").json()["status"] == "idle"


def test_kill_9_during_ingest_then_resume_gives_every_line_exactly_once(gateway):
    gw = gateway()
    total = 40_000
    body = lines(1, total)
    # A raw streamed body, cut short by kill -9 while it is being published.
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.sendall(b"POST /api/workers/flood/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
                 b"Tailgate-Publisher: flood-1\r\nTailgate-Offset: 1\r\nContent-Length: %d\r\n\r\n" % len(body))
    sent = 0
    while sent < len(body) // 2:
        sent += sock.send(body[sent:sent + 65536])
    wait_until(lambda: gw.http("/api/workers/flood").json().get("last_seq", 0) > 1000, 20, "records to arrive")
    kill9(gw)
    sock.close()

    gw = restart(gateway, gw)
    status, answer = post(gw.port, "/api/workers/flood/records", b"", {"Tailgate-Publisher": "flood-1"})
    assert status == 200, answer
    confirmed = answer["offset"]
    assert 0 < confirmed < total, answer
    # Resend from a little before what the gateway has: those lines are duplicates and are skipped.
    start = max(1, confirmed - 500)
    status, answer = post(gw.port, "/api/workers/flood/records", lines(start, total),
                          {"Tailgate-Publisher": "flood-1", "Tailgate-Offset": str(start)})
    assert status == 200 and answer["offset"] == total, answer
    assert answer["duplicates"] == confirmed - start + 1, answer
    records = logs(gw, "/api/workers/flood/logs")
    assert [r["message"] for r in records] == [f"line {n}" for n in range(1, total + 1)]
    assert [r["seq"] for r in records] == list(range(1, total + 1))


def test_an_in_process_worker_starts_a_new_run_and_the_old_one_is_history(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "200")
    wait_until(lambda: gw.http("/api/workers/demo-1").json()["last_seq"] >= 50, 20, "demo records")
    old_epoch = gw.http("/api/workers/demo-1").json()["epoch"]
    gw.stop()
    gw = restart(gateway, gw)
    runs = gw.http("/api/workers/demo-1/runs").json()["runs"]
    assert len(runs) == 2 and runs[1]["epoch"] == old_epoch, runs
    assert runs[0]["current"] and runs[0]["status"] == "running"
    assert runs[1]["status"] == "interrupted" and runs[1]["records"] >= 50 and not runs[1]["current"], runs[1]
    old = logs(gw, f"/api/workers/demo-1/runs/{old_epoch}/logs")
    assert len(old) == runs[1]["records"] and old[0]["seq"] == 1

    # A stream of the old run replays it and ends.
    sub = Subscriber(gw.ws_url(f"/ws/workers/demo-1/runs/{old_epoch}?since=0"))
    sub.wait_for(lambda: sub.end is not None and sub.close_code is not None, 20, "the end of the old run")
    assert sub.end["status"] == "interrupted" and sub.end["epoch"] == old_epoch
    assert len(sub.records) == len(old) and sub.close_code == 1000
    sub.check_invariant()

    # Resuming the old run on the worker's stream says so, and starts the new run from its start.
    sub = Subscriber(gw.ws_url(f"/ws/workers/demo-1?epoch={old_epoch}&since=20"))
    sub.wait_for(lambda: sub.hello is not None and len(sub.records) > 5, 20, "hello and records")
    assert sub.hello["resumed"] is False and old_epoch in sub.hello["reason"], sub.hello
    assert sub.hello["epoch"] == runs[0]["epoch"] and sub.hello["replay_from"] == 1
    assert sub.records[0]["seq"] == 1
    sub.close()
    sub = Subscriber(gw.ws_url(f"/ws/workers/demo-1?epoch={runs[0]['epoch']}&since=3"))
    sub.wait_for(lambda: sub.hello is not None and len(sub.records) > 0, 20, "hello")
    assert sub.hello["resumed"] is True and sub.hello["replay_from"] == 4
    sub.close()
    # The old run's unknown epoch is a 404 on its own routes.
    assert gw.http("/api/workers/demo-1/runs/zzzz9").status == 404
    assert gw.http("/api/workers/demo-1/runs/NOT-AN-EPOCH").status == 400


def test_a_stopped_worker_stays_listed_with_its_status_and_exit_code(gateway):
    gw = gateway()
    post(gw.port, "/api/workers/build-7/records", lines(1, 5))
    status, answer = post(gw.port, "/api/workers/build-7/stop?exit_code=3")
    assert status == 200 and answer["status"] == "failed" and answer["exit_code"] == 3, answer
    post(gw.port, "/api/workers/build-8/records", lines(1, 2))
    post(gw.port, "/api/workers/build-8/stop?exit_code=0")
    post(gw.port, "/api/workers/build-9/records", lines(1, 2))
    post(gw.port, "/api/workers/build-9/stop?reason=cancelled+by+user")
    assert post(gw.port, "/api/workers/build-9/stop?exit_code=abc")[0] in (400, 404)
    gw.stop()
    gw = restart(gateway, gw)
    workers = {w["id"]: w for w in gw.http("/api/workers").json()["workers"]}
    assert workers["build-7"]["status"] == "failed" and workers["build-7"]["exit_code"] == 3
    assert workers["build-7"]["reason"] == "exited with status 3" and workers["build-7"]["state"] == "stopped"
    assert workers["build-8"]["status"] == "succeeded"
    assert workers["build-9"]["status"] == "stopped" and workers["build-9"]["reason"] == "cancelled by user"
    # Its console still streams the run, which ends.
    sub = Subscriber(gw.ws_url("/ws/workers/build-7?tail=100"))
    sub.wait_for(lambda: sub.end is not None, 20, "end")
    assert [r["message"] for r in sub.records] == [f"line {n}" for n in range(1, 6)]
    assert sub.end["exit_code"] == 3 and sub.end["status"] == "failed"
    # A new publish starts a new run.
    status, answer = post(gw.port, "/api/workers/build-7/records", lines(1, 1))
    runs = gw.http("/api/workers/build-7/runs").json()["runs"]
    assert len(runs) == 2 and runs[0]["status"] == "running" and runs[1]["status"] == "failed"


# ---------------------------------------------------------------------------------- beyond the ring

def test_replay_and_export_beyond_the_ring_read_from_disk(gateway):
    gw = gateway("--ring-records", "100")
    for first in range(1, 5001, 1000):
        post(gw.port, "/api/workers/deep/records", lines(first, first + 999, "WARNING" if first == 2001 else "INFO"))
    worker = gw.http("/api/workers/deep").json()
    assert worker["first_seq"] == 1 and worker["last_seq"] == 5000 and worker["ring_records"] == 100, worker
    sub = Subscriber(gw.ws_url("/ws/workers/deep?since=0"))
    sub.wait_for(lambda: sub.covered_to >= 5000, 30, "the whole run")
    assert not sub.gaps and [r["seq"] for r in sub.records] == list(range(1, 5001))
    sub.check_invariant()
    sub.close()
    assert gw.http("/api/stats").json()["stored_chunks_sent"] > 0
    assert len(logs(gw, "/api/workers/deep/logs")) == 5000
    assert [r["seq"] for r in logs(gw, "/api/workers/deep/logs?since=10&limit=5")] == [11, 12, 13, 14, 15]
    assert [r["seq"] for r in logs(gw, "/api/workers/deep/logs?limit=3")] == [4998, 4999, 5000]
    warnings = logs(gw, "/api/workers/deep/logs?level=warning")
    assert [r["seq"] for r in warnings] == list(range(2001, 3001))
    assert [r["seq"] for r in logs(gw, "/api/workers/deep/logs?level=WARNING&limit=2")] == [2999, 3000]
    middle = logs(gw, "/api/workers/deep/logs")[2500]["timestamp"]
    later = logs(gw, f"/api/workers/deep/logs?from={middle}")
    assert later[0]["timestamp"] >= middle and later[-1]["seq"] == 5000
    earlier = logs(gw, f"/api/workers/deep/logs?to={middle}")
    assert earlier[0]["seq"] == 1 and all(r["timestamp"] < middle for r in earlier)
    text = gw.http("/api/workers/deep/logs?format=text&limit=1").text
    assert text.endswith("INFO    line 5000\n"), text
    assert gw.http("/api/workers/deep/logs?level=LOUD").status == 400
    assert gw.http("/api/workers/deep/logs?from=yesterday").status == 400


# -------------------------------------------------------------------------------------------- recovery

def test_a_torn_tail_and_lost_indexes_are_recovered(gateway):
    gw = gateway()
    post(gw.port, "/api/workers/torn/records", lines(1, 3000), {"Tailgate-Publisher": "t", "Tailgate-Offset": "1"})
    kill9(gw)
    run_dir = next((gw.data_dir / "runs" / "torn").iterdir())
    segments = sorted(run_dir.glob("*.seg"))
    assert segments, list(run_dir.iterdir())
    with open(segments[-1], "ab") as f:
        f.write(b"\x00\x17garbage of a half-written frame")
    for index in run_dir.glob("*.idx"):
        index.unlink()
    gw = restart(gateway, gw)
    records = logs(gw, "/api/workers/torn/logs?since=1234&limit=3")
    assert [r["seq"] for r in records] == [1235, 1236, 1237]
    status, answer = post(gw.port, "/api/workers/torn/records", lines(3001, 3002), {"Tailgate-Publisher": "t", "Tailgate-Offset": "3001"})
    assert answer["first_seq"] == 3001 and answer["offset"] == 3002, answer
    assert [r["message"] for r in logs(gw, "/api/workers/torn/logs")] == [f"line {n}" for n in range(1, 3003)]


def test_retention_by_bytes_deletes_the_oldest_runs(gateway):
    gw = gateway("--retain-bytes", "1MiB", "--retention", "0")  # stopped workers leave memory at once
    big = lines(1, 4000)  # about 400 KB stored per run
    for n in range(6):
        post(gw.port, f"/api/workers/old-{n}/records", big)
        post(gw.port, f"/api/workers/old-{n}/stop")
        time.sleep(0.05)

    def kept():
        return {w["id"] for w in gw.http("/api/workers").json()["workers"]}

    wait_until(lambda: "old-0" not in kept(), 30, "the oldest run to be deleted")
    assert "old-5" in kept()
    stats = gw.http("/api/stats").json()["store"]
    assert stats["stored_bytes"] <= 2 << 20, stats


def test_retention_by_age_deletes_finished_runs(gateway):
    gw = gateway("--retain-days", "0.00002", "--retention", "0")  # about 1.7 s
    post(gw.port, "/api/workers/brief/records", lines(1, 10))
    post(gw.port, "/api/workers/brief/stop")
    post(gw.port, "/api/workers/alive/records", lines(1, 10))
    wait_until(lambda: gw.http("/api/workers/brief/runs").status == 404, 30, "the finished run to expire")
    assert gw.http("/api/workers/alive").status == 200


# ---------------------------------------------------------------------------------------- a full disk

def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_keeps_streaming_and_recovers(gateway, tmp_path):
    disk = tmp_path / "small-disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "2m"):
        pytest.skip("needs root to mount a small tmpfs (mount -t tmpfs)")
    try:
        gw = gateway("--data-dir", str(disk / "data"))
        post(gw.port, "/api/workers/full/records", lines(0, 0))
        sub = Subscriber(gw.ws_url("/ws/workers/full?tail=0"))
        sub.wait_for(lambda: sub.hello is not None, 10, "hello")
        filler = disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "count=100"], capture_output=True)
        published = 0
        for first in range(1, 20001, 2000):
            status, answer = post(gw.port, "/api/workers/full/records", lines(first, first + 1999))
            assert status == 200 and answer["accepted"] == 2000, answer
            published = first + 1999
        wait_until(lambda: gw.http("/api/stats").json()["store"]["state"] == "failed", 20, "the store to fail")
        store = gw.http("/api/stats").json()["store"]
        assert store["last_error"] and store["failed_writes"] > 0, store
        # Streaming went on from memory: every record reached the subscriber.
        sub.wait_for(lambda: sub.covered_to >= published, 20, "every record live")
        assert not sub.gaps
        assert "the store cannot write" in gw.log()
        filler.unlink()
        wait_until(lambda: (post(gw.port, "/api/workers/full/records", lines(1, 10))[0] == 200
                            and gw.http("/api/stats").json()["store"]["state"] == "ok"), 30, "the store to recover")
        sub.close()
        gw.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ---------------------------------------------------------------------------------------- bad input

def test_bad_publisher_headers_are_refused(gateway):
    gw = gateway()
    for headers in ({"Tailgate-Offset": "1"}, {"Tailgate-Publisher": "bad id!"},
                    {"Tailgate-Publisher": "p", "Tailgate-Offset": "0"}, {"Tailgate-Publisher": "p", "Tailgate-Offset": "-3"},
                    {"Tailgate-Publisher": "p", "Tailgate-Offset": "9007199254740992"}):
        status, answer = post(gw.port, "/api/workers/x/records", lines(1, 1), headers)
        assert status == 400 and answer["error"]["code"] == "bad_publisher", (headers, answer)
