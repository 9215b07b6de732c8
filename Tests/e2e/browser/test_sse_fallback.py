"""Where WebSockets are blocked for real — behind a real nginx that does not pass the upgrade on (it
drops the `Upgrade` and `Connection` headers, as proxies that know nothing of WebSockets do, so the
gateway answers the handshake with an HTTP error) — the console and the dashboard fall back to
Server-Sent Events: one worker (`/api/workers/ID/events`), a merged console and the dashboard
(`/api/streams/events`). (Chromium's `Network.setBlockedURLs` does not stop WebSocket handshakes.)"""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from conftest import browser_errors, inspect_console, wait_for

SSE_NOTE = "Server-Sent Events: WebSockets unavailable"

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_buffering off;
      proxy_read_timeout 1h;
    }}
  }}
}}
"""


class Proxy:
    """A real nginx in front of the gateway, without WebSocket support."""

    def __init__(self, upstream: int):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            pytest.skip("nginx is not installed")
        self.dir = tempfile.mkdtemp(prefix="tailgate-nows-")
        Path(self.dir).chmod(0o777)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (Path(self.dir) / "nginx.conf").write_text(NGINX_CONF.format(dir=self.dir, port=self.port, upstream=upstream))
        self.proc = subprocess.Popen([binary, "-p", self.dir, "-c", f"{self.dir}/nginx.conf", "-g", "daemon off; user root;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx did not start: {self.proc.stderr.read().decode()}")
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def proxy():
    started = []

    def start(gateway) -> Proxy:
        started.append(Proxy(gateway.port))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def other_errors(page):
    """Console errors other than the refused WebSockets' own."""
    return [e for e in browser_errors(page) if "/ws/" not in e]


def test_console_of_one_worker_over_server_sent_events(browser_gateway, proxy, page):
    gateway = browser_gateway("--demo", "1", "--demo-rate", "50")
    nginx = proxy(gateway)
    page.get(nginx.url("console.html?worker=demo-1"))
    state = wait_for(lambda: (s := inspect_console(page)) and s["transport"] == "sse" and s["cursor"] and s["cursor"] >= 100 and s,
                     timeout=20, message="records over Server-Sent Events")
    assert state["state"] == "live"
    assert page.find_element(By.ID, "st-conn").text == f"● live ({SSE_NOTE})"
    entries = inspect_console(page, lines=True)["entries"]
    seqs = [e["seq"] for e in entries if e["kind"] == "record"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # The event stream is the gateway's subscriber, counted like a socket.
    assert gateway.json("api/workers/demo-1")["subscribers"] == 1
    assert other_errors(page) == []


def test_merged_console_and_dashboard_over_server_sent_events(browser_gateway, proxy, page):
    gateway = browser_gateway("--demo", "3", "--demo-rate", "20")
    nginx = proxy(gateway)
    page.get(nginx.url("console.html?workers=demo-1,demo-2"))
    state = wait_for(lambda: (s := inspect_console(page)) and s["transport"] == "sse" and len(s["workers"]) == 2
                     and all(w["cursor"] >= 20 for w in s["workers"].values()) and s, timeout=20, message="two workers over SSE")
    assert page.find_element(By.ID, "st-conn").text == f"● live ({SSE_NOTE})"

    # Adding a worker reopens the event stream with everyone's resumption: no hole, no duplicate.
    page.find_element(By.ID, "add-worker").click()
    wait_for(lambda: page.find_elements(By.CSS_SELECTOR, '.pick[data-name="demo-3"]'), message="the worker list")[0].click()
    after = wait_for(lambda: (s := inspect_console(page, lines=True)) and len(s["workers"]) == 3
                     and all(w["cursor"] >= 40 for w in s["workers"].values()) and s, timeout=20, message="three workers over SSE")
    runs = {}
    for entry in after["entries"]:
        if entry["kind"] == "record":
            runs.setdefault(entry["worker"], []).append(entry["seq"])
    for worker, seqs in runs.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), worker
    assert [e for e in after["entries"] if e["kind"] == "gap"] == []
    assert other_errors(page) == []

    # The dashboard: the workers on screen over one event stream.
    page.get(nginx.url("/"))
    wait_for(lambda: SSE_NOTE in page.find_element(By.ID, "conn").text, timeout=20, message="the dashboard on SSE")
    wait_for(lambda: all(len(card.find_elements(By.CSS_SELECTOR, ".mini .line:not([hidden])")) >= 5
                         for card in page.find_elements(By.CSS_SELECTOR, ".card")), message="lines in the cards")
    assert other_errors(page) == []


def test_server_sent_events_end_closes_the_stream(browser_gateway, proxy, page):
    from test_runs_ui import publish, stop

    gateway = browser_gateway()
    publish(gateway, "job-sse", [f"line {n}" for n in range(1, 31)])
    nginx = proxy(gateway)
    page.get(nginx.url("console.html?worker=job-sse"))
    wait_for(lambda: (s := inspect_console(page)) and s["transport"] == "sse" and s["cursor"] == 30, timeout=20, message="30 records over SSE")
    wait_for(lambda: gateway.json("api/workers/job-sse")["subscribers"] == 1, message="one subscriber")
    publish(gateway, "job-sse", ["last words"])
    stop(gateway, "job-sse", exit_code=3)
    banner = wait_for(lambda: (b := page.find_element(By.ID, "banner")).is_displayed() and b, message="the finished banner")
    assert "failed (exit 3)" in banner.text and "last seq 31" in banner.text
    assert inspect_console(page)["state"] == "ended"
    # The page closed its event stream on `end`: the browser does not reconnect it.
    wait_for(lambda: gateway.json("api/workers/job-sse")["subscribers"] == 0, message="no subscriber left")
    time.sleep(3.5)  # longer than EventSource's reconnection delay
    assert gateway.json("api/workers/job-sse")["subscribers"] == 0
    assert other_errors(page) == []


def test_merged_console_over_server_sent_events_resumes_after_a_restart(browser_gateway, proxy, page):
    from test_merged_console import assert_contiguous, records_by_worker

    gateway = browser_gateway("--demo", "2", "--demo-rate", "20")
    nginx = proxy(gateway)
    page.get(nginx.url("console.html?workers=demo-1,demo-2"))
    state = wait_for(lambda: (s := inspect_console(page)) and s["transport"] == "sse" and len(s["workers"]) == 2
                     and all(w["cursor"] >= 20 for w in s["workers"].values()) and s, timeout=20, message="two workers over SSE")
    epochs = {w: s["epoch"] for w, s in state["workers"].items()}
    gateway.restart()  # nginx answers 502 meanwhile; the event stream is reopened with resume=
    after = wait_for(lambda: (s := inspect_console(page, lines=True)) and s["state"] == "live"
                     and all(s["workers"][w]["epoch"] != epochs[w] for w in epochs)
                     and all(len(records_by_worker(s["entries"]).get((w, 1), [])) >= 20 for w in epochs) and s,
                     timeout=40, message="the new runs over SSE")
    assert after["transport"] == "sse"
    assert_contiguous(after["entries"])
    for worker in epochs:
        assert records_by_worker(after["entries"])[(worker, 1)][0] == 1
    assert [e for e in after["entries"] if e["kind"] == "gap"] == []
    assert all("/ws/" in e or "502" in e or "events" in e for e in browser_errors(page)), browser_errors(page)
