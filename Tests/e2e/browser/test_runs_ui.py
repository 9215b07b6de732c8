"""Runs in a real browser: the console's run picker (statuses, an old run, its downloads, the URL),
resuming by epoch (`"resumed":false` shown as a new run), following the next run after `end`, and the
dashboard's status badges."""

import json
import subprocess
import time
import urllib.parse
import urllib.request

from selenium.webdriver.common.by import By

from conftest import FakeGateway, browser_errors, fake_record, inspect_console, tailgate_binary, wait_for


def post(gateway, path: str, body: bytes = b"", content_type: str = "text/plain; charset=utf-8", token: str | None = None):
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(gateway.url(path), data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text.strip() else None


def publish(gateway, worker: str, lines: list[str], token: str | None = None) -> dict:
    return post(gateway, f"api/workers/{worker}/records", "".join(f"{line}\n" for line in lines).encode(), token=token)


def stop(gateway, worker: str, exit_code: int | None = None, token: str | None = None) -> dict:
    query = "" if exit_code is None else f"?exit_code={exit_code}"
    return post(gateway, f"api/workers/{worker}/stop{query}", token=token)


def record_texts(page) -> list[tuple[int, str]]:
    entries = inspect_console(page, lines=True)["entries"]
    return [(e["seq"], e["text"]) for e in entries if e["kind"] == "record"]


def picker_items(page) -> list[dict]:
    return page.execute_script(
        "return [...document.querySelectorAll('#run-list .run-item')].map((item) => ({"
        " epoch: item.dataset.epoch, status: item.querySelector('.run-status').textContent,"
        " dataStatus: item.dataset.status, records: item.querySelector('.run-records').textContent,"
        " current: item.dataset.current === 'true', selected: item.getAttribute('aria-selected') === 'true',"
        " colour: getComputedStyle(item.querySelector('.run-status')).color }))")


def open_picker(page) -> list[dict]:
    if page.find_element(By.ID, "run-list").get_attribute("hidden") is not None:
        page.find_element(By.ID, "run-select").click()
    return wait_for(lambda: (items := picker_items(page)) and items, message="the run list")


def test_run_picker_old_run_downloads_url_and_dashboard_badges(browser_gateway, page, tmp_path):
    gateway = browser_gateway("--data-dir", str(tmp_path / "data"))
    # Two runs of job-a: the first fails with exit code 1, the second is running.
    publish(gateway, "job-a", [f"first run line {n}" for n in range(1, 31)])
    stopped = stop(gateway, "job-a", exit_code=1)
    assert stopped["status"] == "failed" and stopped["exit_code"] == 1
    publish(gateway, "job-a", [f"second run line {n}" for n in range(1, 11)])
    # job-b ran once and failed; job-c succeeded: both stay listed.
    publish(gateway, "job-b", ["b only line"])
    stop(gateway, "job-b", exit_code=3)
    publish(gateway, "job-c", ["c only line"])
    stop(gateway, "job-c", exit_code=0)
    runs = gateway.json("api/workers/job-a/runs")["runs"]
    assert [r["status"] for r in runs] == ["running", "failed"]
    new, old = runs[0]["epoch"], runs[1]["epoch"]
    assert stopped["epoch"] == old

    # The console follows the current run; the picker lists both runs, newest first, with their statuses.
    page.get(gateway.url("console.html?worker=job-a"))
    wait_for(lambda: [t for _, t in record_texts(page)] == [f"second run line {n}" for n in range(1, 11)], message="the second run")
    wait_for(lambda: page.find_element(By.ID, "runs").is_displayed(), message="the run picker")
    wait_for(lambda: page.find_element(By.ID, "run-status").text == "running", message="running in the picker")
    items = open_picker(page)
    assert [i["epoch"] for i in items] == [new, old]
    assert [i["status"] for i in items] == ["running", "failed (exit 1)"]
    assert [i["records"] for i in items] == ["10 records", "30 records"]
    assert [i["current"] for i in items] == [True, False] and [i["selected"] for i in items] == [True, False]
    assert items[0]["colour"] != items[1]["colour"]  # one colour per status
    download = page.find_element(By.ID, "download-server").get_attribute("href")
    assert f"/api/workers/job-a/runs/{new}/logs?" in download

    # Choosing the old run shows its lines (and only them), its status, and puts it in the URL.
    page.find_element(By.CSS_SELECTOR, f'#run-list .run-item[data-epoch="{old}"]').click()
    wait_for(lambda: (s := inspect_console(page)) and s["state"] == "ended" and s["runEpoch"] == old, message="the old run, ended")
    assert record_texts(page) == [(n, f"first run line {n}") for n in range(1, 31)]
    assert f"run={old}" in page.current_url and "worker=job-a" in page.current_url
    assert page.find_element(By.ID, "run-list").get_attribute("hidden") is not None
    assert page.find_element(By.ID, "run-status").text == "failed (exit 1)"
    banner = page.find_element(By.ID, "banner")
    assert banner.is_displayed() and "failed (exit 1)" in banner.text and "last seq 30" in banner.text
    end_marker = [e for e in inspect_console(page, lines=True)["entries"] if e["kind"] == "end"]
    assert len(end_marker) == 1 and "failed (exit 1)" in end_marker[0]["text"]
    # Its downloads are the run's export, as text and as NDJSON.
    text_href = page.find_element(By.ID, "download-server").get_attribute("href")
    ndjson_href = page.find_element(By.ID, "download-ndjson").get_attribute("href")
    for href, fmt in ((text_href, "text"), (ndjson_href, "ndjson")):
        parsed = urllib.parse.urlsplit(href)
        assert parsed.path == f"/api/workers/job-a/runs/{old}/logs"
        assert urllib.parse.parse_qs(parsed.query) == {"download": ["1"], "format": [fmt]}
    with urllib.request.urlopen(text_href, timeout=10) as response:
        assert "attachment" in (response.headers.get("Content-Disposition") or "")
        exported = response.read().decode().splitlines()
    assert len(exported) == 30 and exported[0].endswith("first run line 1") and "second run" not in "".join(exported)
    with urllib.request.urlopen(ndjson_href, timeout=10) as response:
        assert [json.loads(line)["message"] for line in response.read().decode().splitlines()][-1] == "first run line 30"

    # Back: the current run again, followed live.
    page.back()
    wait_for(lambda: (s := inspect_console(page)) and s["runEpoch"] is None and s["state"] == "live"
             and len(record_texts(page)) == 10, message="the current run again")
    assert "run=" not in page.current_url
    publish(gateway, "job-a", ["second run line 11"])
    wait_for(lambda: record_texts(page)[-1] == (11, "second run line 11"), message="a live line")

    # A bookmarked run opens on that run.
    page.get(gateway.url(f"console.html?worker=job-a&run={old}"))
    wait_for(lambda: (s := inspect_console(page)) and s["state"] == "ended" and s["lines"] == 31, message="the bookmarked run")
    assert record_texts(page)[-1] == (30, "first run line 30")
    wait_for(lambda: page.find_element(By.ID, "run-status").text == "failed (exit 1)", message="its status")
    items = open_picker(page)
    assert [i["selected"] for i in items] == [False, True]
    # Choosing the current run from there follows it live (the URL drops the run).
    page.find_element(By.CSS_SELECTOR, f'#run-list .run-item[data-epoch="{new}"]').click()
    wait_for(lambda: (s := inspect_console(page)) and s["runEpoch"] is None and s["state"] == "live"
             and len(record_texts(page)) == 11, message="the current run")
    assert "run=" not in page.current_url

    # The dashboard: every worker with the status of its last run, stopped ones included.
    page.get(gateway.url("/"))
    wait_for(lambda: len(page.find_elements(By.CSS_SELECTOR, ".card")) == 3, message="three cards")

    def badge(worker):
        element = page.find_element(By.CSS_SELECTOR, f'.card[data-worker="{worker}"] .state')
        return element.text, element.get_attribute("data-status")

    wait_for(lambda: badge("job-b") == ("failed (exit 3)", "failed"), message="job-b failed")
    assert badge("job-a") == ("running", "running")
    assert badge("job-c") == ("succeeded", "succeeded")
    assert "stopped" in page.find_element(By.CSS_SELECTOR, '.card[data-worker="job-b"]').get_attribute("class")
    # The stopped worker's last lines are on its card.
    wait_for(lambda: "b only line" in page.find_element(By.CSS_SELECTOR, '.card[data-worker="job-b"] .mini').text,
             message="job-b's last line")
    assert browser_errors(page) == []

    # A run the gateway does not have, and one that cannot be a run.
    page.get(gateway.url("console.html?worker=job-a&run=0nosuchrun0"))
    missing = wait_for(lambda: (m := page.find_element(By.ID, "missing")).is_displayed() and m, message="no such run")
    assert "No such run" in missing.text and "0nosuchrun0" in missing.text
    page.get(gateway.url("console.html?worker=job-a&run=Not-A-Run"))
    missing = wait_for(lambda: (m := page.find_element(By.ID, "missing")).is_displayed() and m, message="not a run")
    assert "not a valid run" in missing.text
    missing.find_element(By.LINK_TEXT, "Show the current run of job-a").click()
    wait_for(lambda: (s := inspect_console(page)) and s["state"] == "live" and len(record_texts(page)) == 11, message="back to the current run")


def test_reconnect_names_the_epoch_and_shows_a_new_run_from_its_start(browser_gateway, page, tmp_path):
    gateway = browser_gateway("--data-dir", str(tmp_path / "data"))
    publish(gateway, "job-r", [f"run one line {n}" for n in range(1, 6)])
    page.get(gateway.url("console.html?worker=job-r"))
    first = wait_for(lambda: (s := inspect_console(page)) and s["cursor"] == 5 and s, message="run one")
    # The stream drops; meanwhile the worker's run ends and a new one starts.
    page.find_element(By.ID, "connect").click()
    wait_for(lambda: inspect_console(page)["state"] == "disconnected", message="disconnected")
    stop(gateway, "job-r")
    publish(gateway, "job-r", [f"run two line {n}" for n in range(1, 4)])
    page.find_element(By.ID, "connect").click()
    state = wait_for(lambda: (s := inspect_console(page, lines=True)) and s["epoch"] != first["epoch"] and s["cursor"] == 3 and s,
                     message="run two")
    assert state["resumed"] is False  # the reconnect named its epoch; the gateway said it is not current
    kinds = [(e["kind"], e.get("seq")) for e in state["entries"]]
    assert kinds == [("record", 1), ("record", 2), ("record", 3), ("record", 4), ("record", 5), ("restart", None),
                     ("record", 1), ("record", 2), ("record", 3)]
    marker = [e for e in state["entries"] if e["kind"] == "restart"][0]
    assert f"previous run {first['epoch']}" in marker["text"] and "from its first record" in marker["text"]
    assert page.find_element(By.CSS_SELECTOR, "#log .line.restart").text == marker["text"]
    # The run list has the new run.
    wait_for(lambda: [(r["epoch"], r["status"]) for r in inspect_console(page)["runs"] or []]
             == [(state["epoch"], "running"), (first["epoch"], "stopped")], message="the run list refreshed")
    assert browser_errors(page) == []


def test_following_a_worker_goes_on_with_its_next_run(browser_gateway, page, tmp_path):
    gateway = browser_gateway("--data-dir", str(tmp_path / "data"))
    publish(gateway, "job-f", ["first run only line"])
    page.get(gateway.url("console.html?worker=job-f"))
    wait_for(lambda: (s := inspect_console(page)) and s["cursor"] == 1 and s["runs"], message="run one")
    stop(gateway, "job-f", exit_code=0)
    banner = wait_for(lambda: (b := page.find_element(By.ID, "banner")).is_displayed() and b, message="the finished banner")
    assert "Worker finished" in banner.text and "succeeded" in banner.text
    wait_for(lambda: page.find_element(By.ID, "run-status").text == "succeeded", message="succeeded in the picker")
    publish(gateway, "job-f", ["second run line 1", "second run line 2"])
    # The run list is polled: the console goes on with the new run, from its first record.
    wait_for(lambda: record_texts(page)[-2:] == [(1, "second run line 1"), (2, "second run line 2")], timeout=20,
             message="the next run")
    state = inspect_console(page, lines=True)
    assert [e["kind"] for e in state["entries"]] == ["record", "end", "restart", "record", "record"]
    assert state["state"] == "live" and not page.find_element(By.ID, "banner").is_displayed()
    wait_for(lambda: page.find_element(By.ID, "run-status").text == "running", message="running in the picker")


def test_run_urls_keep_the_base_path_and_the_access_token(browser_gateway, page, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"run-picker-test-secret-0123456789\n")
    secret.chmod(0o600)
    made = subprocess.run([str(tailgate_binary()), "token", "--secret-file", str(secret), "--worker", "*",
                           "--scope", "read,publish", "--ttl", "1h"], capture_output=True, text=True, timeout=20)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    gateway = browser_gateway("--data-dir", str(tmp_path / "data"), "--auth-secret-file", str(secret), "--base-path", "/tailgate")
    publish(gateway, "job-t", ["old line 1", "old line 2", "old line 3"], token=token)
    old = stop(gateway, "job-t", exit_code=2, token=token)["epoch"]
    publish(gateway, "job-t", ["new line 1", "new line 2"], token=token)

    page.get(gateway.url(f"tailgate/console.html?worker=job-t&access_token={token}"))
    wait_for(lambda: [t for _, t in record_texts(page)] == ["new line 1", "new line 2"], message="the current run")
    items = open_picker(page)
    assert [i["status"] for i in items] == ["running", "failed (exit 2)"]
    for href in page.execute_script("return [...document.querySelectorAll('#run-list .run-item')].map((a) => a.href)"):
        parsed = urllib.parse.urlsplit(href)
        assert parsed.path == "/tailgate/console.html" and urllib.parse.parse_qs(parsed.query)["access_token"] == [token]
    page.find_element(By.CSS_SELECTOR, f'#run-list .run-item[data-epoch="{old}"]').click()
    wait_for(lambda: (s := inspect_console(page)) and s["state"] == "ended" and s["runEpoch"] == old, message="the old run")
    assert [t for _, t in record_texts(page)] == ["old line 1", "old line 2", "old line 3"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.current_url).query)
    assert query == {"worker": ["job-t"], "access_token": [token], "run": [old]}
    href = page.find_element(By.ID, "download-ndjson").get_attribute("href")
    parsed = urllib.parse.urlsplit(href)
    assert parsed.path == f"/tailgate/api/workers/job-t/runs/{old}/logs"
    assert urllib.parse.parse_qs(parsed.query)["access_token"] == [token]
    with urllib.request.urlopen(href, timeout=10) as response:
        assert [json.loads(line)["message"] for line in response.read().decode().splitlines()] == ["old line 1", "old line 2", "old line 3"]
    assert browser_errors(page) == []


# A scripted gateway for what the real one does not do on demand: a stream that drops between two runs.

class RunsFake(FakeGateway):
    """One worker, `job-9`, with three runs; its live stream drops after the first connection."""

    def __init__(self):
        self.paths: list[str] = []
        self.runs = [
            {"epoch": "runtwo", "status": "running", "exit_code": None, "reason": None, "current": True,
             "started_at": "2026-11-30T03:05:00.000000Z", "stopped_at": None, "first_seq": 1, "last_seq": 3, "records": 3},
            {"epoch": "runone", "status": "failed", "exit_code": 2, "reason": "exited with status 2", "current": False,
             "started_at": "2026-11-30T03:00:00.000000Z", "stopped_at": "2026-11-30T03:01:00.000000Z",
             "first_seq": 1, "last_seq": 4, "records": 4},
        ]
        super().__init__("job-9", [])

    def _worker_json(self) -> dict:
        current = self.runs[0]
        return {**super()._worker_json(), "epoch": current["epoch"], "status": current["status"],
                "exit_code": current["exit_code"], "reason": current["reason"]}

    def _http(self, connection, request):
        path = request.path.split("?", 1)[0]
        if path in ("/ws/workers/job-9", "/ws/workers/job-9/runs/runone"):
            return None
        if path == "/api/workers/job-9/runs":
            return self._response(200, json.dumps({"worker": "job-9", "runs": self.runs}).encode(), "application/json")
        return super()._http(connection, request)

    @staticmethod
    def hello(epoch: str, status: str, last_seq: int, **extra) -> dict:
        return {"type": "hello", "worker": "job-9", "state": "running" if status == "running" else "stopped", "status": status,
                "first_seq": 1, "last_seq": last_seq, "replay_from": 1,
                "server_time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "epoch": epoch, **extra}

    async def _stream(self, websocket) -> None:
        import asyncio

        path = websocket.request.path
        self.paths.append(path)
        if path.startswith("/ws/workers/job-9/runs/runone"):
            await websocket.send(json.dumps(self.hello("runone", "failed", 4)))
            await websocket.send(json.dumps({"type": "logs", "records": [fake_record(n, "INFO", f"old run line {n}") for n in range(1, 5)]}))
            await websocket.send(json.dumps({"type": "end", "worker": "job-9", "last_seq": 4, "reason": "exited with status 2",
                                             "epoch": "runone", "status": "failed", "exit_code": 2}))
            await websocket.close(1000, "worker stopped")
            return
        live = [p for p in self.paths if not p.startswith("/ws/workers/job-9/runs/")]
        if len(live) == 1:
            await websocket.send(json.dumps(self.hello("runtwo", "running", 3)))
            await websocket.send(json.dumps({"type": "logs", "records": [fake_record(n, "INFO", f"run two line {n}") for n in range(1, 4)]}))
            await asyncio.sleep(0.5)
            # runtwo is interrupted; runthree starts; the stream drops.
            self.runs[0] = {**self.runs[0], "status": "interrupted", "current": False, "reason": "gateway stopped",
                            "stopped_at": "2026-11-30T03:06:00.000000Z"}
            self.runs.insert(0, {"epoch": "runthree", "status": "running", "exit_code": None, "reason": None, "current": True,
                                 "started_at": "2026-11-30T03:07:00.000000Z", "stopped_at": None, "first_seq": 1,
                                 "last_seq": 2, "records": 2})
            await websocket.close(1001, "going away")
            return
        resumed = {"resumed": False, "reason": "run runtwo is not the current run of job-9"} if "epoch=" in path else {}
        await websocket.send(json.dumps(self.hello("runthree", "running", 2, **resumed)))
        await websocket.send(json.dumps({"type": "logs", "records": [fake_record(n, "INFO", f"run three line {n}") for n in range(1, 3)]}))
        await websocket.wait_closed()


def test_scripted_reconnect_sends_epoch_and_since_and_old_run_stream(page):
    fake = RunsFake()
    try:
        page.get(fake.url("console.html?worker=job-9"))
        state = wait_for(lambda: (s := inspect_console(page, lines=True)) and s["epoch"] == "runthree" and s["cursor"] == 2 and s,
                         message="run three after the drop")
        live = [p for p in fake.paths if not p.startswith("/ws/workers/job-9/runs/")]
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(live[1]).query) == {"epoch": ["runtwo"], "since": ["3"]}
        assert state["resumed"] is False
        assert [(e["kind"], e.get("seq")) for e in state["entries"]] == [
            ("record", 1), ("record", 2), ("record", 3), ("restart", None), ("record", 1), ("record", 2)]
        assert "a new run started (previous run runtwo)" in state["entries"][3]["text"]
        # The restart made the console fetch the runs again.
        wait_for(lambda: [r["epoch"] for r in inspect_console(page)["runs"] or []] == ["runthree", "runtwo", "runone"],
                 message="the new run listed")
        items = open_picker(page)
        assert [i["status"] for i in items] == ["running", "interrupted", "failed (exit 2)"]
        assert [i["dataStatus"] for i in items] == ["running", "interrupted", "failed"]
        page.find_element(By.CSS_SELECTOR, '#run-list .run-item[data-epoch="runone"]').click()
        wait_for(lambda: (s := inspect_console(page)) and s["state"] == "ended" and s["runEpoch"] == "runone", message="run one")
        assert record_texts(page) == [(n, f"old run line {n}") for n in range(1, 5)]
        assert fake.paths[-1].startswith("/ws/workers/job-9/runs/runone?")
        assert page.current_url.endswith("console.html?worker=job-9&run=runone")
        banner = page.find_element(By.ID, "banner").text
        assert "Run runone finished — failed (exit 2): exited with status 2 — last seq 4" in banner
        assert page.find_element(By.ID, "state").text == "finished"
        assert browser_errors(page) == []
    finally:
        fake.stop()
