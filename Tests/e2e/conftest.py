"""Fixtures for the end-to-end tests: the real `tailgate` binary, started as a real process.

- `gateway_binary` (session): path of the binary, from env TAILGATE_BIN (scripts/test.sh sets it),
  default `.build/debug/tailgate`; the tests are skipped with a clear message when it is missing.
- `gateway` (function): a factory. `gateway("--demo", "2")` starts `tailgate serve --port 0 --demo 2`
  in the repository root, waits (bounded) for its start-up line, and returns a `Gateway` with `.port`,
  `.http(path)`, `.ws_url(path)` and `.proc`. Every gateway started is stopped (SIGTERM, then wait;
  SIGKILL and a test error if it does not exit) when the test ends. Unless the arguments name
  `--data-dir` or `--memory-only`, each gateway keeps its history in a folder of its own under the
  test's tmp_path (`.data_dir`); `port=` starts it on a given port (a restart on the same address).
"""

from __future__ import annotations

import json
import os
import queue
import resource
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
LISTENING = re.compile(r"listening on http://(?P<host>\[[^\]]+\]|[^/:\s]+):(?P<port>\d+)/")


@dataclass
class HTTPResult:
    """An HTTP answer, whatever its status (4xx and 5xx are answers too, not exceptions)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Gateway:
    """One running `tailgate serve` process."""

    proc: subprocess.Popen
    host: str
    port: int
    args: tuple[str, ...]
    output: list[str] = field(default_factory=list)  # every line it printed (stdout and stderr)
    data_dir: Path | None = None

    @property
    def base(self) -> str:
        return f"{self.host}:{self.port}"

    def http(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
             body: bytes | None = None, timeout: float = 10.0) -> HTTPResult:
        request = urllib.request.Request(f"http://{self.base}{path}", data=body, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return HTTPResult(response.status, {k.lower(): v for k, v in response.headers.items()},
                                  response.read())
        except urllib.error.HTTPError as error:
            with error:
                return HTTPResult(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())

    def ws_url(self, path: str) -> str:
        return f"ws://{self.base}{path}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Sends `sig` and returns the exit status. The signal is sent a second time halfway through
        `timeout` (one sent in the instant after start-up can be lost: test_cli checks that on its
        own); after `timeout` the process is killed and TimeoutExpired raised."""
        for _ in range(2):
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=timeout / 2)
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.proc.wait()
        raise subprocess.TimeoutExpired(self.proc.args, timeout)

    def log(self) -> str:
        return "\n".join(self.output)


@pytest.fixture(scope="session")
def gateway_binary() -> Path:
    path = Path(os.environ.get("TAILGATE_BIN") or REPO_ROOT / ".build" / "debug" / "tailgate")
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"tailgate binary not found at {path}: run `swift build` or set TAILGATE_BIN "
                    "(./scripts/test.sh does both)")
    return path


def _drain(stream, lines: list[str], events: queue.Queue) -> None:
    for raw in stream:
        line = raw.rstrip("\n")
        lines.append(line)
        events.put(line)
    events.put(None)


@pytest.fixture
def gateway(gateway_binary, tmp_path):
    started: list[Gateway] = []

    def start(*args: str, timeout: float = START_TIMEOUT, open_files: int | None = None, port: int = 0) -> Gateway:
        """Starts `tailgate serve --port PORT ARGS`; `open_files` lowers its file-descriptor limit."""
        data_dir = None
        if "--data-dir" not in args and "--memory-only" not in args:
            data_dir = tmp_path / f"tailgate-data-{len(started)}"
            args = (*args, "--data-dir", str(data_dir))
        elif "--data-dir" in args:
            data_dir = Path(args[args.index("--data-dir") + 1])
        command = [str(gateway_binary), "serve", "--port", str(port), *args]

        def limit_open_files():
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        proc = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
                                preexec_fn=limit_open_files if open_files is not None else None)
        output: list[str] = []
        events: queue.Queue = queue.Queue()
        threading.Thread(target=_drain, args=(proc.stdout, output, events), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = events.get(timeout=max(0.0, remaining)) if remaining > 0 else None
            except queue.Empty:
                line = None
            if line is None:  # output ended (process exited) or the time is up
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                pytest.fail(f"{' '.join(command)} printed no start-up line within {timeout:.0f} s "
                            f"(exit status {proc.returncode}); output:\n" + "\n".join(output))
            match = LISTENING.search(line)
            if match:
                host = match["host"]
                if host in ("0.0.0.0", "[::]"):
                    host = "127.0.0.1"
                gateway = Gateway(proc, host, int(match["port"]), tuple(args), output, data_dir)
                started.append(gateway)
                return gateway

    yield start

    hung = []
    for gateway in started:
        # Shown by pytest only when the test fails.
        print(f"--- output of tailgate serve --port 0 {' '.join(gateway.args)} (pid {gateway.proc.pid}):")
        print(gateway.log())
        if gateway.proc.poll() is None:
            try:
                gateway.stop()
            except subprocess.TimeoutExpired:  # stop() has killed it
                hung.append(gateway)
    if hung:
        pytest.fail("gateway did not exit within %.0f s of SIGTERM (killed): %s\noutput:\n%s" % (
            STOP_TIMEOUT, " ".join(hung[0].args), hung[0].log()))
