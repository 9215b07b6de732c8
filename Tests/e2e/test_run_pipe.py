"""`tailgate run` and `tailgate pipe`: real programs, a real gateway, real restarts.

`run` publishes a child's stdout and stderr lines (levels, stream metadata, exit record, `end`) and exits
with its status; it forwards SIGTERM. `pipe` survives a gateway restart: the lines that overflow its
buffer are counted in one WARNING record, none is published twice, the others arrive in order.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from websockets.asyncio.client import connect

TIMEOUT = 30.0


class Output:
    """The lines a process writes on one stream, collected by a thread, awaitable."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._events: queue.Queue = queue.Queue()
        self._condition = threading.Condition()
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream):
        for raw in stream:
            with self._condition:
                self.lines.append(raw.rstrip("\n"))
                self._condition.notify_all()
        with self._condition:
            self.lines.append(None)  # end of stream
            self._condition.notify_all()

    def wait_for(self, predicate, timeout=TIMEOUT, what="a line"):
        """Waits until `predicate(lines)` is true; fails with the output so far otherwise."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate([line for line in self.lines if line is not None]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"timed out waiting for {what}; output so far:\n" + "\n".join(
                        line for line in self.lines if line is not None))
                self._condition.wait(remaining)

    def text(self) -> str:
        return "\n".join(line for line in self.lines if line is not None)


def start(binary, *args, stdin=subprocess.PIPE):
    proc = subprocess.Popen([str(binary), *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace", bufsize=1)
    return proc, Output(proc.stdout), Output(proc.stderr)


def logs(gw, worker):
    answer = gw.http(f"/api/workers/{worker}/logs")
    assert answer.status == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


def wait_until(condition, timeout=TIMEOUT, what="a condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


async def subscribe_until_end(url):
    """Every record a subscriber receives from `hello` to `end` (asserting the seq invariant)."""
    records, end = [], None
    async with connect(url, compression=None, open_timeout=10) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert hello["type"] == "hello"
        next_seq = hello["replay_from"]
        while end is None:
            message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            if message["type"] == "logs":
                for record in message["records"]:
                    assert record["seq"] == next_seq
                    next_seq += 1
                    records.append(record)
            elif message["type"] == "end":
                end = message
            else:
                pytest.fail(f"unexpected message {message}")
    return records, end


CHILD = r"""
import sys
sys.stdin.readline()                       # wait until the test has subscribed
def out(text): print(text, flush=True)
def err(text): print(text, file=sys.stderr, flush=True)
out("starting the job")
err("ERROR: cannot open data/bars.csv")
out("[warn] falling back to cache")
err("plain text on stderr")
out("DEBUG bar 42 loaded")
err("error: second failure")
out("Error handling enabled")              # not a level word: INFO
out("CRITICAL margin call")
sys.exit(3)
"""


def test_run_publishes_both_streams_with_levels_then_exit_record_and_end(gateway, gateway_binary):
    gw = gateway()
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "job-1", "--gateway", f"http://{gw.base}",
                                 "--", sys.executable, "-c", CHILD)
    try:
        # The worker exists before the program prints anything (tailgate checks it may publish first).
        wait_until(lambda: gw.http("/api/workers/job-1").status == 200, what="the worker to exist")
        result = {}

        def subscriber():
            result["value"] = asyncio.run(subscribe_until_end(gw.ws_url("/ws/workers/job-1?tail=0")))

        thread = threading.Thread(target=subscriber)
        thread.start()
        wait_until(lambda: gw.http("/api/workers/job-1").json()["subscribers"] == 1, what="the subscriber")
        proc.stdin.write("go\n")
        proc.stdin.close()
        status = proc.wait(timeout=TIMEOUT)
        thread.join(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == 3, stderr.text()
    records, end = result["value"]
    assert end["reason"] == "exited with status 3" and end["last_seq"] == records[-1]["seq"]
    assert end["status"] == "failed" and end["exit_code"] == 3

    by_stream = {"stdout": [], "stderr": []}
    for record in records[:-1]:
        by_stream[record["metadata"]["stream"]].append((record["level"], record["message"]))
    assert by_stream["stdout"] == [
        ("INFO", "starting the job"),
        ("WARNING", "[warn] falling back to cache"),
        ("DEBUG", "DEBUG bar 42 loaded"),
        ("INFO", "Error handling enabled"),
        ("CRITICAL", "CRITICAL margin call"),
    ]
    assert by_stream["stderr"] == [
        ("ERROR", "ERROR: cannot open data/bars.csv"),
        ("INFO", "plain text on stderr"),
        ("ERROR", "error: second failure"),
    ]
    last = records[-1]
    assert (last["level"], last["message"]) == ("ERROR", "process exited with status 3")
    assert last["metadata"] == {"exit_status": "3"}
    # The ring holds the same records, and the worker is stopped.
    assert [r["seq"] for r in logs(gw, "job-1")] == [r["seq"] for r in records]
    assert gw.http("/api/workers/job-1").json()["state"] == "stopped"
    # The output is echoed as the program wrote it.
    stdout.wait_for(lambda lines: "CRITICAL margin call" in lines, what="echoed stdout")
    stderr.wait_for(lambda lines: "plain text on stderr" in lines, what="echoed stderr")


TRAPPER = r"""
import signal, sys, time
def on_term(number, frame):
    print("got SIGTERM, cleaning up", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(60)
"""


def test_run_forwards_sigterm_to_the_program(gateway, gateway_binary):
    gw = gateway()
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "trapper", "--gateway", f"http://{gw.base}",
                                 "--", sys.executable, "-c", TRAPPER)
    try:
        stdout.wait_for(lambda lines: "ready" in lines, what="the program to be ready")
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == 7, stderr.text()
    messages = [r["message"] for r in logs(gw, "trapper")]
    assert messages == ["ready", "got SIGTERM, cleaning up", "process exited with status 7"]
    assert gw.http("/api/workers/trapper").json()["state"] == "stopped"


def test_run_reports_a_program_killed_by_a_signal(gateway, gateway_binary):
    gw = gateway()
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "sleeper", "--gateway", f"http://{gw.base}",
                                 "--", "sh", "-c", "echo sleeping; exec sleep 60")
    try:
        stdout.wait_for(lambda lines: "sleeping" in lines, what="the program to start")
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == 128 + signal.SIGTERM
    last = logs(gw, "sleeper")[-1]
    assert (last["level"], last["message"]) == ("ERROR", "process killed by signal 15 (SIGTERM)")


def test_run_refused_by_the_gateway_exits_non_zero_without_running_the_program(gateway, gateway_binary, tmp_path):
    gw = gateway("--publish-from", "10.0.0.0/8")  # loopback may not publish
    marker = tmp_path / "ran"
    proc, stdout, stderr = start(gateway_binary, "run", "--worker", "refused", "--gateway", f"http://{gw.base}",
                                 "--", "touch", str(marker))
    status = proc.wait(timeout=TIMEOUT)
    assert status == 2
    stderr.wait_for(lambda lines: any("403" in line and "may not publish" in line for line in lines),
                    what="the refusal on stderr")
    assert not marker.exists()


def test_pipe_survives_a_gateway_restart_counting_dropped_lines_without_duplicates(gateway, gateway_binary):
    first = gateway("--ring-records", "100000")
    port = first.port
    buffer = 50
    proc, stdout, stderr = start(gateway_binary, "pipe", "--worker", "piped", "--gateway", f"http://127.0.0.1:{port}",
                                 "--buffer-lines", str(buffer), "--echo", "--verbose")
    acknowledged = lambda lines: sum(int(m[1]) for m in (re.search(r"acknowledged (\d+) of", l) for l in lines) if m)
    try:
        for i in range(20):
            proc.stdin.write(f"before-{i}\n")
        proc.stdin.flush()
        # Every line before the restart is acknowledged (its body ended): nothing is in flight.
        stderr.wait_for(lambda lines: acknowledged(lines) >= 20, what="the acknowledgement of 20 lines")
        assert [r["message"] for r in logs(first, "piped")] == [f"before-{i}" for i in range(20)]
        first.stop()

        down = 200
        for i in range(down):
            proc.stdin.write(f"down-{i}\n")
        proc.stdin.flush()
        stdout.wait_for(lambda lines: f"down-{down - 1}" in lines, what="pipe to read every line")

        second = gateway("--port", str(port), "--ring-records", "100000")
        assert second.port == port
        dropped = f"{down - buffer} lines dropped while the gateway was unreachable"
        wait_until(lambda: second.http("/api/workers/piped").status == 200 and any(
            r["message"] == dropped for r in logs(second, "piped")), what="the drop record")
        for i in range(20):
            proc.stdin.write(f"after-{i}\n")
        proc.stdin.close()
        status = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == 0, stderr.text()
    records = logs(second, "piped")
    messages = [r["message"] for r in records]
    assert len(messages) == len(set(messages)), "a line was published twice"
    expected = [f"down-{i}" for i in range(buffer)] + [dropped] + [f"after-{i}" for i in range(20)]
    assert messages == expected, stderr.text()
    warning = records[buffer]
    assert warning["level"] == "WARNING" and warning["metadata"] == {"dropped": str(down - buffer)}
    assert all(r["metadata"] == {"stream": "stdin"} for r in records if r is not warning)
    assert second.http("/api/workers/piped").json()["state"] == "stopped"  # stopped at EOF
