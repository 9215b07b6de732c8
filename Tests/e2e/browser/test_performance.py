"""One console following a worker at 10,000 lines/s for 20 s: the DOM stays bounded, the page answers.

Measured in the page: long tasks (PerformanceObserver 'longtask'), frame intervals (requestAnimationFrame),
and round-trips of WebDriver scripts from the test. The numbers are printed (run pytest with -s) and
written to `docs/screenshots/perf-10k.json`.
"""

import json
import time

from conftest import SCREENSHOTS, inspect_console, screenshot, wait_for

PROBE = """
const probe = { longTasks: [], frames: [] };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) probe.longTasks.push(entry.duration);
}).observe({ type: 'longtask' });
let last = performance.now();
const tick = (now) => { probe.frames.push(now - last); last = now; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
document.documentElement.tgProbe = probe;
"""

SAMPLE = """
const p = document.documentElement.tgProbe;
return { domLines: document.querySelectorAll('#log .line').length, allElements: document.getElementsByTagName('*').length,
         longTasks: p.longTasks.length, frames: p.frames.length };
"""

RESULT = "const p = document.documentElement.tgProbe; return { longTasks: p.longTasks, frames: p.frames };"

RATE = 10_000
SECONDS = 20


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0


def test_ten_thousand_lines_per_second(browser_gateway, page):
    # The release build when there is one: a debug gateway publishing 10,000 records/s has little time
    # left to serve the page itself.
    gateway = browser_gateway("--demo", "1", "--demo-rate", str(RATE), prefer_release=True)
    page.get(gateway.url("console.html?worker=demo-1&tail=0"))
    wait_for(lambda: (inspect_console(page) or {}).get("state") == "live", message="live")
    page.execute_script(PROBE)
    start_seq = gateway.json("api/workers/demo-1")["last_seq"]
    started = time.monotonic()
    samples = []
    while time.monotonic() - started < SECONDS:
        before = time.monotonic()
        sample = page.execute_script(SAMPLE)
        sample["roundTripMs"] = (time.monotonic() - before) * 1000
        sample["t"] = round(time.monotonic() - started, 1)
        samples.append(sample)
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    end_seq = gateway.json("api/workers/demo-1")["last_seq"]
    state = inspect_console(page)
    result = page.execute_script(RESULT)
    screenshot(page, "console-10k.png")

    long_tasks = result["longTasks"]
    frames = result["frames"][1:]
    published = end_seq - start_seq
    numbers = {
        "rate_per_s": RATE, "seconds": round(elapsed, 1), "published": published,
        "received": state["received"], "lines_held": state["lines"], "lag_ms_at_end": state["lag"],
        "max_dom_line_elements": max(s["domLines"] for s in samples),
        "max_dom_elements": max(s["allElements"] for s in samples),
        "long_tasks": len(long_tasks), "long_task_total_ms": round(sum(long_tasks)),
        "long_task_max_ms": round(max(long_tasks, default=0)),
        "long_task_share": round(sum(long_tasks) / (elapsed * 1000), 3),
        "frames": len(frames), "fps": round(len(frames) / elapsed, 1),
        "frame_p50_ms": round(percentile(frames, 0.5), 1), "frame_p95_ms": round(percentile(frames, 0.95), 1),
        "frame_max_ms": round(max(frames, default=0), 1),
        "script_round_trip_p50_ms": round(percentile([s["roundTripMs"] for s in samples], 0.5)),
        "script_round_trip_max_ms": round(max(s["roundTripMs"] for s in samples)),
    }
    print("\n10k lines/s:", json.dumps(numbers, indent=1))
    (SCREENSHOTS / "perf-10k.json").write_text(json.dumps(numbers, indent=1) + "\n")

    assert numbers["max_dom_line_elements"] < 3000
    assert numbers["max_dom_elements"] < 5000
    # The stream stayed open and the page went on taking records in (how close it stays to the
    # publisher depends on the CPU it gets: see the printed lag) …
    assert state["state"] == "live"
    assert state["received"] >= 0.4 * published
    # … and stayed responsive: scripts from the test were answered promptly throughout (loose bounds,
    # as the CPU is shared).
    assert numbers["script_round_trip_max_ms"] < 2000
    assert numbers["fps"] >= 5
    # Everything received is held (up to the console's capacity), and the window is a couple of screens.
    assert state["lines"] == min(state["received"], 210_000) or state["lines"] >= 200_000
