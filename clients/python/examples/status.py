#!/usr/bin/env python3
"""The status pattern: a worker logs through `logging` (console and Tailgate at once), and a status
function hands out each worker's live-stream URL, for a dashboard or another tool to open.

    tailgate serve --port 8080 &
    python examples/status.py --gateway http://127.0.0.1:8080 --worker 002050.SZ --records 20

`status()` needs no web framework; in a Flask or FastAPI app, return its result from a route as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import urllib.request

from tailgate_logging import TailgateHandler


def status(gateway: str = "http://127.0.0.1:8080", timeout: float = 5.0) -> dict:
    """`{worker_id: log_stream_url}` for every worker the gateway knows (GET /api/workers).

    `log_stream_url` is built from the Host this request used, so hand the gateway's public address in
    `gateway` when the URLs go to browsers elsewhere."""
    with urllib.request.urlopen(gateway.rstrip("/") + "/api/workers", timeout=timeout) as response:
        workers = json.load(response)["workers"]
    return {worker["id"]: worker["log_stream_url"] for worker in workers}


def run_worker(gateway: str, worker: str, records: int, interval: float) -> None:
    """A toy strategy worker: every record goes to the console and to the gateway."""
    logger = logging.getLogger("TurtleBreakout")
    logger.setLevel(logging.INFO)
    console = logging.StreamHandler()  # stderr
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    stream = TailgateHandler(gateway, worker)
    logger.addHandler(console)
    logger.addHandler(stream)
    price = 10.0
    try:
        for i in range(records):
            price = round(price * (1 + random.uniform(-0.01, 0.01)), 2)
            if i % 7 == 6:
                logger.warning("slippage on order %d: %.2f", i, price, extra={"order_id": i})
            else:
                logger.info("bar 002050.SZ close=%.2f", price, extra={"symbol": "002050.SZ", "bar": i})
            time.sleep(interval)
        logger.info("strategy done after %d bars", records)
        stream.stop_worker()  # flushes, then subscribers get `end`
    finally:
        logger.removeHandler(stream)
        stream.close()  # flushes what is left (bounded wait) and stops the sender thread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--worker", default="TurtleBreakout-1")
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between records")
    args = parser.parse_args()
    run_worker(args.gateway, args.worker, args.records, args.interval)
    for worker, url in sorted(status(args.gateway).items()):
        print(f"{worker}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
