"""`tailgate run` publishes every line exactly once, across a gateway killed with `kill -9`, and stops the
worker with the program's exit status (docs/PROTOCOL.md, "Publishing exactly once" and "History").

The gateways here keep their history in a `--data-dir` under tmp_path and are restarted on the same
port, so they are started by a helper of this file rather than the `gateway` fixture (which picks a
new port each time and gives no data folder).
"""

from __future__ import annotations

import json
import signal
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
TIMEOUT = 60.0
LINES = 20_000


def wait_until(condition, timeout=TIMEOUT, what="a condition", interval=0.05):
    """Waits until `condition()` is true (and returns it), failing after `timeout` seconds."""
    return wait_for(condition, timeout, interval, what)


class Served:
    """One `tailgate serve --port P --data-dir D` process; its output is collected by a thread."""

    def __init__(self, binary: Path, port: int, data_dir: Path):
        self.port = port
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--port", str(port), "--data-dir", str(data_dir)], cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            encoding="utf-8", errors="replace")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

    def request(self, path: str, method: str = "GET", timeout: float = 10.0) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    def json(self, path: str):
        status, body = self.request(path)
        assert status == 200, f"GET {path}: {status} {body[:300]!r}"
        return json.loads(body)

    def wait_healthy(self):
        def healthy():
            if self.proc.poll() is not None:
                pytest.fail(f"tailgate serve exited with {self.proc.returncode}:\n" + "\n".join(self.output))
            try:
                return self.request("/healthz", timeout=2)[0] == 200
            except OSError:
                return False
        wait_until(healthy, timeout=30, what=f"the gateway on port {self.port} to answer /healthz")
        return self


@pytest.fixture
def serve(gateway_binary):
    """`serve(port, data_dir)` starts a gateway and waits until it is healthy; all are stopped at the end."""
    started: list[Served] = []

    def start(port: int, data_dir: Path) -> Served:
        served = Served(gateway_binary, port, data_dir)
        started.append(served)
        return served.wait_healthy()

    yield start
    for served in started:
        print(f"--- output of tailgate serve --port {served.port} (pid {served.proc.pid}):")
        print("\n".join(served.output))
        if served.proc.poll() is None:
            served.proc.send_signal(signal.SIGTERM)
            try:
                served.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                served.proc.kill()
                served.proc.wait()


class Collected:
    """The text a process writes on one stream, collected by a thread."""

    def __init__(self, stream):
        self.lines: list[str] = []
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


def run(binary, port, worker, *command, options=()):
    proc = subprocess.Popen([str(binary), "run", "--worker", worker, "--gateway", f"http://127.0.0.1:{port}",
                             "--no-echo", *options, "--", *command],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace")
    return proc, Collected(proc.stdout), Collected(proc.stderr)


def logs(served: Served, worker: str) -> list[dict]:
    status, body = served.request(f"/api/workers/{worker}/logs?format=ndjson", timeout=30)
    assert status == 200, body[:300]
    return [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]


# 20,000 numbered lines in about 5 s: 200 batches of 100, flushed, 25 ms apart.
COUNTER = r"""
import sys, time
for batch in range(200):
    sys.stdout.write("".join(f"line {batch * 100 + i + 1}\n" for i in range(100)))
    sys.stdout.flush()
    time.sleep(0.025)
"""


def test_run_publishes_every_line_exactly_once_across_a_gateway_kill_9(serve, gateway_binary, tmp_path):
    port, data_dir = free_port(), tmp_path / "data"
    first = serve(port, data_dir)
    # A buffer larger than the output: no line may be dropped while the gateway is away.
    proc, stdout, stderr = run(gateway_binary, port, "counted", sys.executable, "-c", COUNTER,
                               options=("--verbose", "--buffer-lines", "100000"))
    try:
        # Kill the gateway in the middle of the output, while lines are on their way.
        def published():
            status, body = first.request("/api/workers/counted")
            return status == 200 and json.loads(body)["last_seq"] >= 3000
        wait_until(published, what="3,000 lines to be published before the kill")
        assert proc.poll() is None, "the program ended before the gateway was killed"
        first.proc.kill()  # SIGKILL
        first.proc.wait(timeout=10)
        time.sleep(0.5)
        second = serve(port, data_dir)
        status = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == 0, stderr.text()
    assert "reachable again" in stderr.text(), "tailgate never had to reconnect:\n" + stderr.text()

    records = logs(second, "counted")
    lines = [r["message"] for r in records if r.get("metadata", {}).get("stream") == "stdout"]
    missing = sorted(set(f"line {i}" for i in range(1, LINES + 1)) - set(lines))
    assert not missing, f"{len(missing)} lines missing, e.g. {missing[:5]}\n" + stderr.text()
    assert len(lines) == len(set(lines)), f"{len(lines) - len(set(lines))} lines published twice\n" + stderr.text()
    assert lines == [f"line {i}" for i in range(1, LINES + 1)], "lines out of order"
    assert [r["message"] for r in records if "stream" not in r.get("metadata", {})] == ["process exited with status 0"]
    assert [r["seq"] for r in records] == list(range(1, LINES + 2)), "seqs are not 1…N without a gap"

    # The restart continued the run (same epoch), which the exit status ended as succeeded.
    runs = second.json("/api/workers/counted/runs")["runs"]
    assert len(runs) == 1, runs
    run_info = runs[0]
    assert (run_info["status"], run_info["exit_code"]) == ("succeeded", 0), run_info
    assert run_info["records"] == LINES + 1 and run_info["current"], run_info
    worker = second.json("/api/workers/counted")
    assert (worker["state"], worker["status"], worker["exit_code"]) == ("stopped", "succeeded", 0), worker
    assert worker["epoch"] == run_info["epoch"]


def test_run_stops_the_worker_with_a_failing_exit_status(serve, gateway_binary, tmp_path):
    port = free_port()
    served = serve(port, tmp_path / "data")
    proc, stdout, stderr = run(gateway_binary, port, "failing", sys.executable, "-c",
                               "import sys; print('giving up'); sys.exit(3)")
    assert proc.wait(timeout=TIMEOUT) == 3, stderr.text()
    assert [r["message"] for r in logs(served, "failing")] == ["giving up", "process exited with status 3"]
    run_info = served.json("/api/workers/failing/runs")["runs"][0]
    assert (run_info["status"], run_info["exit_code"], run_info["reason"]) == ("failed", 3, "exited with status 3"), run_info


def test_run_stops_the_worker_of_a_program_killed_by_a_signal(serve, gateway_binary, tmp_path):
    port = free_port()
    served = serve(port, tmp_path / "data")
    proc, stdout, stderr = run(gateway_binary, port, "killed", "sh", "-c", "echo doomed; kill -9 $$")
    assert proc.wait(timeout=TIMEOUT) == 128 + signal.SIGKILL, stderr.text()
    run_info = served.json("/api/workers/killed/runs")["runs"][0]
    assert (run_info["status"], run_info["exit_code"]) == ("failed", 128 + signal.SIGKILL), run_info
    assert run_info["reason"] == "killed by signal 9 (SIGKILL)", run_info


def test_pipe_stops_the_worker_without_an_exit_status(serve, gateway_binary, tmp_path):
    port = free_port()
    served = serve(port, tmp_path / "data")
    proc = subprocess.run([str(gateway_binary), "pipe", "--worker", "piped", "--gateway", f"http://127.0.0.1:{port}"],
                          input="one\n\nthree\n", capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    # The blank line is a line of its own: it is numbered like the others, and nothing shifts.
    assert [r["message"] for r in logs(served, "piped")] == ["one", "", "three"]
    run_info = served.json("/api/workers/piped/runs")["runs"][0]
    assert (run_info["status"], run_info["exit_code"]) == ("stopped", None), run_info
