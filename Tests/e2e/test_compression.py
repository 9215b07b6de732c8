"""permessage-deflate against a real, independent client (Python `websockets`) and raw frames.

Every window size from 9 to 15, with and without client context takeover: every record arrives intact
and the stream invariant holds; the number of compressions does not grow with the number of
subscribers; a compression bomb closes with 1009 and invalid compressed data with 1007, and the
gateway keeps serving.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
import zlib

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


def check_invariant(messages: list[dict]) -> tuple[int, int]:
    """Asserts hello first and logs/gap seqs exactly contiguous from replay_from; returns (records, next seq)."""
    assert messages and messages[0]["type"] == "hello", messages[:1]
    expected = messages[0]["replay_from"]
    records = 0
    for message in messages[1:]:
        if message["type"] == "logs":
            for record in message["records"]:
                assert record["seq"] == expected, (record["seq"], expected)
                for field in ("timestamp", "level", "message", "logger_name", "module", "func_name", "line_no"):
                    assert field in record
                expected += 1
                records += 1
        elif message["type"] == "gap":
            assert message["from"] == expected, (message, expected)
            expected = message["to"] + 1
    return records, expected


async def collect(url: str, factory, count: int, timeout: float = 30.0) -> tuple[list[dict], str | None]:
    """Receives until `count` records arrived; sends one compressible message on the way."""
    async with websockets.connect(url, extensions=[factory], compression=None, max_size=None, max_queue=None,
                                  open_timeout=20) as ws:
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        messages: list[dict] = []
        records = 0
        sent = False
        deadline = time.monotonic() + timeout
        while records < count:
            text = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            message = json.loads(text)
            messages.append(message)
            if message["type"] == "logs":
                records += len(message["records"])
            if not sent:
                await ws.send("ping from a compressing client " * 20)  # compressed by the client
                sent = True
        return messages, header


@pytest.mark.parametrize("bits", range(9, 16))
@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_every_window_size_delivers_intact_records(gateway, bits, no_context_takeover):
    gw = gateway("--demo", "1", "--demo-rate", "500", "--deflate-threshold", "0")
    factory = ClientPerMessageDeflateFactory(server_max_window_bits=bits, client_max_window_bits=bits,
                                             client_no_context_takeover=no_context_takeover)
    messages, header = asyncio.run(collect(gw.ws_url("/ws/workers/demo-1?tail=300"), factory, 600))
    assert header is not None and "server_no_context_takeover" in header, header
    assert f"server_max_window_bits={bits}" in header and f"client_max_window_bits={bits}" in header, header
    assert ("client_no_context_takeover" in header) == no_context_takeover, header
    records, _ = check_invariant(messages)
    assert records >= 600
    stats = gw.http("/api/stats").json()
    assert stats["deflate_compressions"] > 0 and stats["deflate_compressed_bytes"] < stats["deflate_raw_bytes"], stats
    assert stats["inflated_messages"] >= 1, stats  # the client's compressed message was accepted


def test_subscribers_with_different_windows_share_compressions(gateway):
    """Several window sizes on one worker all get correct data, and the number of compressions depends
    on the number of distinct windows, not on the number of subscribers."""
    gw = gateway("--demo", "1", "--demo-rate", "400", "--deflate-threshold", "0")

    async def phase(windows: list[int], seconds: float) -> tuple[int, list[list[dict]]]:
        before = gw.http("/api/stats").json()["deflate_compressions"]
        seq_before = gw.http("/api/workers/demo-1").json()["last_seq"]

        async def one(bits: int) -> list[dict]:
            factory = ClientPerMessageDeflateFactory(server_max_window_bits=bits, client_max_window_bits=bits)
            messages = []
            async with websockets.connect(gw.ws_url("/ws/workers/demo-1?tail=0"), extensions=[factory],
                                          compression=None, max_size=None, max_queue=None, open_timeout=20) as ws:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    try:
                        messages.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=max(0.05, end - time.monotonic()))))
                    except asyncio.TimeoutError:
                        break
            return messages

        results = await asyncio.gather(*(one(bits) for bits in windows))
        after = gw.http("/api/stats").json()["deflate_compressions"]
        published = gw.http("/api/workers/demo-1").json()["last_seq"] - seq_before
        return after - before, published, results

    few, published_few, _ = asyncio.run(phase([15, 15], 2.0))
    many, published_many, results = asyncio.run(phase([15] * 12 + [9, 10, 12], 2.0))
    for messages in results:
        records, _ = check_invariant(messages)
        assert records > 0
    # Per-subscriber compression would make `many` about 7x `few` (15 vs 2 subscribers); shared
    # compression makes it about 4x at most (4 distinct windows vs 1), whatever the subscriber count.
    per_record_few = few / max(1, published_few)
    per_record_many = many / max(1, published_many)
    assert per_record_many <= 4.5 * per_record_few + 0.05, (few, published_few, many, published_many)
    assert many <= 4 * published_many + 8, (many, published_many)


class RawStream:
    """A socket plus the bytes read past the handshake."""

    def __init__(self, sock: socket.socket, pending: bytes):
        self.sock = sock
        self.pending = pending

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def raw_deflate_stream(port: int, offer: str = "permessage-deflate") -> RawStream:
    """A raw client that completes a handshake with `offer` and reads past the 101."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/workers/demo-1?tail=0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Extensions: {offer}\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data
    assert b"permessage-deflate" in data.lower(), data
    return RawStream(sock, data.split(b"\r\n\r\n", 1)[1])


def masked_frame(payload: bytes, opcode: int = 0x1, rsv1: bool = True) -> bytes:
    mask = os.urandom(4)
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_code(stream: RawStream) -> int | None:
    """Reads frames until a close frame; returns its code."""
    data = stream.pending
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        while len(data) >= 2:
            length = data[1] & 0x7F
            offset = 2
            if length == 126:
                length, offset = struct.unpack("!H", data[2:4])[0], 4
            elif length == 127:
                length, offset = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < offset + length:
                break
            opcode, payload = data[0] & 0x0F, data[offset:offset + length]
            data = data[offset + length:]
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0]
        try:
            chunk = stream.sock.recv(65536)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return None


def compress(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_compression_bomb_closes_1009_and_invalid_data_1007(gateway):
    gw = gateway("--demo", "1", "--demo-rate", "50")
    # 1 MB of zeros compresses to about a kilobyte: far under the 4 KiB frame limit, far over it inflated.
    bomb = compress(b"\0" * 1_000_000)
    assert len(bomb) < 4096
    with raw_deflate_stream(gw.port) as stream:
        stream.sock.sendall(masked_frame(bomb))
        assert close_code(stream) == 1009
    with raw_deflate_stream(gw.port, "permessage-deflate; client_no_context_takeover") as stream:
        stream.sock.sendall(masked_frame(b"\xff\xfe\xfd\xfc garbage that is not deflate"))
        assert close_code(stream) == 1007
    # A compressed message within the cap is accepted: the stream stays open and keeps delivering.
    with raw_deflate_stream(gw.port) as stream:
        stream.sock.sendall(masked_frame(compress(b"hello " * 100)))
        stream.sock.settimeout(3)
        received = stream.pending + stream.sock.recv(65536)
        assert received, "the stream should keep delivering"
    assert gw.http("/api/stats").json()["inflated_messages"] >= 1
    stats = gw.http("/api/stats").json()
    assert stats["too_big_closes"] >= 1, stats
    assert gw.http("/healthz").status == 200
