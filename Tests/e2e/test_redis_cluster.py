"""Three gateways on one Redis behind a real nginx (issue 18, "Done when"; docs/DEPLOY.md, "Several
gateways on one Redis"): a real `redis-server`, three `tailgate serve --store redis://… --lease-ttl 2`
processes on loopback ports (A runs the in-process worker `demo-1`; each publishes its own log lines as
`gw-a`, `gw-b`, `gw-c`: in-process ids are distinct per gateway), and nginx rendered from
deploy/nginx/site-gateways.conf.template in front of them.

- records published in-process on A and over HTTP through nginx reach subscribers of B and C (connected
  to them directly) with the same seqs and the same record bytes as A's;
- a subscriber of B resumes on C (`epoch` + `since`) after B is killed with `kill -9`: no gap, no duplicate;
- `tailgate run` through nginx survives a `kill -9` of the gateway holding its worker's writer lease:
  every line exactly once in the history;
- `/api/workers` is the same fleet (ids, epochs, statuses) on every gateway;
- the template: streams spread over the gateways (least_conn), a worker's publishing always reaches one
  gateway (hash), the one holding its lease in Redis.

Gateways talk to nginx as in test_nginx.py: nginx connects from 127.0.0.2 (`--trusted-proxy`), test
clients publish from 127.0.0.1 (`--publish-from`), so relayed publishes count as local ones.
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from nginx_support import (LOCAL_PUBLISHERS, PROXY_CIDR, Nginx, nginx, receive_json, refusal, request,  # noqa: F401
                           stream, wait_until)
from test_redis_lease import lines, redis_url  # noqa: F401  (nginx, redis_url: fixtures)

# Not imported from conftest: under a whole-suite run the name `conftest` may be the browser suite's.
REPO_ROOT = Path(__file__).resolve().parents[2]

LEASE_TTL = 2           # --lease-ttl, seconds
MAINTENANCE = 5.0       # the Redis store's maintenanceInterval: another gateway's runs appear within it
WAIT = 15.0             # bound of every wait for records to arrive
NAMES = ("a", "b", "c")


@dataclass
class Cluster:
    redis_port: int
    gateways: dict[str, Gateway]
    proxy: Nginx

    def __getitem__(self, name: str) -> Gateway:
        return self.gateways[name]

    def by_pid(self, pid: int) -> str:
        return next(name for name, gw in self.gateways.items() if gw.proc.pid == pid)

    def by_port(self, port: int) -> str:
        return next(name for name, gw in self.gateways.items() if gw.port == port)

    def redis(self, *command: str) -> str:
        result = subprocess.run([_redis_cli(), "-p", str(self.redis_port), "--raw", *command],
                                capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr
        return result.stdout.rstrip("\n")

    def lease_holder(self, worker: str) -> str | None:
        """The gateway (a, b, c) holding `worker`'s writer lease, from the lease's value in Redis
        ("<16 hex> 127.0.0.1:PORT, pid N"), or None when nobody holds it."""
        value = self.redis("GET", f"tailgate:{{{worker}}}:lease")
        if not value:
            return None
        match = re.search(r"pid (\d+)", value)
        assert match, f"lease value without a pid: {value!r}"
        return self.by_pid(int(match[1]))

    def kill(self, name: str) -> None:
        gw = self.gateways[name]
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(10)

    def gateways_log(self) -> list[str]:
        path = self.proxy.prefix / "logs" / "gateways.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []


def _redis_cli() -> str:
    found = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    return found


@pytest.fixture
def cluster(gateway, nginx, redis_url):  # noqa: F811 (the imported fixtures)
    """Redis, gateways A (with demo-1), B and C on it, and nginx (site-gateways) in front."""
    if not shutil.which(_redis_cli()):
        pytest.skip("redis-cli not found (installed with redis-server by scripts/test.sh)")
    common = ("--store", redis_url, "--lease-ttl", str(LEASE_TTL),
              "--trusted-proxy", PROXY_CIDR, "--publish-from", LOCAL_PUBLISHERS)
    gateways = {
        "a": gateway(*common, "--self-worker", "gw-a", "--demo", "1", "--demo-rate", "50"),
        "b": gateway(*common, "--self-worker", "gw-b"),
        "c": gateway(*common, "--self-worker", "gw-c"),
    }
    servers = " ".join(f"server 127.0.0.1:{gw.port};" for gw in gateways.values())
    proxy = nginx(gateways["a"].port, ("site-gateways.conf.template",
                                       {"TG_GATEWAYS": servers, "TG_ACCESS_LOG": "logs/gateways.log"}))
    return Cluster(int(redis_url.rsplit(":", 1)[1]), gateways, proxy)


# --------------------------------------------------------------------------- helpers

def record_texts(message: str) -> list[str]:
    """The exact JSON text of each record of a `logs` message, as the gateway sent it."""
    decoder = json.JSONDecoder()
    index = message.index('"records":[') + len('"records":[')
    texts = []
    while True:
        while message[index] in " ,":
            index += 1
        if message[index] == "]":
            return texts
        _, end = decoder.raw_decode(message, index)
        texts.append(message[index:end])
        index = end


class Follower:
    """One WebSocket subscriber on one gateway (connected to it directly): keeps each record's bytes by
    seq and checks the stream's invariant (seqs from replay_from on, no gap, no duplicate, no end)."""

    def __init__(self, cluster: Cluster, name: str, path: str):
        self.gateway, self.name, self.path = cluster[name], name, path
        self.hello: dict | None = None
        self.records: dict[int, str] = {}
        self.last = 0

    @property
    def where(self) -> str:
        return f"{self.path} on gateway {self.name.upper()}"

    async def follow(self, ws, through: int, timeout: float = WAIT) -> None:
        """Reads `hello` (first time) and records until seq `through` has arrived."""
        deadline = time.monotonic() + timeout
        if self.hello is None:
            self.hello = await receive_json(ws, timeout)
            assert self.hello["type"] == "hello", f"{self.where}: {self.hello}"
            self.last = self.hello["replay_from"] - 1
        while self.last < through:
            remaining = deadline - time.monotonic()
            try:
                text = await asyncio.wait_for(ws.recv(), max(0.01, remaining))
            except asyncio.TimeoutError:
                raise AssertionError(f"{self.where}: records up to seq {self.last} within {timeout:.0f} s, "
                                     f"waited for {through} (hello {self.hello})") from None
            message = json.loads(text)
            assert message["type"] == "logs", f"{self.where}: after seq {self.last}: {text[:300]}"
            for record_text in record_texts(text):
                seq = json.loads(record_text)["seq"]
                assert seq == self.last + 1, f"{self.where}: seq {seq} after {self.last} (gap or duplicate)"
                self.records[seq] = record_text
                self.last = seq

    async def run(self, through: int, query: str = "?since=0", timeout: float = WAIT) -> "Follower":
        try:
            async with stream(self.gateway.ws_url(self.path + query), port=self.gateway.port) as ws:
                await self.follow(ws, through, timeout)
        except InvalidStatus as error:
            raise AssertionError(f"{self.path}{query} on gateway {self.name.upper()}: refused {refusal(error)}") from None
        return self


def last_seq(gw: Gateway, worker: str) -> int:
    answer = gw.http(f"/api/workers/{worker}")
    assert answer.status == 200, f"{worker} on port {gw.port}: {answer.status} {answer.text}"
    return answer.json()["last_seq"]


def export(gw: Gateway, worker: str) -> list[str]:
    """The current run's records as the gateway exports them (NDJSON lines, bytes as stored)."""
    answer = gw.http(f"/api/workers/{worker}/logs", timeout=30)
    assert answer.status == 200, f"export of {worker} from port {gw.port}: {answer.status} {answer.text}"
    return [line for line in answer.text.split("\n") if line]


def fleet(gw: Gateway) -> list[tuple[str, str, str]]:
    answer = gw.http("/api/workers")
    assert answer.status == 200, answer.text
    return sorted((w["id"], w["epoch"], w["status"]) for w in answer.json()["workers"])


def upstreams(cluster: Cluster, log_line: str) -> list[str]:
    """The gateways (a, b, c) nginx tried for one request, in order, from site-gateways' log format."""
    tried = log_line.split(" upstream=")[1].split(" upstream_status=")[0]
    return [cluster.by_port(int(port)) for port in re.findall(r"127\.0\.0\.1:(\d+)", tried)]


def publish_through_nginx(cluster: Cluster, worker: str, first: int, last: int, publisher: str = "p1"):
    reply = request(cluster.proxy.port, f"/api/workers/{worker}/records", method="POST",
                    headers={"Content-Type": "application/x-ndjson", "Tailgate-Publisher": publisher,
                             "Tailgate-Offset": str(first)},
                    body=lines(first, last), timeout=30)
    assert reply.status == 200, f"publishing {worker} {first}-{last} through nginx: {reply.status} {reply.text}"
    answer = reply.json()
    assert answer["accepted"] == last - first + 1, answer
    return answer


# --------------------------------------------------------------------------- a. fan-out across gateways

def test_records_published_on_a_and_through_nginx_reach_subscribers_of_b_and_c_identically(cluster):
    # demo-1 is written by A (in-process); job-http by whichever gateway nginx hashes it to.
    first = publish_through_nginx(cluster, "job-http", 1, 50)
    assert cluster.lease_holder("demo-1") == "a"
    wait_until(lambda: last_seq(cluster["a"], "demo-1") >= 20, 10, 0.1, "demo-1 to publish 20 records on A")
    demo_through = last_seq(cluster["a"], "demo-1") + 50   # 1 s of live records at 50/s beyond the replay

    async def scenario():
        followers = [Follower(cluster, name, f"/ws/workers/{worker}")
                     for worker in ("demo-1", "job-http") for name in NAMES]
        runs = [f.run(demo_through if "demo-1" in f.path else 100) for f in followers]

        async def publish_more():
            await asyncio.sleep(0.5)  # the subscribers are following: these arrive live
            await asyncio.to_thread(publish_through_nginx, cluster, "job-http", 51, 100)

        await asyncio.gather(*runs, publish_more())
        return followers

    followers = asyncio.run(scenario())
    for worker, through in (("demo-1", demo_through), ("job-http", 100)):
        a, b, c = (f for f in followers if f.path.endswith(worker))
        assert a.hello["epoch"] == b.hello["epoch"] == c.hello["epoch"], (a.hello, b.hello, c.hello)
        for f in (a, b, c):
            assert f.hello["replay_from"] == 1, f"{f.where}: {f.hello}"
        for seq in range(1, through + 1):
            assert b.records[seq] == a.records[seq], f"{worker} seq {seq}: B sent {b.records[seq]}, A {a.records[seq]}"
            assert c.records[seq] == a.records[seq], f"{worker} seq {seq}: C sent {c.records[seq]}, A {a.records[seq]}"
    job = next(f for f in followers if f.path.endswith("job-http"))
    assert job.hello["epoch"] == first["epoch"]
    assert [json.loads(job.records[n])["message"] for n in range(1, 101)] == [f"line {n}" for n in range(1, 101)]


# --------------------------------------------------------------------------- b. resume on another gateway

def test_a_subscriber_of_b_resumes_on_c_after_b_is_killed_without_gap_or_duplicate(cluster):
    wait_until(lambda: last_seq(cluster["a"], "demo-1") >= 10, 10, 0.1, "demo-1 to publish on A")
    on_b = Follower(cluster, "b", "/ws/workers/demo-1")

    async def until_kill():
        async with stream(cluster["b"].ws_url("/ws/workers/demo-1?since=0"), port=cluster["b"].port) as ws:
            await on_b.follow(ws, last_seq(cluster["a"], "demo-1") + 25)   # replay, then live ones
            cluster.kill("b")
            # Whatever B had sent before it died still counts (and must not come again from C).
            try:
                while True:
                    await on_b.follow(ws, on_b.last + 1, timeout=5)
            except ConnectionClosed:  # B is gone
                pass

    asyncio.run(until_kill())
    assert cluster["b"].proc.returncode == -signal.SIGKILL
    epoch, since = on_b.hello["epoch"], on_b.last

    on_c = Follower(cluster, "c", "/ws/workers/demo-1")
    asyncio.run(on_c.run(since + 50, query=f"?epoch={epoch}&since={since}"))
    assert on_c.hello["resumed"] is True, f"C did not resume run {epoch}: {on_c.hello}"
    assert on_c.hello["epoch"] == epoch and on_c.hello["replay_from"] == since + 1, on_c.hello
    seqs = sorted(on_b.records) + sorted(on_c.records)
    assert seqs == list(range(1, since + 51)), "gap or duplicate across B and C"
    # The bytes are A's: the same records, not re-encoded ones.
    exported = export(cluster["a"], "demo-1")
    by_seq = {json.loads(text)["seq"]: text for text in exported}
    for seq, text in {**on_b.records, **on_c.records}.items():
        assert text == by_seq[seq], f"seq {seq}: streamed {text}, exported by A {by_seq[seq]}"


# --------------------------------------------------------------------------- c. tailgate run survives a kill

def test_tailgate_run_through_nginx_survives_a_kill_of_the_lease_holder_with_every_line_once(cluster, gateway_binary):
    count = 3000
    program = ("import sys, time\n"
               f"for n in range(1, {count + 1}):\n"
               "    print(f'line {n}', flush=True)\n"
               "    time.sleep(0.002)\n")
    run = subprocess.Popen([str(gateway_binary), "run", "--gateway", f"http://127.0.0.1:{cluster.proxy.port}",
                            "--worker", "job-run", "--no-echo", "--verbose", "--", sys.executable, "-c", program],
                           cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        holder = wait_until(lambda: cluster.lease_holder("job-run"), 15, 0.05, "a gateway to take job-run's lease")
        wait_until(lambda: last_seq(cluster[holder], "job-run") >= 300, 15, 0.05, f"300 lines on gateway {holder}")
        epoch = cluster[holder].http("/api/workers/job-run").json()["epoch"]
        cluster.kill(holder)
        killed = time.monotonic()
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, f"tailgate run exited {run.returncode}:\n{output[-3000:]}"
    survivors = [name for name in NAMES if name != holder]

    # nginx sent the publisher's requests to the holder, and after the kill to one other gateway (the
    # next on the hash ring), which took the run over: the /stop at the end went there.
    # (nginx writes a request's log line when it finalizes the request, which may come after the
    # client has its answer: wait for the /stop's.)
    stops = wait_until(lambda: [line for line in cluster.gateways_log() if "/api/workers/job-run/stop" in line],
                       5, 0.05, "nginx's log line of the publisher's /stop")
    logged = [line for line in cluster.gateways_log() if "/api/workers/job-run/" in line]
    served = {name for line in logged for name in upstreams(cluster, line)}
    successor = upstreams(cluster, stops[-1])[-1]
    assert successor in survivors and served <= {holder, successor}, (holder, successor, served)
    assert time.monotonic() - killed >= LEASE_TTL * 2 / 3 - 0.3

    expected = [f"line {n}" for n in range(1, count + 1)] + ["process exited with status 0"]
    def check(name: str) -> None:
        info = cluster[name].http("/api/workers/job-run").json()
        records = [json.loads(text) for text in export(cluster[name], "job-run")]
        messages = [record["message"] for record in records]
        missing = [m for m in expected if m not in set(messages)][:5]
        doubled = sorted({m for m in messages if messages.count(m) > 1})[:5] if len(messages) != len(set(messages)) else []
        assert messages == expected, (f"history of job-run on gateway {name.upper()}: {len(messages)} records for "
                                      f"{len(expected)} lines; missing {missing}, twice {doubled}; holder "
                                      f"{holder.upper()}, successor {successor.upper()}; the worker there: {info}")
        assert [record["seq"] for record in records] == list(range(1, count + 2))
        assert info["epoch"] == epoch and info["status"] == "succeeded", info

    # The gateway that took the run over has it all at once ...
    check(successor)
    # ... and the other one within its refresh of the run list from Redis (the maintenance interval).
    other = next(name for name in survivors if name != successor)
    try:
        wait_until(lambda: cluster[other].http("/api/workers/job-run").json().get("status") == "succeeded",
                   MAINTENANCE + 5, 0.2, f"gateway {other.upper()} to see job-run succeeded")
    finally:
        check(other)


# --------------------------------------------------------------------------- d. one fleet

def test_the_fleet_list_is_the_same_on_every_gateway(cluster):
    publish_through_nginx(cluster, "fleet-job", 1, 3)
    reply = request(cluster.proxy.port, "/api/workers/fleet-stopped/records", method="POST",
                    headers={"Content-Type": "application/x-ndjson"}, body=lines(1, 2))
    assert reply.status == 200, reply.text
    stop = request(cluster.proxy.port, "/api/workers/fleet-stopped/stop?exit_code=3", method="POST")
    assert stop.status == 200 and stop.json()["status"] == "failed", stop.text
    expected_ids = {"demo-1", "gw-a", "gw-b", "gw-c", "fleet-job", "fleet-stopped"}

    def same():
        lists = {name: fleet(cluster[name]) for name in NAMES}
        ids = {name: {w[0] for w in listed} for name, listed in lists.items()}
        if all(expected_ids <= found for found in ids.values()) and lists["a"] == lists["b"] == lists["c"]:
            return lists
        return None

    try:
        lists = wait_until(same, MAINTENANCE + 5, 0.2, "the same fleet on A, B and C")
    except AssertionError:
        detail = {name: fleet(cluster[name]) for name in NAMES}
        raise AssertionError("fleet lists differ after %.0f s:\n%s" % (
            MAINTENANCE + 5, "\n".join(f"{n.upper()}: {l}" for n, l in detail.items()))) from None
    statuses = {worker: status for worker, _, status in lists["a"]}
    assert statuses["fleet-stopped"] == "failed" and statuses["demo-1"] == "running", statuses


# --------------------------------------------------------------------------- e. the nginx template

def test_nginx_spreads_streams_and_keeps_each_workers_publishing_on_one_gateway(cluster):
    port = cluster.proxy.port
    # UI and read API through nginx.
    assert request(port, "/healthz").json() == {"status": "ok"}
    assert request(port, "/api/workers").status == 200

    # Streams: six sockets open at once land 2/2/2 (least_conn). /ws/streams needs no worker to open.
    async def open_streams():
        sockets = [await stream(f"ws://127.0.0.1:{port}/ws/streams", port=port) for _ in range(6)]
        try:
            counts = await asyncio.to_thread(
                wait_until, lambda: (lambda c: c if sum(c.values()) == 6 else None)(
                    {name: cluster[name].http("/api/stats").json()["streams_open"] for name in NAMES}),
                10, 0.1, "6 open streams over the gateways")
        finally:
            for ws in sockets:
                await ws.close()
        return counts

    counts = asyncio.run(open_streams())
    assert min(counts.values()) >= 1 and max(counts.values()) - min(counts.values()) <= 1, \
        f"streams through nginx per gateway: {counts}"

    # Publishing: 12 workers, 3 requests each on new connections. Every request of a worker reaches
    # one gateway (a second one would answer 503 worker_published_elsewhere), the one holding its lease.
    workers = [f"sticky-{n}" for n in range(12)]
    for round_ in range(3):
        for worker in workers:
            publish_through_nginx(cluster, worker, round_ * 5 + 1, round_ * 5 + 5)
    holders = {worker: cluster.lease_holder(worker) for worker in workers}
    assert None not in holders.values(), holders
    assert len(set(holders.values())) >= 2, f"12 workers all hashed to one gateway: {holders}"

    def logged():
        found = [line for line in cluster.gateways_log() if "/api/workers/sticky-" in line]
        return found if len(found) == 36 else None

    entries = wait_until(logged, 10, 0.05, "36 publishing requests in nginx's log")
    for worker in workers:
        served = [upstreams(cluster, line) for line in entries if f"/api/workers/{worker}/" in line]
        assert served == [[holders[worker]]] * 3, f"{worker} (lease on {holders[worker]}) went to {served}"
