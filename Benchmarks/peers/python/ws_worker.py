#!/usr/bin/env python3
"""Peer (a) of the fan-out benchmark: the original design. One Python `websockets` server per worker
process, one record per message. A publishing loop appends records at the target rate (1 ms ticks at
>= 2000 rec/s, 10 ms otherwise, like Tailgate's demo) and broadcasts each record as its own message
`{"type":"logs","records":[record]}` to every connected subscriber; a `hello` is sent first.

Usage: ws_worker.py --port P --worker demo-1 --rate R [--no-deflate]
"""
import argparse
import asyncio
import datetime
import json
import time

import websockets
from websockets.asyncio.server import broadcast, serve

MESSAGES = [
    ("DEBUG", "bar 002050.SZ 09:01 o=9.97 h=10.00 l=9.95 c=9.98 v=4700", "on_bar", 88),
    ("INFO", "signal LONG 002050.SZ strength=0.74 (fast MA crossed slow MA)", "generate_signal", 131),
    ("INFO", "order submitted id=A-10492 LONG 002050.SZ 1000 @ 9.98 limit", "send_order", 212),
    ("WARNING", "slippage 0.03 above threshold on fill id=A-10492", "on_trade", 277),
]


def iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Worker:
    def __init__(self, worker_id: str, rate: float):
        self.id = worker_id
        self.rate = rate
        self.next_seq = 1
        self.clients = set()

    def record(self, seq: int) -> dict:
        level, message, func, line = MESSAGES[seq % len(MESSAGES)]
        return {"seq": seq, "timestamp": iso_now(), "level": level, "message": message,
                "logger_name": "TurtleBreakout", "module": "strategies.turtlebreakout",
                "func_name": func, "line_no": line}

    async def publish_loop(self):
        tick = 0.001 if self.rate >= 2000 else 0.01
        start = time.monotonic()
        published = 0
        while True:
            await asyncio.sleep(tick)
            due = int((time.monotonic() - start) * self.rate)
            while published < due:
                msg = json.dumps({"type": "logs", "records": [self.record(self.next_seq)]}, separators=(",", ":"))
                self.next_seq += 1
                published += 1
                broadcast(self.clients, msg)

    async def handler(self, ws):
        hello = json.dumps({"type": "hello", "worker": self.id, "state": "running", "first_seq": 1,
                            "last_seq": self.next_seq - 1, "replay_from": self.next_seq,
                            "server_time": iso_now()}, separators=(",", ":"))
        broadcast([ws], hello)  # synchronous: hello is queued before any record
        self.clients.add(ws)
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--worker", default="demo-1")
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--no-deflate", action="store_true", help="refuse permessage-deflate")
    args = ap.parse_args()
    worker = Worker(args.worker, args.rate)
    async with serve(worker.handler, "127.0.0.1", args.port, compression=None if args.no_deflate else "deflate",
                     ping_interval=None, max_queue=16, backlog=4096):
        print(f"ws_worker {args.worker} listening on http://127.0.0.1:{args.port}/", flush=True)
        await worker.publish_loop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
