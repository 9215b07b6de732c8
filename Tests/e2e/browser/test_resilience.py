"""Reconnection and resumption across a gateway restart; gap, end and finished banners."""

import time

from selenium.webdriver.common.by import By

from conftest import browser_errors, fake_record, inspect_console, wait_for


def runs_of(entries):
    """Record seqs per run, and the marker lines."""
    runs, markers = {}, []
    for entry in entries:
        if entry["kind"] == "record":
            runs.setdefault(entry["run"], []).append(entry)
        else:
            markers.append(entry)
    return runs, markers


def test_gateway_restart_reconnects_and_resumes_without_duplicates_or_holes(browser_gateway, page):
    gateway = browser_gateway("--demo", "1", "--demo-rate", "50")
    page.get(gateway.url("console.html?worker=demo-1"))
    first = wait_for(lambda: (s := inspect_console(page)) and s["cursor"] and s["cursor"] >= 100 and s, message="100 records")
    old_epoch = first["epoch"]

    gateway.restart()  # SIGTERM: streams are closed with 1001; then the same port again
    wait_for(lambda: page.find_element(By.ID, "status").get_attribute("data-state") != "live"
             or inspect_console(page)["epoch"] != old_epoch, timeout=10, message="the drop noticed")
    state = wait_for(lambda: (s := inspect_console(page)) and s["epoch"] != old_epoch and s["state"] == "live"
                     and s["cursor"] >= 150 and s, timeout=30, message="the new run streaming")
    assert state["run"] == 1

    exported = gateway.records("demo-1")
    state = inspect_console(page, lines=True)
    runs, markers = runs_of(state["entries"])
    assert [m["kind"] for m in markers] == ["restart"], markers
    assert "stream restarted" in markers[0]["text"]

    # Within each run: consecutive seqs, no duplicates, no holes.
    for run, records in runs.items():
        seqs = [r["seq"] for r in records]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"run {run}: {seqs[:5]}…"
    old, new = [r["seq"] for r in runs[0]], [r["seq"] for r in runs[1]]
    assert old[-1] >= 100
    # The new run from its very first record, exactly as the gateway's export has it.
    assert new[0] == 1 and exported[0]["seq"] == 1
    by_seq = {r["seq"]: r for r in exported}
    common = [r for r in runs[1] if r["seq"] in by_seq]
    assert len(common) >= 100
    for record in common:
        assert record["level"] == by_seq[record["seq"]]["level"]
        assert record["text"] == by_seq[record["seq"]]["message"].replace("\x1b[32m", "").replace("\x1b[33m", "") \
            .replace("\x1b[31m", "").replace("\x1b[0m", "")
    assert [r["seq"] for r in exported[: len(new)]] == new[: len(exported)]

    # The separator is on screen when scrolled to.
    page.find_element(By.TAG_NAME, "body").send_keys("g")
    position = page.execute_script(
        "const m = await import(new URL('js/console-app.js', document.baseURI).href);"
        "const app = m.currentConsole(); const id = app.store.entries.find((e) => e.kind === 2).id;"
        "app.reveal(id); return id;")
    wait_for(lambda: page.find_elements(By.CSS_SELECTOR, f'#log .line.restart[data-id="{position}"]'), message="separator row")
    assert browser_errors(page) == [] or all("WebSocket" in e or "ERR_CONNECTION_REFUSED" in e for e in browser_errors(page))


def test_gap_marker_for_records_no_longer_available(browser_gateway, page):
    # Memory only: with history on disk, records that leave the ring are read back, never gapped.
    gateway = browser_gateway("--demo", "1", "--demo-rate", "200", "--ring-records", "50", "--memory-only")
    wait_for(lambda: gateway.json("api/workers/demo-1")["first_seq"] > 100, message="evictions")
    page.get(gateway.url("console.html?worker=demo-1#L1"))  # resume from seq 0: the first records are gone
    gap = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, "#log .line.gap"), message="a gap row")[0]
    assert gap.get_attribute("data-from") == "1"
    last_missing = int(gap.get_attribute("data-to"))
    assert last_missing >= 100
    assert gap.text == f"… {last_missing:,} lines not available (seq 1–{last_missing}) …"
    banner = page.find_element(By.ID, "banner")
    assert banner.is_displayed() and "Line 1 is no longer available" in banner.text
    state = inspect_console(page, lines=True)
    records = [e["seq"] for e in state["entries"] if e["kind"] == "record"]
    assert records[0] == last_missing + 1
    assert records == list(range(records[0], records[0] + len(records)))


def test_scripted_stream_gap_end_and_finished_banner(fake_gateway, page):
    script = [
        {"type": "hello", "worker": "job-7", "state": "running", "first_seq": 1, "last_seq": 5, "replay_from": 1,
         "server_time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "epoch": "one"},
        {"type": "logs", "records": [fake_record(1), fake_record(2, "WARNING"), fake_record(3, "INFO", "\x1b[1;31mred bold\x1b[0m plain")]},
        {"type": "logs", "records": [fake_record(4, "DEBUG"), fake_record(5, "ERROR", "order rejected")]},
        0.3,
        {"type": "gap", "from": 6, "to": 10, "reason": "evicted"},
        {"type": "logs", "records": [fake_record(11), fake_record(12, "CRITICAL", "gateway disconnected")]},
        0.3,
        {"type": "end", "worker": "job-7", "last_seq": 12, "reason": "worker stopped"},
    ]
    fake = fake_gateway("job-7", script)
    page.get(fake.url("console.html?worker=job-7"))
    banner = wait_for(lambda: (b := page.find_element(By.ID, "banner")).is_displayed() and b, message="the finished banner")
    assert "Worker finished" in banner.text and "last seq 12" in banner.text
    rows = page.execute_script(
        "return [...document.querySelectorAll('#log .line:not([hidden])')]"
        ".sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)"
        ".map((r) => [r.dataset.seq || r.className, r.textContent])")
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "line marker gap", "11", "12", "line marker end"]
    assert rows[5][1] == "… 5 lines not available (seq 6–10) …"
    assert "worker finished" in rows[8][1]
    ansi = page.execute_script("return [...document.querySelectorAll('#log .line[data-seq=\"3\"] .ansi')].map((s) => [s.className, s.textContent])")
    assert ansi == [["ansi ansi-fg1 ansi-bold", "red bold"]]
    assert page.find_element(By.ID, "status").get_attribute("data-state") == "ended"
    assert page.find_element(By.ID, "state").text == "finished"
    assert page.find_element(By.ID, "errors").text == "⚠ 2"
    time.sleep(1.5)
    assert fake.connections == 1  # finished: no reconnection
    assert browser_errors(page) == []
