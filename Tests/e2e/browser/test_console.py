"""The console in a real browser: order, ANSI, level filter, search, permalinks, keys, themes, 404."""

import re

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import browser_errors, inspect_console, screenshot, wait_for

ROWS = """
return [...document.querySelectorAll('#log .line:not([hidden])')]
  .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
  .map((row) => ({ seq: row.dataset.seq ? Number(row.dataset.seq) : null, level: row.dataset.level || null,
                   cls: row.className, text: row.textContent, marks: row.querySelectorAll('mark').length,
                   ansi: [...row.querySelectorAll('.ansi')].map((s) => s.className) }));
"""

IN_SIGHT = """
const row = document.querySelector(`#log .line[data-seq="${arguments[0]}"]`);
if (!row) return false;
const box = document.getElementById('log').getBoundingClientRect();
const r = row.getBoundingClientRect();
return r.top >= box.top && r.bottom <= box.bottom;
"""


def rows(page):
    return page.execute_script(ROWS)


def open_console(page, gateway, worker="demo-1", fragment="", minimum=50):
    page.get(gateway.url(f"console.html?worker={worker}{fragment}"))
    return wait_for(lambda: (s := inspect_console(page)) and s["lines"] >= minimum and s, message=f"{minimum} lines")


def test_console_receives_lines_in_order(browser_gateway, page):
    gateway = browser_gateway("--demo", "2", "--demo-rate", "100")
    open_console(page, gateway, minimum=300)
    shown = [r["seq"] for r in rows(page) if r["seq"] is not None]
    assert len(shown) > 20
    assert shown == list(range(shown[0], shown[0] + len(shown))), shown

    state = inspect_console(page, lines=True)
    seqs = [e["seq"] for e in state["entries"]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    exported = {r["seq"]: r for r in gateway.records("demo-1")}
    for entry in state["entries"]:
        if entry["seq"] in exported:
            assert entry["level"] == exported[entry["seq"]]["level"]
            assert "\x1b" not in entry["text"]
    assert state["state"] == "live" and state["follow"] is True
    # The status line: live, a rate, a lag.
    assert page.find_element(By.ID, "status").get_attribute("data-state") == "live"
    wait_for(lambda: "rec/s" in page.find_element(By.ID, "st-rate").text and "ms" in page.find_element(By.ID, "st-lag").text
             or " s" in page.find_element(By.ID, "st-lag").text, message="rate and lag")
    assert browser_errors(page) == []


def test_level_filter_ansi_and_search(browser_gateway, page):
    gateway = browser_gateway("--demo", "1", "--demo-rate", "100")
    open_console(page, gateway, minimum=400)

    # Level filter: only NOTICE (the FILLED lines, coloured green with ANSI codes).
    for level in ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        page.find_element(By.CSS_SELECTOR, f'#levels .chip[data-level="{level}"]').click()
    wait_for(lambda: (r := rows(page)) and all(x["level"] == "NOTICE" for x in r), message="only NOTICE rows")
    notice_rows = rows(page)
    assert notice_rows and all("FILLED" in r["text"] and "ansi-fg2" in " ".join(r["ansi"]) for r in notice_rows)
    assert all("\x1b" not in r["text"] and "[32m" not in r["text"] for r in notice_rows)
    state = inspect_console(page)
    assert state["shown"] < state["lines"]
    # Back to every level.
    for level in ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        page.find_element(By.CSS_SELECTOR, f'#levels .chip[data-level="{level}"]').click()
    wait_for(lambda: {r["level"] for r in rows(page)} >= {"DEBUG", "INFO"}, message="all levels again")

    # Text search: highlights, count, next/previous.
    search = page.find_element(By.ID, "search")
    search.send_keys("order submitted")
    count = page.find_element(By.ID, "match-count")
    wait_for(lambda: count.text.endswith("matches"), message="a match count")
    total = int(count.get_attribute("data-matches"))
    assert total > 5
    search.send_keys(Keys.ENTER)
    wait_for(lambda: "/" in count.text, message="a current match")
    current = [r for r in rows(page) if "current" in r["cls"].split()]
    assert len(current) == 1 and current[0]["marks"] >= 1 and "order submitted" in current[0]["text"]
    first_seq = current[0]["seq"]
    assert inspect_console(page)["follow"] is False
    page.find_element(By.ID, "log").click()
    page.find_element(By.TAG_NAME, "body").send_keys("n")
    wait_for(lambda: [r["seq"] for r in rows(page) if "current" in r["cls"].split()] not in ([], [first_seq]), message="next match")
    second_seq = [r["seq"] for r in rows(page) if "current" in r["cls"].split()][0]
    assert second_seq > first_seq
    page.find_element(By.TAG_NAME, "body").send_keys("N")
    wait_for(lambda: [r["seq"] for r in rows(page) if "current" in r["cls"].split()] == [first_seq], message="previous match")
    marked = [r for r in rows(page) if r["marks"]]
    assert marked and all("order submitted" in r["text"] for r in marked)
    screenshot(page, "console-search.png")

    # Regular expressions, and a bad one.
    page.find_element(By.ID, "regex").click()
    search.clear()
    search.send_keys(r"id=\d+ (BUY|SELL) \d{3,}")
    wait_for(lambda: int(count.get_attribute("data-matches") or 0) > 0 and count.text != "bad pattern", message="regex matches")
    marked = [r for r in rows(page) if r["marks"]]
    assert marked and all(re.search(r"id=\d+ (BUY|SELL) \d{3,}", r["text"]) for r in marked)
    search.clear()
    search.send_keys("(unclosed")
    wait_for(lambda: count.text == "bad pattern", message="bad pattern")
    assert "invalid" in search.get_attribute("class")

    # Only the matching lines.
    search.clear()
    search.send_keys("FILLED")
    page.find_element(By.ID, "only").click()
    wait_for(lambda: (r := rows(page)) and all("FILLED" in x["text"] for x in r), message="only FILLED lines")
    assert browser_errors(page) == []


def test_permalink_highlights_its_line_and_keys(browser_gateway, page):
    gateway = browser_gateway("--demo", "1", "--demo-rate", "100")
    wait_for(lambda: gateway.json("api/workers/demo-1")["last_seq"] >= 400, message="400 records")
    page.get(gateway.url("console.html?worker=demo-1#L123"))
    wait_for(lambda: page.execute_script(IN_SIGHT, 123), message="line 123 in sight")
    highlighted = [r for r in rows(page) if "permalink" in r["cls"].split()]
    assert [r["seq"] for r in highlighted] == [123]
    assert inspect_console(page)["follow"] is False

    # Clicking a line's number makes it the permalink.
    link = page.find_element(By.CSS_SELECTOR, '#log .line[data-seq="130"] a.seq')
    link.click()
    assert page.current_url.endswith("#L130")
    wait_for(lambda: [r["seq"] for r in rows(page) if "permalink" in r["cls"].split()] == [130], message="130 highlighted")

    # Keys: G (bottom, follow), g (top), f (follow).
    body = page.find_element(By.TAG_NAME, "body")
    body.send_keys("G")
    wait_for(lambda: inspect_console(page)["follow"], message="following")
    body.send_keys("g")
    wait_for(lambda: not inspect_console(page)["follow"] and rows(page)[0]["seq"] == inspect_console(page, lines=True)["entries"][0].get("seq"),
             message="at the top")
    body.send_keys("f")
    wait_for(lambda: inspect_console(page)["follow"], message="follow again")
    body.send_keys("/")
    assert page.switch_to.active_element.get_attribute("id") == "search"


def test_console_screenshots_and_dark_theme(browser_gateway, page):
    gateway = browser_gateway("--demo", "3", "--demo-rate", "40")
    wait_for(lambda: gateway.json("api/workers/demo-2")["last_seq"] >= 300, message="history")
    open_console(page, gateway, worker="demo-2", minimum=300)
    wait_for(lambda: any(r["level"] in ("WARNING", "ERROR") for r in rows(page)), message="a warning in sight")
    screenshot(page, "console.png")
    background = page.execute_script("return getComputedStyle(document.body).backgroundColor")
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    wait_for(lambda: page.execute_script("return getComputedStyle(document.body).backgroundColor") != background, message="dark colours")
    assert page.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    page.find_element(By.ID, "search").send_keys("risk")
    page.find_element(By.ID, "search").send_keys(Keys.ENTER)
    screenshot(page, "console-dark.png")
    page.get(gateway.url("/"))
    wait_for(lambda: len(page.find_elements(By.CSS_SELECTOR, ".card .mini .line:not([hidden])")) >= 30, message="dashboard lines")
    screenshot(page, "dashboard-dark.png")
    # The theme button overrides the system setting.
    page.find_element(By.ID, "theme").click()  # auto → light
    assert page.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    page.find_element(By.ID, "theme").click()  # light → dark
    assert page.execute_script("return document.documentElement.dataset.theme") == "dark"


def test_unknown_worker_shows_no_such_worker(browser_gateway, page):
    gateway = browser_gateway("--demo", "1")
    page.get(gateway.url("console.html?worker=no-such-worker"))
    missing = wait_for(lambda: (m := page.find_element(By.ID, "missing")).is_displayed() and m, message="no such worker")
    assert "No such worker" in missing.text and "no-such-worker" in missing.text
    back = page.find_element(By.ID, "missing-back")
    assert back.get_attribute("href") == gateway.url("/")
    assert page.find_element(By.ID, "status").get_attribute("data-state") in ("not-found", "connecting")
    back.click()
    wait_for(lambda: page.find_elements(By.CSS_SELECTOR, '.card[data-worker="demo-1"]'), message="the dashboard")
