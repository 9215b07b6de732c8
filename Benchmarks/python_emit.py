#!/usr/bin/env python3
"""python_emit: what one logging call costs the application with tailgate_logging.TailgateHandler.

Logs COUNT records at RATE records/s (paced in 1 ms ticks, as an application logging steadily) through a
`logging.Logger` whose only handler is a TailgateHandler publishing to URL (a gateway that is up, or a
port where nothing listens), and times every call with `time.perf_counter_ns`, for two shapes of call:
`plain` (`logger.info("order ... id=A-%d ...", i)`: one immutable argument, queued as it is) and `rich`
(three arguments and an `extra` field: formatted at the call). Each shape is timed two ways:

  emit        the handler's part of a logging call: `handler.handle(record)` (filter + `emit`), for
              records made just before by `logger.makeRecord` (not timed)
  logger.info the whole `logger.info("...", i, extra=...)` call, record creation included

Each is a pass of COUNT calls (after WARMUP untimed calls). Prints one JSON object: per shape, the
percentiles in microseconds; the handler's counters (sent, dropped, ...) and the Python version.
Standard library only; `clients/python` is put on sys.path when tailgate_logging is not installed.
"""
import argparse
import json
import logging
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import tailgate_logging
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "clients", "python"))
    import tailgate_logging


def percentiles(samples_ns):
    s = sorted(samples_ns)
    n = len(s)

    def p(q):
        return round(s[min(n - 1, int(q * n))] / 1000, 2)
    return {"p50_us": p(0.50), "p90_us": p(0.90), "p99_us": p(0.99), "p999_us": p(0.999), "max_us": round(s[-1] / 1000, 2),
            "calls": n}


def paced(count, rate, call, make=None):
    """Calls call(i) — or call(make(i)), make's work untimed — count times at rate per second in 1 ms
    ticks; returns the ns each call took."""
    samples = [0] * count
    per_tick = max(1, int(round(rate / 1000)))
    tick = per_tick / rate
    clock = time.perf_counter_ns
    next_tick = time.perf_counter()
    i = 0
    while i < count:
        now = time.perf_counter()
        if now < next_tick:
            time.sleep(next_tick - now)
        next_tick += tick
        for _ in range(min(per_tick, count - i)):
            argument = make(i) if make else i
            t0 = clock()
            call(argument)
            samples[i] = clock() - t0
            i += 1
    return samples


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the gateway's base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--worker", default="py-emit")
    ap.add_argument("--count", type=int, default=10_000, help="timed calls per pass (default %(default)s)")
    ap.add_argument("--rate", type=int, default=10_000, help="calls per second (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=1000, help="untimed calls first (default %(default)s)")
    ap.add_argument("--queue-size", type=int, default=10_000)
    a = ap.parse_args(argv)

    handler = tailgate_logging.TailgateHandler(a.url, a.worker, queue_size=a.queue_size, timeout=2.0,
                                               backoff_initial=0.05, backoff_max=0.5)
    logger = logging.getLogger("bench.emit")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    shapes = {
        # One immutable argument, no extra: the handler queues the record as it is.
        "plain": ("order submitted id=A-%d LONG 002050.SZ 1000 @ 9.98 limit", lambda i: (i,), lambda i: None),
        # Three arguments and an `extra` field: formatted at the call.
        "rich": ("fill %s %d price=%.2f", lambda i: ("A-10492", i, 9.98 + i / 100), lambda i: {"order": i}),
    }
    results = {}
    try:
        paced(a.warmup, a.rate, lambda i: logger.info("warm-up record %d", i))
        for shape, (fmt, args, extra) in shapes.items():
            info = paced(a.count, a.rate, lambda i: logger.info(fmt, *args(i), extra=extra(i)))
            # The handler's part alone: each record is made (untimed) just before its handle() call.
            emit = paced(a.count, a.rate, handler.handle,
                         make=lambda i: logger.makeRecord(logger.name, logging.INFO, __file__, 0, fmt, args(i), None,
                                                          func="main", extra=extra(i)))
            results[shape] = {"emit": percentiles(emit), "logger_info": percentiles(info)}
        flushed = handler.flush(10)
    finally:
        handler.close()
    out = {"python": "%d.%d.%d" % sys.version_info[:3], "rate": a.rate, "url": a.url, **results,
           "flushed": flushed, "handler_stats": dict(handler.stats)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
