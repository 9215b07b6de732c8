#!/usr/bin/env python3
"""reconnect_publishers: WORKERS remote workers (`PREFIX-1` … `PREFIX-N`), each published by its own
`tailgate_logging.TailgateHandler` at RATE records/s for SECONDS, as programs in other processes publish
into a gateway. The handlers publish exactly once (numbered lines) and retry while the gateway is away,
so a gateway restart during the run is invisible in the records: the same run goes on, no line is lost
or repeated. Used by the reconnect-storm scenario of `tailgate-bench`.

Prints "PUBLISHING" on stderr once every worker has its first record accepted, and at the end one JSON
object: records logged, the handlers' counters summed (sent, dropped, …) and whether every handler
flushed.
Standard library only; `clients/python` is put on sys.path when tailgate_logging is not installed.
"""
import argparse
import json
import logging
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import tailgate_logging
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "clients", "python"))
    import tailgate_logging


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the gateway, http://HOST:PORT")
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--prefix", default="remote")
    ap.add_argument("--rate", type=float, default=10, help="records per second per worker (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    if args.workers < 1 or args.rate <= 0 or args.seconds <= 0:
        ap.error("--workers, --rate and --seconds must be positive")

    loggers = []
    for k in range(1, args.workers + 1):
        handler = tailgate_logging.TailgateHandler(url=args.url, worker=f"{args.prefix}-{k}", flush_interval=0.02,
                                                   backoff_initial=0.05, backoff_max=0.5)
        logger = logging.getLogger(f"reconnect.{k}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        loggers.append((logger, handler))

    # Every worker exists before the subscribers come: one record each, then wait until listed.
    for k, (logger, _) in enumerate(loggers, 1):
        logger.info("worker %d starts", k)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{args.url}/api/workers", timeout=5) as r:
                listed = json.load(r)
            workers = listed["workers"] if isinstance(listed, dict) else listed
            names = {w["id"] for w in workers if w.get("last_seq", 0) >= 1}
            if all(f"{args.prefix}-{k}" in names for k in range(1, args.workers + 1)):
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        print("reconnect_publishers: the workers did not appear within 60 s", file=sys.stderr)
        return 1
    print("PUBLISHING", file=sys.stderr, flush=True)

    # Paced in 10 ms ticks: each worker gets RATE/100 records a tick (the remainder carried).
    start = time.time()
    logged = 0
    due_carry = 0.0
    tick = 0
    while True:
        now = time.time()
        if now - start >= args.seconds:
            break
        due_carry += args.rate / 100
        count = int(due_carry)
        due_carry -= count
        for _ in range(count):
            for k, (logger, _) in enumerate(loggers, 1):
                logger.info("tick %d of worker %d: order book updated, spread 0.5 bp", tick, k)
                logged += 1
        tick += 1
        sleep = start + tick * 0.01 - time.time()
        if sleep > 0:
            time.sleep(sleep)

    flushed = all(handler.flush(timeout=30) for _, handler in loggers)
    totals = {}
    for _, handler in loggers:
        for key, value in dict(handler.stats).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
        handler.close()
    print(json.dumps({"workers": args.workers, "rate": args.rate, "logged": logged + args.workers,
                      "flushed": flushed, "handlers": totals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
