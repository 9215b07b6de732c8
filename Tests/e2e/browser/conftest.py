"""Fixtures for the browser tests: a gateway started from the built binary, and headless Chromium.

The gateway binary is `$TAILGATE_BIN` or `.build/debug/tailgate`; it serves this repository's
`Public/`. Chromium and chromedriver are Debian's (`apt-get install chromium chromium-driver`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PUBLIC = REPO / "Public"
SCREENSHOTS = REPO / "docs" / "screenshots"
LISTENING = re.compile(r"tailgate listening on http://[^:/]+:(\d+)/")


def tailgate_binary(prefer_release: bool = False) -> Path:
    release = REPO / ".build" / "release" / "tailgate"
    if prefer_release and "TAILGATE_BIN" not in os.environ and release.exists():
        return release
    binary = Path(os.environ.get("TAILGATE_BIN", REPO / ".build" / "debug" / "tailgate"))
    if not binary.exists():
        pytest.skip(f"no gateway binary at {binary} (run `swift build`)")
    return binary


class BrowserGateway:
    """A `tailgate serve` process serving `Public/`; `restart()` brings it back on the same port."""

    def __init__(self, args: list[str], prefer_release: bool = False):
        self.args = args
        self.prefer_release = prefer_release
        # History in a folder of its own, kept across restart() (removed by stop_for_good()).
        self.data_dir = None if "--memory-only" in args or "--data-dir" in args else tempfile.mkdtemp(prefix="tailgate-browser-")
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.start()

    def start(self) -> None:
        port = str(self.port) if self.port else "0"
        command = [str(tailgate_binary(self.prefer_release)), "serve", "--port", port, "--public-dir", str(PUBLIC), *self.args]
        if self.data_dir:
            command += ["--data-dir", self.data_dir]
        deadline = time.monotonic() + 20
        while True:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            line = self.proc.stdout.readline()
            self.output.append(line)
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
                return
            self.proc.wait(timeout=5)
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start: {''.join(self.output)}")
            time.sleep(0.2)  # the port may still be held by the previous run

    def _drain(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.output.append(line)

    def stop(self, grace: float = 10) -> None:
        """SIGTERM (the gateway closes its streams with 1001), then SIGKILL after `grace` seconds."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def http(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url(path), timeout=10) as response:
            return response.read()

    def json(self, path: str):
        return json.loads(self.http(path))

    def records(self, worker: str) -> list[dict]:
        """The worker's ring as exported by `/api/workers/ID/logs` (NDJSON)."""
        text = self.http(f"api/workers/{worker}/logs").decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def browser_gateway():
    """Starts gateways: `browser_gateway('--demo', '2', ...)`; all are stopped after the test."""
    started: list[BrowserGateway] = []

    def start(*args: str, prefer_release: bool = False) -> BrowserGateway:
        gateway = BrowserGateway(list(args), prefer_release)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop(grace=0.5)
        if gateway.data_dir:
            shutil.rmtree(gateway.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def driver():
    """Headless Chromium driven through chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1440,900", "--force-device-scale-factor=1",
                     "--disable-background-timer-throttling", "--disable-renderer-backgrounding"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_script_timeout(30)
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()


@pytest.fixture
def page(driver):
    """The session's browser, reset to the light theme and without stored settings after each test."""
    browser_errors(driver)  # forget the messages of earlier tests
    yield driver
    try:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        driver.execute_script("try { localStorage.clear() } catch (e) {}")
    except Exception:
        pass
    driver.get("about:blank")


def wait_for(condition, timeout: float = 15, interval: float = 0.1, message: str = "condition"):
    """Polls `condition()` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as error:  # the page may be between loads
            last = error
        if last and not isinstance(last, Exception):
            if os.environ.get("TAILGATE_TEST_TRACE"):
                print(f"  waited {time.monotonic() - deadline + timeout:.2f}s for {message}")
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message} (last: {last!r})")


INSPECT = """
const done = arguments[arguments.length - 1];
import(new URL('js/console-app.js', document.baseURI).href)
  .then((m) => done(m.currentConsole()?.inspect(arguments[0] || {}) ?? null))
  .catch((e) => done({error: String(e)}));
"""


def inspect_console(driver, lines: bool = False) -> dict:
    """What the console holds (through the console module's `inspect()`)."""
    return driver.execute_async_script(INSPECT, {"lines": lines})


def browser_errors(driver) -> list[str]:
    """Severe messages from the page's console (CSP violations, exceptions)."""
    try:
        entries = driver.get_log("browser")
    except Exception:
        return []
    return [e["message"] for e in entries if e.get("level") == "SEVERE"]


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))
    return path


# A scripted stand-in for the gateway (for what the real one cannot be made to do on demand yet, such
# as ending a worker): serves Public/ with the gateway's CSP and plays a fixed stream.

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".json": "application/json"}


def fake_record(seq: int, level: str = "INFO", message: str | None = None) -> dict:
    return {"seq": seq, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "level": level,
            "message": message or f"scripted line {seq}", "logger_name": "Script", "module": "script",
            "func_name": "play", "line_no": seq}


class FakeGateway:
    """Serves `Public/` and one worker whose stream is `script` (a list of messages, or a float to pause)."""

    def __init__(self, worker: str, script: list):
        import asyncio

        self.worker = worker
        self.script = script
        self.connections = 0
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake gateway did not start")

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        import asyncio
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        async with serve(self._stream, "127.0.0.1", 0, process_request=self._http) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _response(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        headers = Headers({"Content-Type": content_type, "Content-Length": str(len(body)), "Cache-Control": "no-store"})
        for name, value in (extra or {}).items():
            headers[name] = value
        return Response(status, {200: "OK", 404: "Not Found"}.get(status, "Status"), headers, body)

    def _worker_json(self) -> dict:
        return {"id": self.worker, "state": "running", "log_stream_path": f"/ws/workers/{self.worker}", "subscribers": 0,
                "first_seq": 1, "last_seq": 0, "records_total": 0, "started_at": None, "stopped_at": None}

    def _http(self, connection, request):
        path = request.path.split("?", 1)[0]
        if path.startswith("/ws/workers/"):
            if path == f"/ws/workers/{self.worker}":
                return None  # go on with the WebSocket handshake
            return self._response(404, b'{"error":{"code":"worker_not_found","message":"no worker"}}', "application/json")
        if path == "/api/workers":
            return self._response(200, json.dumps({"workers": [self._worker_json()]}).encode(), "application/json")
        if path.startswith("/api/workers/"):
            if path == f"/api/workers/{self.worker}":
                return self._response(200, json.dumps(self._worker_json()).encode(), "application/json")
            return self._response(404, b'{"error":{"code":"worker_not_found","message":"no worker"}}', "application/json")
        name = path.lstrip("/") or "index.html"
        file = (PUBLIC / name).resolve()
        if PUBLIC.resolve() not in file.parents or not file.is_file():
            return self._response(404, b"not found", "text/plain")
        extra = {"Content-Security-Policy": CSP} if file.suffix == ".html" else {}
        return self._response(200, file.read_bytes(), CONTENT_TYPES.get(file.suffix, "application/octet-stream"), extra)

    async def _stream(self, websocket) -> None:
        import asyncio

        self.connections += 1
        for step in self.script:
            if isinstance(step, (int, float)):
                await asyncio.sleep(step)
            else:
                await websocket.send(json.dumps(step))
                if step.get("type") == "end":
                    await websocket.close(1000, "worker stopped")
                    return
        await websocket.wait_closed()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
def fake_gateway():
    """Starts scripted gateways: `fake_gateway('worker-id', [message, pause, ...])`."""
    started: list[FakeGateway] = []

    def start(worker: str, script: list) -> FakeGateway:
        gateway = FakeGateway(worker, script)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
