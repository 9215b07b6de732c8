"""Many workers on one WebSocket (`GET /ws/streams`, docs/PROTOCOL.md "Many workers on one socket"),
against a real gateway process, read by Python `websockets` clients.

Checked everywhere, per worker: after that worker's `hello`, its `logs` and `gap` messages cover exactly
replay_from, replay_from+1, ... (no duplicates, no reordering, no silent holes), whatever the reading speed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from nginx_support import free_port, wait_until

SECRET = b"multiplex secret 0123456789abcdef"


# ----------------------------------------------------------------------------------------- helpers

class Transcripts:
    """Every message of a many-worker socket, checked per worker against the invariant as it arrives."""

    def __init__(self):
        self.hello: dict[str, dict] = {}
        self.next_seq: dict[str, int] = {}
        self.records: dict[str, list[int]] = {}
        self.gaps: dict[str, list[tuple[int, int]]] = {}
        self.ended: dict[str, dict] = {}
        self.others: list[dict] = []
        self.hellos = 0
        self.order: list[str] = []  # the worker of each logs message, in arrival order

    def take(self, raw) -> dict:
        assert isinstance(raw, str), f"binary frame: {raw[:80]!r}"
        message = json.loads(raw)
        kind, worker = message.get("type"), message.get("worker")
        assert isinstance(worker, str), f"message without worker: {message}"
        if kind == "hello":
            assert worker not in self.next_seq or worker in self.ended, f"second hello of {worker}: {message}"
            self.hellos += 1
            self.hello[worker] = message
            self.next_seq[worker] = message["replay_from"]
            self.records.setdefault(worker, [])
            self.gaps.setdefault(worker, [])
            self.ended.pop(worker, None)
        elif kind in ("logs", "gap", "end"):
            assert worker in self.next_seq and worker not in self.ended, f"{kind} of {worker} outside a subscription: {message}"
            if kind == "logs":
                assert message["records"], "empty logs message"
                self.order.append(worker)
                for record in message["records"]:
                    assert record["seq"] == self.next_seq[worker], (
                        f"{worker}: expected seq {self.next_seq[worker]}, got {record['seq']} (gaps {self.gaps[worker][-3:]})")
                    self.next_seq[worker] += 1
                    self.records[worker].append(record["seq"])
            elif kind == "gap":
                assert message["from"] == self.next_seq[worker] and message["to"] >= message["from"], (
                    f"{worker}: gap {message} where {self.next_seq[worker]} was due")
                self.gaps[worker].append((message["from"], message["to"]))
                self.next_seq[worker] = message["to"] + 1
            else:
                assert message["last_seq"] == self.next_seq[worker] - 1, f"{worker}: end {message} after {self.next_seq[worker] - 1}"
                self.ended[worker] = message
        else:
            self.others.append(message)
        return message

    def covered(self, worker: str) -> int:
        """The last seq covered for `worker` (replay_from - 1 before anything)."""
        return self.next_seq.get(worker, 1) - 1


def open_socket(url: str, **options):
    settings = dict(compression=None, max_size=2 ** 24, open_timeout=10, close_timeout=5)
    settings.update(options)
    return connect(url, **settings)


async def read_until(ws, transcripts: Transcripts, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out; covered {transcripts.next_seq}, others {transcripts.others[-3:]}")
        transcripts.take(await asyncio.wait_for(ws.recv(), remaining))


async def expect_silence(ws, seconds: float) -> list:
    """Messages that arrive within `seconds` (usually none expected)."""
    got = []
    try:
        while True:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
    except asyncio.TimeoutError:
        return got


def publish(port: int, worker: str, count: int, start: int = 1) -> dict:
    """Publishes `count` NDJSON records to `worker` over HTTP and returns the answer."""
    import http.client

    body = b"".join(json.dumps({"message": f"record {n}", "level": "INFO"}).encode() + b"\n"
                    for n in range(start, start + count))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", f"/api/workers/{worker}/records", body=body,
                           headers={"Content-Type": "application/x-ndjson"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        return answer
    finally:
        connection.close()


def publish_until(port: int, workers: list[str], stop: threading.Event, batch: int = 50, size: int = 3000) -> None:
    """Publishes records of about `size` bytes to each of `workers` in turn, as fast as it can, until `stop`."""
    import http.client

    padding = "x" * size
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    while not stop.is_set():
        for worker in workers:
            body = b"".join(json.dumps({"message": f"record {n + i} {padding}"}).encode() + b"\n" for i in range(batch))
            connection.request("POST", f"/api/workers/{worker}/records", body=body,
                               headers={"Content-Type": "application/x-ndjson"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200
        n += batch
    connection.close()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(workers: list[str], scope: str = "read", ttl: float = 3600) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": "default"}
    claims = {"workers": workers, "scope": scope, "exp": int(time.time() + ttl)}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + b64url(hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest())


# ------------------------------------------------------------- the invariant under a slow reader

def test_three_workers_fast_publisher_slow_reader_keep_the_invariant_with_explicit_gaps(gateway):
    # Memory only and a small ring: what a stalled reader misses is gone, so it must come as `gap`.
    gw = gateway("--memory-only", "--ring-records", "100")
    workers = ["fast-1", "fast-2", "fast-3"]
    for worker in workers:
        publish(gw.port, worker, 1)
    stop = threading.Event()
    publisher = threading.Thread(target=publish_until, args=(gw.port, workers, stop), daemon=True)
    url = gw.ws_url("/ws/streams?workers=fast-*&tail=0")

    async def main():
        fast, slow = Transcripts(), Transcripts()
        # max_queue=1: the slow client stops reading its socket as soon as one message waits.
        async with open_socket(url) as fast_ws, open_socket(url, max_queue=1) as slow_ws:
            await read_until(slow_ws, slow, lambda: len(slow.hello) == 3)
            await read_until(fast_ws, fast, lambda: len(fast.hello) == 3)
            publisher.start()
            # The slow reader stops for 1.5 s at a time, twice: its socket buffers fill and the ring (100
            # records) moves on. The fast reader goes on meanwhile.
            for _ in range(2):
                before = {w: fast.covered(w) for w in workers}
                deadline = time.monotonic() + 1.5
                while time.monotonic() < deadline:
                    fast.take(await asyncio.wait_for(fast_ws.recv(), 5))
                assert all(fast.covered(w) > before[w] + 300 for w in workers), (
                    f"the fast reader was held back: {before} -> {fast.next_seq}")
                for _ in range(20):
                    slow.take(await asyncio.wait_for(slow_ws.recv(), 5))
            stop.set()
            publisher.join(10)
            last = {w: json.loads(gw.http(f"/api/workers/{w}").text)["last_seq"] for w in workers}
            await read_until(slow_ws, slow, lambda: all(slow.covered(w) == last[w] for w in workers), timeout=20)
            await read_until(fast_ws, fast, lambda: all(fast.covered(w) == last[w] for w in workers), timeout=20)
        return slow, fast

    try:
        slow, fast = asyncio.run(main())
    finally:
        stop.set()
    assert slow.others == [] and fast.others == []
    gapped = [w for w in slow.gaps if slow.gaps[w]]
    assert gapped, f"the slow reader never fell out of the ring: {slow.next_seq}"
    for worker in workers:
        # Explicit gaps and records together cover every seq exactly once, up to the last one.
        covered = sorted(slow.records[worker] + [s for a, b in slow.gaps[worker] for s in range(a, b + 1)])
        start = slow.hello[worker]["replay_from"]
        assert covered == list(range(start, start + len(covered))) and covered[-1] == fast.covered(worker)


# ----------------------------------------------------------------------------------- messages

def test_subscribe_and_unsubscribe_on_the_open_socket(gateway):
    gw = gateway("--demo", "3", "--demo-rate", "200", "--memory-only")

    async def main():
        t = Transcripts()
        async with open_socket(gw.ws_url("/ws/streams")) as ws:
            assert await expect_silence(ws, 0.3) == [], "a socket with no subscription sends nothing"
            await ws.send(json.dumps({"type": "subscribe", "workers": ["demo-1", "demo-2"], "tail": 5}))
            await read_until(ws, t, lambda: all(len(t.records.get(w, [])) >= 10 for w in ("demo-1", "demo-2")))
            assert t.hello["demo-1"]["replay_from"] == t.hello["demo-1"]["last_seq"] - 4
            await ws.send(json.dumps({"type": "subscribe", "workers": ["demo-2", "demo-3"], "since": 3}))
            await read_until(ws, t, lambda: any(m["type"] == "error" for m in t.others) and "demo-3" in t.hello)
            assert [(m["worker"], m["code"]) for m in t.others] == [("demo-2", "already_subscribed")]
            assert t.hello["demo-3"]["replay_from"] == 4
            await ws.send(json.dumps({"type": "unsubscribe", "workers": ["demo-1", "demo-3"]}))
            await read_until(ws, t, lambda: sum(m["type"] == "unsubscribed" for m in t.others) == 2)
            after = []
            deadline = time.monotonic() + 0.7
            while time.monotonic() < deadline:
                after.append(t.take(await asyncio.wait_for(ws.recv(), 5)))
            assert {m["worker"] for m in after} == {"demo-2"}, "nothing of an unsubscribed worker follows unsubscribed"
            assert sorted(m["worker"] for m in t.others if m["type"] == "unsubscribed") == ["demo-1", "demo-3"]
        return t

    asyncio.run(main())


def test_prefix_pattern_follows_workers_that_appear_later_and_their_new_runs(gateway):
    gw = gateway("--memory-only")
    publish(gw.port, "job-early", 5)

    async def main():
        t = Transcripts()
        async with open_socket(gw.ws_url("/ws/streams?workers=job-*&tail=2")) as ws:
            await read_until(ws, t, lambda: t.covered("job-early") == 5)
            assert t.hello["job-early"]["replay_from"] == 4
            publish(gw.port, "other-1", 3)
            publish(gw.port, "job-late", 7)
            await read_until(ws, t, lambda: t.covered("job-late") == 7, timeout=5)
            assert t.hello["job-late"]["replay_from"] == t.hello["job-late"]["first_seq"] == 1
            first_epoch = t.hello["job-late"]["epoch"]
            stop = gw.http("/api/workers/job-late/stop", method="POST")
            assert stop.status == 200, stop.text
            await read_until(ws, t, lambda: "job-late" in t.ended)
            # A new run of a matched worker is subscribed again, from its first record.
            publish(gw.port, "job-late", 4)
            await read_until(ws, t, lambda: t.hello["job-late"]["epoch"] != first_epoch and t.covered("job-late") == 4, timeout=5)
            assert t.hello["job-late"]["replay_from"] == 1
            assert "other-1" not in t.hello
            # Unsubscribing the pattern removes every worker it matched and stops following it.
            await ws.send(json.dumps({"type": "unsubscribe", "workers": ["job-*"]}))
            await read_until(ws, t, lambda: sum(m["type"] == "unsubscribed" for m in t.others) == 2)
            publish(gw.port, "job-third", 2)
            assert await expect_silence(ws, 1.6) == []
        return t

    asyncio.run(main())


def test_resume_after_a_gateway_restart_has_no_gaps_and_no_duplicates(gateway, tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    gw = gateway("--data-dir", str(data_dir), port=port)
    workers = ["res-1", "res-2", "res-3"]
    for worker in workers:
        publish(gw.port, worker, 40)

    async def first_part():
        t = Transcripts()
        async with open_socket(gw.ws_url("/ws/streams?workers=res-1,res-2,res-3&tail=100")) as ws:
            await read_until(ws, t, lambda: all(t.covered(w) == 40 for w in workers))
            for worker in workers:
                publish(gw.port, worker, 20, start=41)
            await read_until(ws, t, lambda: all(t.covered(w) >= 45 for w in workers))
            stopping = asyncio.create_task(asyncio.to_thread(gw.stop))  # the gateway closes the socket (1001)
            try:
                while True:
                    t.take(await asyncio.wait_for(ws.recv(), 10))
            except ConnectionClosed as closed:
                assert closed.rcvd is None or closed.rcvd.code == 1001
            assert await stopping == 0
        return t

    before = asyncio.run(first_part())
    gw2 = gateway("--data-dir", str(data_dir), port=port)
    for worker in workers:
        publish(gw2.port, worker, 30, start=61)  # the remote runs continue: same epoch, seqs 61..90
    resume = ",".join(f"{w}:{before.hello[w]['epoch']}:{before.covered(w)}" for w in workers)

    async def second_part():
        t = Transcripts()
        async with open_socket(gw2.ws_url(f"/ws/streams?resume={resume}")) as ws:
            await read_until(ws, t, lambda: all(t.covered(w) == 90 for w in workers))
        return t

    after = asyncio.run(second_part())
    for worker in workers:
        assert after.hello[worker]["resumed"] is True, after.hello[worker]
        assert after.gaps[worker] == [] and before.gaps[worker] == []
        assert before.records[worker] + after.records[worker] == list(range(1, 91))


# ------------------------------------------------------------------------------------- errors

def test_errors_on_the_socket_and_refusals_before_the_upgrade(gateway, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    gw = gateway("--memory-only", "--auth-secret-file", str(secret), "--max-stream-subscriptions", "2")
    for worker in ("team-a-1", "team-a-2", "team-a-3", "team-b-1"):
        publish(gw.port, worker, 3)
    token = sign(["team-a-1", "team-a-2", "team-a-3", "team-a-9"])  # team-a-9 does not exist

    async def main():
        # Refused before the upgrade, with the API's JSON.
        for path, status, code in [(f"/ws/streams?workers=team-a-1", 401, "auth_required"),
                                   (f"/ws/streams?workers=bad%20id&access_token={token}", 400, "bad_parameter"),
                                   (f"/ws/streams?resume=team-a-1:1&access_token={token}", 400, "bad_parameter"),
                                   (f"/ws/streams?tail=-1&access_token={token}", 400, "bad_parameter")]:
            with pytest.raises(InvalidStatus) as refused:
                async with open_socket(gw.ws_url(path)):
                    pass
            assert refused.value.response.status_code == status, path
            assert json.loads(refused.value.response.body)["error"]["code"] == code, path
        t = Transcripts()
        async with open_socket(gw.ws_url(f"/ws/streams?workers=team-b-1,team-a-9,team-a-1&access_token={token}")) as ws:
            await read_until(ws, t, lambda: "team-a-1" in t.hello and len(t.others) == 2)
            assert {(m["worker"], m["code"]) for m in t.others} == {("team-b-1", "worker_not_allowed"), ("team-a-9", "worker_not_found")}
            # `*` is the token's workers: team-b-1 is left out without a word; the socket's limit is 2.
            await ws.send(json.dumps({"type": "subscribe", "workers": ["*"], "tail": 0}))
            await read_until(ws, t, lambda: len(t.others) == 3)
            assert len(t.hello) == 2 and set(t.hello) <= {"team-a-1", "team-a-2", "team-a-3"}
            # At the limit, one error names the pattern (not each worker it matches), and the same
            # pattern again, many times, answers nothing: the next answer is the probe's.
            assert t.others[2]["code"] == "too_many_subscriptions" and t.others[2]["worker"] == "*"
            for _ in range(50):
                await ws.send(json.dumps({"type": "subscribe", "workers": ["*"], "tail": 0}))
            await ws.send(json.dumps({"type": "subscribe", "workers": ["team-a-9"]}))
            await read_until(ws, t, lambda: len(t.others) == 4)
            assert (t.others[3]["worker"], t.others[3]["code"]) == ("team-a-9", "worker_not_found"), t.others[3:]
            # A message the protocol does not know closes the socket with 1007.
            await ws.send(json.dumps({"type": "subscribe", "workers": ["team-a-1"], "tail": -5}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd.code == 1007 and "tail" in closed.value.rcvd.reason
        # Messages over 64 KiB close with 1009; up to it they are read.
        async with open_socket(gw.ws_url(f"/ws/streams?access_token={token}")) as ws:
            big = json.dumps({"type": "unsubscribe", "workers": ["team-a-1"] * 5000})
            assert 60_000 < len(big) < 65_536
            await ws.send(big)
            assert await expect_silence(ws, 0.3) == []
            await ws.send(json.dumps({"type": "unsubscribe", "workers": ["team-a-1"] * 6000}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd.code == 1009

    asyncio.run(main())
    stats = gw.http("/api/stats", headers={"Authorization": f"Bearer {sign(['*'])}"}).json()
    assert stats["refusals"] >= 7  # 4 refused upgrades and 3 refused subscriptions


# -------------------------------------------------------------------------------- compression

def test_permessage_deflate_compresses_each_batch_once_and_names_the_worker(gateway):
    gw = gateway("--demo", "2", "--demo-rate", "500", "--memory-only")

    async def main():
        t1, t2 = Transcripts(), Transcripts()
        url = gw.ws_url("/ws/streams?workers=demo-1,demo-2&tail=200")
        async with connect(url, max_size=2 ** 24) as ws1, connect(url, max_size=2 ** 24) as ws2:
            for ws in (ws1, ws2):
                assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
            await read_until(ws1, t1, lambda: all(len(t1.records.get(w, [])) >= 400 for w in ("demo-1", "demo-2")))
            await read_until(ws2, t2, lambda: all(len(t2.records.get(w, [])) >= 400 for w in ("demo-1", "demo-2")))
        return t1, t2

    asyncio.run(main())
    stats = gw.http("/api/stats").json()
    assert stats["deflate_compressions"] > 0 and stats["deflate_compressed_bytes"] < stats["deflate_raw_bytes"]


# ---------------------------------------------------------------------------------- the flag

@pytest.mark.parametrize("source", ["environment", "config file"])
def test_max_stream_subscriptions_from_the_environment_or_a_config_file(gateway, tmp_path, monkeypatch, source):
    if source == "environment":
        monkeypatch.setenv("TAILGATE_MAX_STREAM_SUBSCRIPTIONS", "2")
        gw = gateway("--memory-only")
    else:
        config = tmp_path / "tailgate.conf"
        config.write_text("# the socket's limit\nmax-stream-subscriptions = 2\n")
        gw = gateway("--memory-only", "--config", str(config))
    for worker in ("cap-1", "cap-2", "cap-3"):
        publish(gw.port, worker, 1)

    async def main():
        t = Transcripts()
        async with open_socket(gw.ws_url("/ws/streams?workers=cap-1,cap-2,cap-3")) as ws:
            await read_until(ws, t, lambda: len(t.hello) == 2 and t.others)
        return t

    t = asyncio.run(main())
    assert sorted(t.hello) == ["cap-1", "cap-2"] and [(m["worker"], m["code"]) for m in t.others] == [("cap-3", "too_many_subscriptions")]


# ------------------------------------------------------------------------------ from the store

def test_records_that_left_the_ring_come_from_the_store_for_every_worker_in_turn(gateway):
    # A ring of 100 records: 2,900 of each worker's 3,000 are read from disk, one read in flight per socket.
    gw = gateway("--ring-records", "100")
    workers = ["disk-1", "disk-2", "disk-3"]
    for worker in workers:
        publish(gw.port, worker, 3000)

    async def main():
        t = Transcripts()
        async with open_socket(gw.ws_url("/ws/streams?workers=disk-*&tail=3000")) as ws:
            await read_until(ws, t, lambda: all(t.covered(w) == 3000 for w in workers) and len(t.hello) == 3)
        return t

    t = asyncio.run(main())
    for worker in workers:
        assert t.hello[worker]["replay_from"] == 1 and t.gaps[worker] == []
        assert t.records[worker] == list(range(1, 3001))
    assert gw.http("/api/stats").json()["stored_chunks_sent"] > 3
    # In turn: every worker's catch-up has begun before any worker's has ended.
    first_done = min(max(i for i, w in enumerate(t.order) if w == worker) for worker in workers)
    assert all(t.order.index(worker) < first_done for worker in workers), t.order[:40]


# ------------------------------------------------------------------------------- token expiry

def test_an_expiring_token_closes_the_socket_with_1008_and_ends_an_event_stream(gateway, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    gw = gateway("--memory-only", "--auth-secret-file", str(secret))
    publish(gw.port, "exp-1", 3)
    token = sign(["exp-1"], ttl=2)
    expires = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
    import socket

    events = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    events.sendall(f"GET /api/streams/events?workers=exp-1&access_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

    async def main():
        t = Transcripts()
        async with open_socket(gw.ws_url(f"/ws/streams?workers=exp-*&access_token={token}")) as ws:
            await read_until(ws, t, lambda: t.covered("exp-1") == 3)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    t.take(await asyncio.wait_for(ws.recv(), 10))
            assert closed.value.rcvd.code == 1008
        return time.time()

    closed_at = asyncio.run(main())
    assert expires - 0.5 <= closed_at <= expires + 3
    received = b""
    while chunk := events.recv(65536):
        received += chunk
    events.close()
    assert b"200 OK" in received and b'"worker":"exp-1"' in received
    assert time.time() <= expires + 4
