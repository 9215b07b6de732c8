"""The merged console (`console.html?workers=…`) in a real browser against a real gateway: several
workers on one `/ws/streams` socket, interleaved by timestamp and tagged; resumption after the gateway
restarts; the worker picker adding and removing workers on the open socket; the selection in the URL."""

import urllib.parse

from selenium.webdriver.common.by import By

from conftest import browser_errors, inspect_console, screenshot, wait_for

# Counts the WebSockets the page opens, and how many were open at once (a test-only script run before
# the page's own; the count is what the browser was asked to open, so a page opening a socket per
# worker fails the test).
COUNT_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.__live = 0;
  window.__maxLive = 0;
  window.WebSocket = function (url, protocols) {
    window.__sockets.push(String(url));
    const socket = protocols === undefined ? new Native(url) : new Native(url, protocols);
    window.__maxLive = Math.max(window.__maxLive, ++window.__live);
    socket.addEventListener('close', () => { window.__live--; });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  for (const key of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) window.WebSocket[key] = Native[key];
})();
"""

MERGE_ORDER = """
const done = arguments[arguments.length - 1];
import(new URL('js/merge.js', document.baseURI).href).then((m) => {
  const store = new m.MergedStore();
  const ts = (ms) => new Date(Date.UTC(2026, 0, 1) + ms).toISOString().replace('Z', '000Z');
  const rec = (seq, ms) => ({ seq, timestamp: ts(ms), level: 'INFO', message: `m${seq}` });
  store.addRecords('b', 'e', [rec(1, 5), rec(2, 25), rec(3, 40)]);
  store.addRecords('a', 'e', [rec(1, 10), rec(2, 20), rec(3, 30)]);
  store.addRecords('c', 'e', [rec(1, 20), rec(2, 20)]);
  store.addRecords('a', 'e', [rec(3, 30), rec(4, 35)]);  // seq 3 again: left out
  const ids = store.entries.map((e) => e.id);
  // Many lines inserted at one place: ids run out between neighbours and every line is numbered again.
  const crowded = new m.MergedStore();
  let renumbered = 0;
  crowded.on('renumber', () => renumbered++);
  crowded.addRecords('z', 'e', [rec(1, 1000), rec(2, 1001)]);
  for (let i = 0; i < 100; i++) crowded.addRecords(`w${String(i).padStart(3, '0')}`, 'e', [rec(1, 1000)]);
  const crowdedIds = crowded.entries.map((e) => e.id);
  done({ order: store.entries.map((e) => `${e.worker}${e.seq}`), ascending: ids.every((id, i) => i === 0 || id > ids[i - 1]),
         view: store.view.length, color: [m.workerColorIndex('demo-1'), m.workerColorIndex('demo-1')],
         crowded: { renumbered, ascending: crowdedIds.every((id, i) => i === 0 || id > crowdedIds[i - 1]),
                    view: crowded.view.length, first: crowded.entries[0].worker, last: crowded.entries.at(-1).seq,
                    sorted: crowded.entries.slice(0, -2).every((e, i, a) => i === 0 || a[i - 1].worker < e.worker) } });
}).catch((e) => done({ error: String(e) }));
"""


def count_sockets(page):
    return page.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": COUNT_SOCKETS})["identifier"]


def records_by_worker(entries):
    """Record seqs per (worker, run)."""
    out = {}
    for entry in entries:
        if entry["kind"] == "record":
            out.setdefault((entry["worker"], entry["run"]), []).append(entry["seq"])
    return out


def assert_merged_order(entries):
    records = [e for e in entries if e["kind"] == "record"]
    keys = [(r["ts"], r["worker"], r["seq"]) for r in records]
    assert keys == sorted(keys), "records are not in timestamp order"


def assert_contiguous(entries):
    for (worker, run), seqs in records_by_worker(entries).items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{worker} run {run}: holes or duplicates in {seqs[:8]}…"


def test_merge_order_in_the_page(browser_gateway, page):
    gateway = browser_gateway("--demo", "1", "--demo-rate", "1")
    page.get(gateway.url("index.html"))
    result = page.execute_async_script(MERGE_ORDER)
    assert result["order"] == ["b1", "a1", "a2", "c1", "c2", "b2", "a3", "a4", "b3"], result
    assert result["ascending"] and result["view"] == 9
    assert result["color"][0] == result["color"][1]
    crowded = result["crowded"]
    assert crowded["renumbered"] >= 1 and crowded["ascending"] and crowded["view"] == 102 and crowded["sorted"]
    assert crowded["last"] == 2  # z's second record (1 ms later) stays last


def test_merged_console_interleaves_tags_and_resumes_after_a_restart(browser_gateway, page):
    gateway = browser_gateway("--demo", "3", "--demo-rate", "20")
    script = count_sockets(page)
    try:
        page.get(gateway.url("console.html?workers=demo-1,demo-2,demo-3"))
        state = wait_for(lambda: (s := inspect_console(page, lines=True)) and len(s["workers"]) == 3
                         and all(w["cursor"] and w["cursor"] >= 30 for w in s["workers"].values()) and s,
                         message="records of the three workers")
        assert state["merged"] and state["names"] == ["demo-1", "demo-2", "demo-3"]
        assert_merged_order(state["entries"])
        assert_contiguous(state["entries"])
        assert {e["worker"] for e in state["entries"] if e["kind"] == "record"} == {"demo-1", "demo-2", "demo-3"}

        # Every row is tagged with its worker, in the worker's own colour.
        tags = page.execute_script(
            "return [...document.querySelectorAll('#log .line[data-worker]:not([hidden])')]"
            ".map((r) => [r.dataset.worker, r.querySelector('.wk')?.textContent, r.querySelector('.wk')?.className,"
            " getComputedStyle(r.querySelector('.wk')).color])")
        assert len(tags) > 10
        colours = {}
        for worker, text, cls, colour in tags:
            assert text == worker
            colours.setdefault(worker, set()).add((cls, colour))
        assert all(len(c) == 1 for c in colours.values()), colours
        assert len({next(iter(c))[1] for c in colours.values()}) == len(colours), "two workers share a colour"
        assert page.find_element(By.ID, "st-conn").text == "● live"
        screenshot(page, "console-merged.png")

        # The gateway goes away and comes back (same port and data dir): every worker resumes.
        before = {w: s["cursor"] for w, s in state["workers"].items()}
        epochs = {w: s["epoch"] for w, s in state["workers"].items()}
        gateway.restart()
        wait_for(lambda: all((s := inspect_console(page))["workers"].get(w, {}).get("epoch") not in (None, epochs[w])
                             for w in epochs) and s["state"] == "live", timeout=30, message="the new runs streaming")
        after = wait_for(lambda: (s := inspect_console(page, lines=True)) and all(
            len(records_by_worker(s["entries"]).get((w, 1), [])) >= 20 for w in epochs) and s, message="records of the new runs")
        assert_contiguous(after["entries"])
        for worker in epochs:
            old = records_by_worker(after["entries"])[(worker, 0)]
            assert old[-1] >= before[worker]
            new = records_by_worker(after["entries"])[(worker, 1)]
            assert new[0] == 1  # the new run from its first record
        restarts = [e for e in after["entries"] if e["kind"] == "restart"]
        assert sorted(e["worker"] for e in restarts) == ["demo-1", "demo-2", "demo-3"]
        assert_merged_order([e for e in after["entries"] if e["kind"] == "record" and e["run"] == 1])
        sockets = page.execute_script("return window.__sockets")
        assert all("/ws/streams" in url for url in sockets), sockets
        # One socket, reopened after the restart (with retries while the gateway was away), never two at once.
        assert len(sockets) >= 2 and page.execute_script("return window.__maxLive") == 1, sockets
        resumed = urllib.parse.parse_qs(urllib.parse.urlparse(sockets[-1]).query)
        assert "resume" in resumed and all(f"demo-{n}:" in resumed["resume"][0] for n in (1, 2, 3)), sockets[-1]
        errors = [e for e in browser_errors(page) if "WebSocket" not in e and "ERR_CONNECTION_REFUSED" not in e]
        assert errors == []
    finally:
        page.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script})


def test_worker_picker_adds_and_removes_workers_live_and_the_url_round_trips(browser_gateway, page):
    gateway = browser_gateway("--demo", "3", "--demo-rate", "20")
    script = count_sockets(page)
    try:
        page.get(gateway.url("console.html?workers=demo-1,demo-2&q=order&levels=INFO,WARNING,ERROR,CRITICAL&time=utc"))
        wait_for(lambda: len(inspect_console(page)["workers"]) == 2, message="two workers")
        assert page.find_element(By.ID, "search").get_attribute("value") == "order"
        assert page.find_element(By.ID, "time-mode").get_attribute("value") == "utc"

        # Add demo-3 from the picker, with the keyboard.
        page.find_element(By.ID, "add-worker").click()
        box = page.find_element(By.ID, "picker-filter")
        wait_for(lambda: page.find_elements(By.CSS_SELECTOR, '.pick[data-name="demo-3"]'), message="the worker list")
        box.send_keys("demo-3")
        wait_for(lambda: [e.get_attribute("data-name") for e in page.find_elements(By.CSS_SELECTOR, ".pick")] == ["demo-3"], message="filtered")
        box.send_keys("\ue015")  # arrow down to the option
        page.switch_to.active_element.send_keys("\ue007")  # Enter adds it
        wait_for(lambda: "demo-3" in inspect_console(page)["workers"], message="demo-3 streamed")
        wait_for(lambda: any(e["worker"] == "demo-3" for e in inspect_console(page, lines=True)["entries"] if e["kind"] == "record"),
                 message="demo-3's lines")
        assert urllib.parse.parse_qs(urllib.parse.urlparse(page.current_url).query)["workers"] == ["demo-1,demo-2,demo-3"]
        assert "workers=demo-1,demo-2,demo-3" in page.current_url  # readable, not %2C

        # Remove demo-1 with its chip's × : its lines leave the view.
        page.find_element(By.CSS_SELECTOR, '.chip-worker[data-name="demo-1"] .unpick').click()
        state = wait_for(lambda: (s := inspect_console(page, lines=True)) and "demo-1" not in s["workers"]
                         and not any(e.get("worker") == "demo-1" for e in s["entries"]) and s, message="demo-1 gone")
        assert set(state["workers"]) == {"demo-2", "demo-3"}
        assert state["opened"] == 1
        assert len(page.execute_script("return window.__sockets")) == 1  # all of it on the one socket
        url = page.current_url
        query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
        assert query["workers"] == ["demo-2,demo-3"] and query["q"] == ["order"] and query["time"] == ["utc"]

        # The URL round-trips: the same selection and view after a reload.
        page.get(url)
        again = wait_for(lambda: (s := inspect_console(page)) and len(s["workers"]) == 2 and s, message="reloaded")
        assert again["names"] == ["demo-2", "demo-3"] and again["view"]["q"] == "order" and again["view"]["time"] == "utc"
        assert [c.get_attribute("data-name") for c in page.find_elements(By.CSS_SELECTOR, ".chip-worker")] == ["demo-2", "demo-3"]

        # A line's permalink names its worker; opening it shows that line, highlighted.
        link = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, '#log .line[data-worker="demo-3"] a.seq'), message="a demo-3 row")[0]
        seq = link.text
        link.click()
        assert page.current_url.endswith(f"#Ldemo-3:{seq}")
        page.get("about:blank")
        page.get(url.split("#")[0] + f"#Ldemo-3:{seq}")
        row = wait_for(lambda: page.find_elements(By.CSS_SELECTOR, f'#log .line.permalink[data-worker="demo-3"][data-seq="{seq}"]'),
                       message="the permalinked line")[0]
        assert row.is_displayed()

        # A prefix pattern follows every worker it matches.
        page.get(gateway.url("console.html?workers=demo-*"))
        wait_for(lambda: sorted(inspect_console(page)["workers"]) == ["demo-1", "demo-2", "demo-3"], message="the pattern's workers")
        assert browser_errors(page) == []
    finally:
        page.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script})


def test_merged_console_shows_each_workers_gap_after_a_pause(browser_gateway, page):
    # Memory only, a small ring: records published while the console was disconnected are gone.
    gateway = browser_gateway("--demo", "2", "--demo-rate", "200", "--ring-records", "50", "--memory-only")
    page.get(gateway.url("console.html?workers=demo-1,demo-2&tail=10"))
    wait_for(lambda: (s := inspect_console(page)) and len(s["workers"]) == 2 and all(w["cursor"] for w in s["workers"].values()),
             message="both workers")
    page.find_element(By.ID, "connect").click()  # Disconnect
    wait_for(lambda: inspect_console(page)["state"] == "disconnected", message="disconnected")
    paused = inspect_console(page)["workers"]
    wait_for(lambda: all(w["last_seq"] > paused[w["id"]]["cursor"] + 200 for w in gateway.json("api/workers")["workers"]),
             message="records evicted meanwhile")
    page.find_element(By.ID, "connect").click()  # Connect: resumes each worker after its cursor
    state = wait_for(lambda: (s := inspect_console(page, lines=True)) and len([e for e in s["entries"] if e["kind"] == "gap"]) == 2 and s,
                     message="a gap per worker")
    gaps = {e["worker"]: e for e in state["entries"] if e["kind"] == "gap"}
    assert set(gaps) == {"demo-1", "demo-2"}
    for worker, gap in gaps.items():
        assert gap["from"] == paused[worker]["cursor"] + 1
        assert gap["text"].startswith(f"{worker}: … ") and "not available" in gap["text"]
    # Around its gap, each worker's records go on: up to the gap, then right after it.
    for worker, gap in gaps.items():
        seqs = [e["seq"] for e in state["entries"] if e["kind"] == "record" and e["worker"] == worker]
        assert gap["from"] - 1 in seqs and gap["to"] + 1 in seqs
        assert not [s for s in seqs if gap["from"] <= s <= gap["to"]]
    rows = page.execute_script("return [...document.querySelectorAll('#log .line.gap')].map((r) => r.dataset.worker)")
    assert set(rows) <= {"demo-1", "demo-2"}
    assert browser_errors(page) == []
