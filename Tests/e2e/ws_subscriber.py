"""A WebSocket stream subscriber for the end-to-end tests: reads on a background thread and keeps
every message; the tests check what they need (`check_invariant` for the stream's seq coverage)."""
from __future__ import annotations

import json
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class Subscriber:
    """Connects to `url` (a `/ws/workers/{id}` stream) and records hello, logs, gaps and end."""

    def __init__(self, url: str):
        self.url = url
        self.ws = connect(url, max_size=None, open_timeout=30, close_timeout=10).__enter__()
        self.hello = None
        self.records: list[dict] = []
        self.arrivals: list[float] = []  # monotonic receive time of each record
        self.gaps: list[dict] = []
        self.covered_to = 0  # the last seq that hello, logs or gap messages accounted for
        self.end = None
        self.close_code = None
        self.error = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for text in self.ws:
                message = json.loads(text)
                with self.cond:
                    kind = message["type"]
                    if kind == "hello":
                        self.hello = message
                        self.covered_to = message["replay_from"] - 1
                    elif kind == "logs":
                        now = time.monotonic()
                        self.records.extend(message["records"])
                        self.arrivals.extend([now] * len(message["records"]))
                        self.covered_to = message["records"][-1]["seq"]
                    elif kind == "gap":
                        self.gaps.append(message)
                        self.covered_to = message["to"]
                    elif kind == "end":
                        self.end = message
                    self.cond.notify_all()
        except ConnectionClosed as closed:
            self.error = closed
        except Exception as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            with self.cond:
                self.close_code = self.ws.close_code
                self.cond.notify_all()

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; have "
                                         f"{len(self.records)} records (covered to {self.covered_to}), "
                                         f"{len(self.gaps)} gaps, end={self.end}, close={self.close_code}, "
                                         f"error={self.error!r}")
                self.cond.wait(min(remaining, 0.5))

    def check_invariant(self):
        """After hello, logs and gaps cover replay_from, replay_from+1, … exactly."""
        assert self.hello is not None
        covered = [r["seq"] for r in self.records]
        for gap in self.gaps:
            covered.extend(range(gap["from"], gap["to"] + 1))
        covered.sort()
        start = self.hello["replay_from"]
        assert covered == list(range(start, start + len(covered))), "seqs not contiguous"

    def close(self):
        self.ws.close()
        self.thread.join(10)
