"""Live streams over real WebSockets, read by Python `websockets` clients.

The invariant checked everywhere: after `hello`, the seqs covered by `logs` and `gap` messages are
exactly replay_from, replay_from+1, ... (no duplicates, no reordering, no silent holes).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

LEVELS = {"TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"}
ISO_UTC_MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
HELLO_FIELDS = {"type", "worker", "state", "first_seq", "last_seq", "replay_from", "server_time"}


def open_stream(url: str, open_timeout: float = 10):
    # compression=None: permessage-deflate is tested on its own once it lands.
    # max_queue=None: a client that stops reading early still sees the close frame promptly.
    return connect(url, compression=None, max_size=2**24, max_queue=None, open_timeout=open_timeout,
                   close_timeout=5)


@dataclass
class StreamLog:
    """What one subscriber received, checked against the invariant as it arrives."""

    hello: dict | None = None
    records: list[dict] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    others: list[dict] = field(default_factory=list)
    next_seq: int | None = None  # the seq the next logs/gap message must start at

    def take(self, raw: str | bytes) -> None:
        assert isinstance(raw, str), f"binary frame received: {raw[:80]!r}"
        message = json.loads(raw)
        kind = message.get("type")
        if self.hello is None:
            assert kind == "hello", f"first message is not hello: {message}"
            assert HELLO_FIELDS <= message.keys(), f"hello lacks {HELLO_FIELDS - message.keys()}: {message}"
            self.hello = message
            self.next_seq = message["replay_from"]
            return
        if kind == "logs":
            assert message["records"], "empty logs message"
            for record in message["records"]:
                assert record["seq"] == self.next_seq, (
                    f"expected seq {self.next_seq}, got {record['seq']} (after {len(self.records)} records, "
                    f"gaps {self.gaps})")
                self.next_seq += 1
                self.records.append(record)
        elif kind == "gap":
            assert message["from"] == self.next_seq and message["to"] >= message["from"], (
                f"gap {message} does not start at the expected seq {self.next_seq}")
            self.gaps.append((message["from"], message["to"]))
            self.next_seq = message["to"] + 1
        elif kind == "hello":
            raise AssertionError(f"second hello: {message}")
        else:
            self.others.append(message)

    @property
    def covered(self) -> int:
        """How many seqs the logs and gap messages covered."""
        return 0 if self.hello is None else self.next_seq - self.hello["replay_from"]


async def read_stream(url: str, *, seconds: float | None = None, records: int | None = None,
                      log: StreamLog | None = None) -> StreamLog:
    """Subscribes and reads for `seconds`, or until `records` records arrived (within 15 s)."""
    log = log or StreamLog()
    limit = seconds if seconds is not None else 15.0
    async with open_stream(url) as ws:
        async def consume():
            async for raw in ws:
                log.take(raw)
                if records is not None and len(log.records) >= records:
                    return
        try:
            await asyncio.wait_for(consume(), timeout=limit)
        except asyncio.TimeoutError:
            if records is not None:
                pytest.fail(f"{url}: only {len(log.records)} of {records} records within {limit} s")
    return log


# ---------------------------------------------------------------- hello, order, fields


def test_hello_then_contiguous_records(gateway):
    gw = gateway("--demo", "2", "--demo-rate", "200")
    log = asyncio.run(read_stream(gw.ws_url("/ws/workers/demo-1"), records=300))
    hello = log.hello
    assert hello["worker"] == "demo-1" and hello["state"] == "running"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", hello["server_time"]), hello
    # The ring holds everything published so far (far below the default tail of 1000).
    assert hello["replay_from"] == hello["first_seq"] == 1
    assert log.records[0]["seq"] == 1 and len(log.records) >= 300
    assert not log.gaps


def test_tail_replays_the_newest_records(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "500")
    time.sleep(0.5)
    log = asyncio.run(read_stream(gw.ws_url("/ws/workers/demo-1?tail=5"), records=20))
    hello = log.hello
    assert hello["last_seq"] > 5
    assert hello["replay_from"] == hello["last_seq"] - 4
    assert log.records[0]["seq"] == hello["replay_from"]


def test_records_carry_every_protocol_field(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "1000")
    log = asyncio.run(read_stream(gw.ws_url("/ws/workers/demo-1"), records=400))
    with_metadata = 0
    for record in log.records:
        assert type(record["seq"]) is int and record["seq"] > 0
        assert ISO_UTC_MICROS.fullmatch(record["timestamp"]), record
        assert record["level"] in LEVELS, record
        for name in ("message", "logger_name", "module", "func_name"):
            assert type(record[name]) is str, (name, record)
        assert type(record["line_no"]) is int, record
        if "metadata" in record and record["metadata"] is not None:
            assert isinstance(record["metadata"], dict), record
            assert all(type(k) is str and type(v) is str for k, v in record["metadata"].items()), record
            with_metadata += 1
    assert with_metadata > 0, "no demo record carried metadata (orders and fills do)"
    assert len({r["level"] for r in log.records}) >= 4, "demo levels are not varied"
    stamps = [r["timestamp"] for r in log.records]
    assert stamps == sorted(stamps), "timestamps go backwards"


def test_ansi_escape_codes_arrive_intact(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "1000")
    log = asyncio.run(read_stream(gw.ws_url("/ws/workers/demo-1"), records=500))
    colored = [r["message"] for r in log.records if "\x1b[" in r["message"]]
    assert colored, "no demo message carried an ANSI escape code"
    for message in colored:
        assert re.search(r"\x1b\[\d+(;\d+)*m", message), repr(message)
    for record in log.records:
        assert "\\u001b" not in record["message"] and "\\x1b" not in record["message"], record
        # A color code that lost its ESC byte would show as a bare "[32m".
        assert not re.search(r"(?<!\x1b)\[\d+m", record["message"]), record


# ---------------------------------------------------------------- many subscribers, reconnects


@pytest.mark.parametrize("loops", [1, 3])
def test_fifty_subscribers_at_high_rate_all_keep_the_invariant(gateway, loops):
    # With 3 event loops the 50 connections are spread over them (NIO hands accepted channels to its
    # loops in turn): each batch reaches the other loops' subscribers through a task per loop.
    gw = gateway("--demo", "1", "--demo-rate", "2000", "--event-loops", str(loops))
    # A short replay each (tail=100) keeps the replay-to-live handoff in play without a burst of
    # 50 x 1000 replayed records on a debug build.
    url = gw.ws_url("/ws/workers/demo-1?tail=100")

    async def read_for(ws, log, seconds):
        async def consume():
            async for raw in ws:
                log.take(raw)
        try:
            await asyncio.wait_for(consume(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def subscribe():
        # On a loaded 2-core machine the debug build can be slow to answer a handshake; a client
        # that is dropped before the upgrade (no HTTP answer at all) tries again, as a browser would.
        for attempt in range(3):
            try:
                return await open_stream(url, open_timeout=30)
            except InvalidMessage:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.5)

    async def main():
        # All 50 connect at once (before the fan-out load builds up), then all read for 3 s.
        streams = await asyncio.gather(*(subscribe() for _ in range(50)))
        logs = [StreamLog() for _ in streams]
        try:
            await asyncio.gather(*(read_for(ws, log, 3.0) for ws, log in zip(streams, logs)))
        finally:
            await asyncio.gather(*(ws.close() for ws in streams))
        return logs

    logs = asyncio.run(main())
    assert len(logs) == 50
    for index, log in enumerate(logs):
        assert log.hello is not None, f"subscriber {index} got no hello"
        assert log.records, f"subscriber {index} received no records"
        # Every seq from replay_from on is accounted for (checked message by message in take()).
        assert log.covered == len(log.records) + sum(b - a + 1 for a, b in log.gaps)
    newest = max(log.next_seq - 1 for log in logs)
    assert newest > 2000, f"only {newest} records published in ~3 s at 2000/s"


def test_reconnect_with_since_has_no_duplicates_and_no_holes(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "300")
    first = asyncio.run(read_stream(gw.ws_url("/ws/workers/demo-1?tail=0"), records=50))
    last = first.records[-1]["seq"]
    time.sleep(0.3)  # records published while disconnected must be delivered on resume
    second = asyncio.run(read_stream(gw.ws_url(f"/ws/workers/demo-1?since={last}"), records=150))
    assert second.hello["replay_from"] == last + 1
    assert second.records[0]["seq"] == last + 1, "resume did not start right after the last seq seen"
    assert second.hello["last_seq"] > last, "nothing was published while disconnected"
    seqs = [r["seq"] for r in first.records] + [r["seq"] for r in second.records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "duplicates or holes across the reconnect"
    assert not first.gaps and not second.gaps


def test_since_takes_precedence_over_tail(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "300")
    time.sleep(0.3)
    log = asyncio.run(read_stream(gw.ws_url("/ws/workers/demo-1?since=10&tail=0"), records=5))
    assert log.hello["replay_from"] == 11
    assert log.records[0]["seq"] == 11


# ---------------------------------------------------------------- refusals and shutdown


@pytest.mark.parametrize("path, status, code", [
    ("/ws/workers/no-such-worker", 404, "worker_not_found"),
    ("/ws/workers/-bad-id", 400, None),
    ("/ws/workers/demo-1?since=abc", 400, None),
])
def test_refused_handshake_answers_with_status_and_json(gateway, path, status, code):
    gw = gateway("--demo", "1")

    async def attempt():
        async with open_stream(gw.ws_url(path)):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt())
    response = refused.value.response
    assert response.status_code == status
    error = json.loads(response.body)["error"]
    assert error["message"]
    if code:
        assert error["code"] == code


def test_sigterm_closes_every_stream_with_1001_and_exits_0(gateway):
    gw = gateway("--demo", "3", "--demo-rate", "50")

    async def main():
        streams = [await open_stream(gw.ws_url(f"/ws/workers/demo-{1 + n % 3}")) for n in range(5)]
        logs = [StreamLog() for _ in streams]
        for ws, log in zip(streams, logs):
            log.take(await asyncio.wait_for(ws.recv(), timeout=5))  # hello
        gw.proc.send_signal(signal.SIGTERM)

        async def until_closed(ws, log):
            try:
                async for raw in ws:
                    log.take(raw)
            except ConnectionClosed:
                pass
            return ws.protocol.close_rcvd

        closes = await asyncio.wait_for(
            asyncio.gather(*(until_closed(ws, log) for ws, log in zip(streams, logs))), timeout=10)
        return closes, logs

    started = time.monotonic()
    closes, logs = asyncio.run(main())
    for index, close in enumerate(closes):
        assert close is not None, f"stream {index}: connection dropped without a close frame"
        assert close.code == 1001, f"stream {index}: close code {close.code} ({close.reason!r}), expected 1001"
    try:
        status = gw.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("gateway still running 5 s after SIGTERM:\n" + gw.log())
    assert status == 0, f"exit status {status} after SIGTERM:\n{gw.log()}"
    assert time.monotonic() - started < 10
