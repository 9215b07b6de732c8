"""Exactly-once publishing of the Python client `tailgate_logging` (docs/PROTOCOL.md, "Publishing exactly
once") against a real gateway that keeps its history on disk and is killed (`kill -9`) and restarted
while the handler publishes.

These tests start the gateway themselves (not through conftest's `gateway` fixture): it must come back on
the same port with the same `--data-dir`, which a `--port 0` gateway cannot do.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from nginx_support import free_port, wait_until as wait_for

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "clients" / "python"

RECORDS = 20_000
SECONDS = 5.0  # the child logs RECORDS records over about this long


# ----------------------------------------------------------------------------------------- helpers

def http(port: int, path: str, *, method: str = "GET", timeout: float = 30.0) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def http_json(port: int, path: str, **kwargs):
    status, body = http(port, path, **kwargs)
    assert status == 200, f"GET {path}: HTTP {status} {body[:500]!r}"
    return json.loads(body)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Waits until `predicate()` is true (and returns it), failing after `timeout` seconds."""
    return wait_for(predicate, timeout, interval, what)


class DiskGateway:
    """`tailgate serve --port PORT --data-dir DIR`, which can be killed and started again in place."""

    def __init__(self, binary: Path, port: int, data_dir: Path, log_path: Path):
        self.binary = binary
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write(f"--- start {self.starts}\n")
            log.flush()
            self.proc = subprocess.Popen([str(self.binary), "serve", "--port", str(self.port),
                                          "--data-dir", str(self.data_dir)],
                                         cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"the gateway exited with status {self.proc.returncode}:\n{self.log()}")
            try:
                return http(self.port, "/healthz", timeout=1.0)[0] == 200
            except OSError:
                return False
        wait_until(healthy, timeout, f"the gateway on port {self.port} to answer /healthz")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture
def disk_gateway(gateway_binary, tmp_path):
    help_text = subprocess.run([str(gateway_binary), "serve", "--help"], capture_output=True, text=True,
                               timeout=30).stdout
    assert "--data-dir" in help_text, f"{gateway_binary} serve has no --data-dir (durable history):\n{help_text}"
    gateway = DiskGateway(gateway_binary, free_port(), tmp_path / "data", tmp_path / "gateway.log")
    yield gateway
    gateway.stop()
    print(f"--- output of the gateway on port {gateway.port}:\n{gateway.log()}")  # shown when a test fails


@pytest.fixture
def tailgate_logging():
    """The package under test, from the source tree."""
    if str(PACKAGE_DIR) not in sys.path:
        sys.path.insert(0, str(PACKAGE_DIR))
    import tailgate_logging as module
    assert Path(module.__file__).resolve().is_relative_to(PACKAGE_DIR.resolve()), module.__file__
    return module


def exported(port: int, worker: str, run: str | None = None) -> list[dict]:
    path = f"/api/workers/{worker}" + (f"/runs/{run}" if run else "") + "/logs?format=ndjson"
    status, body = http(port, path, timeout=120)
    assert status == 200, f"GET {path}: HTTP {status} {body[:500]!r}"
    return [json.loads(line) for line in body.decode("utf-8").splitlines() if line]


def duplicates_and_gaps(messages: list[str], expected: list[str]) -> str:
    """A short description of how `messages` differs from `expected`, for assertion messages."""
    seen: dict[str, int] = {}
    for m in messages:
        seen[m] = seen.get(m, 0) + 1
    twice = [m for m, n in seen.items() if n > 1]
    missing = [m for m in expected if m not in seen]
    first_difference = next((i for i, (a, b) in enumerate(zip(messages, expected)) if a != b), None)
    return (f"{len(messages)} records (expected {len(expected)}); {len(twice)} duplicated, e.g. {twice[:5]}; "
            f"{len(missing)} missing, e.g. {missing[:5]}; first difference at index {first_difference}")


class AnswerEatingProxy:
    """A TCP proxy in front of the gateway that, when armed, forwards the next body with a
    `Tailgate-Offset` (records, not a resuming probe) and its answer's bytes up to the proxy, then resets
    the client's connection instead of passing the answer on: the gateway has the records (it answers
    only once they are written to disk), the handler does not know. The proxy then holds (closes every new
    connection at once) until `release()`, so the test decides when the handler may resume."""

    ANSWER = re.compile(rb'"accepted":(\d+).*"offset":(\d+)\}', re.S)

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.armed = False
        self.holding = False
        self.eaten: list[dict] = []  # {"accepted": N, "offset": K} of each answer swallowed
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        with self.lock:
            self.armed = True

    def release(self) -> None:
        with self.lock:
            self.holding = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                holding = self.holding
            try:
                if holding:
                    raise OSError("holding")
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            state = {"eat": False}
            threading.Thread(target=self._requests, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, state), daemon=True).start()

    def _requests(self, client, upstream, state) -> None:
        try:
            while data := client.recv(65536):
                if b"Tailgate-Offset:" in data:
                    with self.lock:
                        if self.armed:
                            self.armed = False
                            state["eat"] = True
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _answers(self, upstream, client, state) -> None:
        answer = b""
        try:
            while data := upstream.recv(65536):
                if not state["eat"]:
                    client.sendall(data)
                    continue
                answer += data
                match = self.ANSWER.search(answer)
                if match:
                    with self.lock:
                        self.holding = True
                        self.eaten.append({"accepted": int(match[1]), "offset": int(match[2])})
                    # Ended at once (a reset where the kernel can), never answered. shutdown() also wakes
                    # the thread reading the request side, which close() alone would not.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.shutdown(socket.SHUT_RDWR)
                    break
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def close(self) -> None:
        self.listener.close()


def _close(*sockets) -> None:
    for s in sockets:
        try:
            s.close()
        except OSError:
            pass


# The publishing program: a real Python process logging through TailgateHandler.
CHILD = r"""
import json, logging, sys, time
sys.path.insert(0, sys.argv[5])
from tailgate_logging import TailgateHandler

url, worker, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
# A queue for everything (nothing may be dropped while the gateway is down), a short backoff (it comes
# back within seconds), and a close() that may wait long enough for the restarted gateway.
handler = TailgateHandler(url, worker, queue_size=count + 1000, timeout=60.0, backoff_initial=0.05,
                          backoff_max=0.5)
logger = logging.getLogger("exactly.once")
logger.handlers[:] = [handler]
logger.setLevel(logging.INFO)
logger.propagate = False
start = time.monotonic()
for i in range(count):
    if i % 100 == 0:
        ahead = start + i * seconds / count - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        if i % 1000 == 0:
            print("logged", i, flush=True)
    logger.info("record %d", i, extra={"i": i})
print("logged", count, flush=True)
closing = time.monotonic()
handler.close()
print(json.dumps({"stats": handler.stats, "publisher": handler.publisher,
                  "close_seconds": round(time.monotonic() - closing, 2)}), flush=True)
"""


# ----------------------------------------------------------------------------------------- tests

def test_kill_9_and_restart_mid_stream_publishes_every_record_exactly_once(disk_gateway, request):
    gw = disk_gateway
    gw.start()
    worker = "py-exactly-once"
    child = subprocess.Popen([sys.executable, "-c", CHILD, f"http://127.0.0.1:{gw.port}", worker, str(RECORDS),
                              str(SECONDS), str(PACKAGE_DIR)],
                             cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    output: list[str] = []
    errors: list[str] = []
    logged = threading.Event()  # the child has logged a third of its records
    threading.Thread(target=lambda: errors.extend(child.stderr), daemon=True).start()

    def read_stdout():
        for line in child.stdout:
            output.append(line.rstrip("\n"))
            if line.startswith("logged ") and int(line.split()[1]) >= RECORDS // 3:
                logged.set()
    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        assert logged.wait(60), f"the child did not get a third of the way: {output} {errors}"
        # Kill while records flow: the gateway must already hold some, and a body is almost surely in
        # flight (the handler posts a batch every flush interval).
        wait_until(lambda: http(gw.port, f"/api/workers/{worker}")[0] == 200
                   and http_json(gw.port, f"/api/workers/{worker}")["records_total"] >= 1000,
                   30, "the gateway to hold 1000 records")
        before = http_json(gw.port, f"/api/workers/{worker}")
        gw.kill9()
        killed_at = len(output)
        time.sleep(0.5)  # down for a moment: the handler fails, backs off and queues
        gw.start()
        restarted = http_json(gw.port, f"/api/workers/{worker}")
        assert restarted["epoch"] == before["epoch"], (before, restarted)

        child.wait(180)
        reader.join(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = "".join(errors)
    assert child.returncode == 0, f"child exited with {child.returncode}:\n{stderr}"
    assert len(output) > killed_at + 1, "the gateway was killed after the child had logged everything"
    result = json.loads(output[-1])
    stats = result["stats"]

    records = exported(gw.port, worker)
    messages = [r["message"] for r in records]
    expected = [f"record {i}" for i in range(RECORDS)]
    assert messages == expected, duplicates_and_gaps(messages, expected)
    assert [r["seq"] for r in records] == list(range(1, RECORDS + 1))
    assert [r["metadata"]["i"] for r in records] == [str(i) for i in range(RECORDS)]

    assert stats["lost"] == 0 and stats["dropped"] == 0 and stats["rejected"] == 0, stats
    assert stats["reconnects"] >= 2, stats  # the first connection, and at least one after the restart
    assert stats["runs"] == 0, stats  # the restarted gateway continued the run
    runs = http_json(gw.port, f"/api/workers/{worker}/runs")["runs"]
    assert [(r["epoch"], r["records"]) for r in runs] == [(before["epoch"], RECORDS)], runs

    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[python exactly once] {RECORDS} records, gateway killed (-9) at {before['records_total']} "
              f"published and restarted; every record exactly once, in order. Handler stats {stats}; "
              f"close() took {result['close_seconds']} s", flush=True)


def test_a_new_run_gets_the_records_logged_after_a_stop(disk_gateway, tailgate_logging):
    """A stopped worker's next record starts a new run (a new epoch): the handler's offsets go on
    increasing, the gateway (which has nothing of this publisher in the new run) takes them, and each
    run holds exactly its own records."""
    gw = disk_gateway
    gw.start()
    worker = "py-new-run"
    handler = tailgate_logging.TailgateHandler(f"http://127.0.0.1:{gw.port}", worker, timeout=30)
    logger = logging.getLogger("exactly.once.runs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for i in range(100):
            logger.info("first %d", i)
        assert handler.flush(30)
        first_epoch = http_json(gw.port, f"/api/workers/{worker}")["epoch"]
        assert handler.stop_worker(30)["stopped"] is True
        for i in range(100):
            logger.info("second %d", i)
        assert handler.flush(30)
        second_epoch = http_json(gw.port, f"/api/workers/{worker}")["epoch"]
        assert second_epoch != first_epoch
        assert handler.stats["runs"] == 1, handler.stats
        assert handler.stats["lost"] == handler.stats["rejected"] == handler.stats["dropped"] == 0, handler.stats
        runs = http_json(gw.port, f"/api/workers/{worker}/runs")["runs"]
        assert [(r["epoch"], r["records"]) for r in runs] == [(second_epoch, 100), (first_epoch, 100)], runs
        assert [r["message"] for r in exported(gw.port, worker, first_epoch)] == [f"first {i}" for i in range(100)]
        assert [r["message"] for r in exported(gw.port, worker, second_epoch)] == [f"second {i}" for i in range(100)]

        # A restart keeps both runs; the handler's new connection resumes the current one.
        gw.kill9()
        gw.start()
        for i in range(50):
            logger.info("third %d", i)
        assert handler.flush(30)
        assert http_json(gw.port, f"/api/workers/{worker}")["epoch"] == second_epoch
        assert [r["message"] for r in exported(gw.port, worker)] == \
            [f"second {i}" for i in range(100)] + [f"third {i}" for i in range(50)]
        assert handler.stats["runs"] == 1, handler.stats
    finally:
        handler.close()


def test_an_answer_lost_before_a_kill_9_is_recovered_not_resent(disk_gateway, tailgate_logging):
    """The gateway writes a body and answers, the answer never reaches the handler, and the gateway is
    killed with `kill -9`. After the restart, the handler's new connection learns from the gateway's
    offset (stored with the records) that the body arrived: it forgets those records instead of sending
    them again, and sends the rest."""
    gw = disk_gateway
    gw.start()
    proxy = AnswerEatingProxy(gw.port)
    worker = "py-lost-answer"
    handler = tailgate_logging.TailgateHandler(f"http://127.0.0.1:{proxy.port}", worker, timeout=30,
                                               backoff_initial=0.05, backoff_max=0.2)
    logger = logging.getLogger("exactly.once.lost")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for i in range(100):
            logger.info("before %d", i)
        assert handler.flush(30)
        proxy.arm()
        for i in range(1000):
            logger.info("after %d", i)
        wait_until(lambda: proxy.eaten, 30, "an answer to be swallowed")
        eaten = proxy.eaten[0]
        assert eaten["accepted"] > 0 and eaten["offset"] == 100 + eaten["accepted"], eaten
        assert handler.stats["recovered"] == 0
        gw.kill9()
        gw.start()
        proxy.release()
        assert handler.flush(60)
        expected = [f"before {i}" for i in range(100)] + [f"after {i}" for i in range(1000)]
        messages = [r["message"] for r in exported(gw.port, worker)]
        assert messages == expected, duplicates_and_gaps(messages, expected)
        assert handler.stats["recovered"] == eaten["accepted"], (eaten, handler.stats)
        assert handler.stats["duplicates"] == 0, handler.stats
        assert handler.stats["runs"] == 0 and handler.stats["lost"] == 0, handler.stats
    finally:
        handler.close()
        proxy.close()
