"""`TailgateHandler`: publishes Python log records to a Tailgate gateway over HTTP, each exactly once.

The application's side (`emit`) only appends to a bounded in-memory queue — the record itself when its
arguments and `extra` values are immutable built-in values (the sender thread formats it later, to the
same text), else a tuple formatted at the call; it never touches the network, never waits for a lock
held across I/O, and never raises.
A daemon thread takes the queue in batches and POSTs each batch as NDJSON to
`/api/workers/{worker}/records` over one persistent HTTP/1.1 connection. When the gateway is down or
slow the queue fills up; records that do not fit are counted, and once the gateway answers again one
`WARNING` record "N records dropped while the gateway was unreachable" is published: loss is never
silent.

Delivery is exactly once ("Publishing exactly once" in docs/PROTOCOL.md). The handler has a publisher
id of its own (`py-` and 16 random hex digits) and numbers the lines it sends 1, 2, 3, …; every body
carries `Tailgate-Publisher` and `Tailgate-Offset` (the number of its first line; each line has the
next). In each run of the worker the gateway keeps the highest number it has taken from this publisher
and skips any line numbered at or below it; it answers a body only once its records are written to
disk, with that highest number (`offset`) and the run's `epoch`.
A line stays in the handler until an answer's `offset` covers it. On every new connection the handler
first sends an empty body, learns the gateway's `offset` K, forgets its lines up to K and sends the rest
from K+1. So a connection broken in the middle of a body, a lost answer, or a gateway killed and
restarted (its runs and offsets come back from disk) neither loses nor duplicates a line. When the
`epoch` changed (the worker was stopped, or stopped as idle, and a new run began), the gateway has
nothing of this publisher in the new run: every line not yet confirmed is sent into it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import select
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

__all__ = ["TailgateHandler", "TailgateError", "WORKER_ID"]

#: What the gateway accepts as a worker id.
WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")

# The gateway's levels and a numeric scale comparable with Python's, for custom levels.
_GATEWAY_LEVELS = (("TRACE", 5), ("DEBUG", 10), ("INFO", 20), ("NOTICE", 25), ("WARNING", 30),
                   ("ERROR", 40), ("CRITICAL", 50))
_GATEWAY_NAMES = {name for name, _ in _GATEWAY_LEVELS}
_PYTHON_STANDARD = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
                    logging.ERROR: "ERROR", logging.CRITICAL: "CRITICAL"}
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "CRIT": "CRITICAL", "ERR": "ERROR", "EXCEPTION": "ERROR",
            "VERBOSE": "DEBUG", "SPAM": "TRACE", "SUCCESS": "NOTICE"}

# Attributes every LogRecord has; anything else in `record.__dict__` came from `extra=`.
_PLAIN_RECORD_SIZE = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "exc_info", "exc_text", "stack_info", "taskName"}

# Values whose text cannot change after the logging call: formatting them later gives the same message.
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, complex})

# JSON string escaping in C (what json.dumps uses for str with ensure_ascii=False), and an encoder
# made once (json.dumps with options builds a new one per call).
_escape = json.encoder.encode_basestring
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# (logger name, module, function) -> their JSON members, for the lines of one source.
_SOURCE_CACHE: Dict[Tuple[str, str, str], str] = {}

_SENDER_NAME = "tailgate-logging-sender"
_get_ident = threading.get_ident
_DROP_MESSAGE = "{n} records dropped while the gateway was unreachable"


class TailgateError(Exception):
    """A request to the gateway that the application made explicitly (e.g. `stop_worker`) failed."""

    def __init__(self, message: str, status: Optional[int] = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


def gateway_level(levelno: int, levelname: str) -> str:
    """The gateway level for a Python level: standard levels by number, `WARN`/`FATAL` and the gateway's
    own names (`TRACE`, `NOTICE`) by name, any other custom level to the nearest one (the lower on a tie)."""
    standard = _PYTHON_STANDARD.get(levelno)
    if standard is not None and levelname == standard:
        return standard
    name = str(levelname).upper()
    if name in _GATEWAY_NAMES:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    if standard is not None:
        return standard
    best, distance = "TRACE", None
    for candidate, number in _GATEWAY_LEVELS:
        d = abs(levelno - number)
        if distance is None or d < distance:
            best, distance = candidate, d
    return best


_second_cache: Dict[int, str] = {}


def iso_timestamp(created: float) -> str:
    """`record.created` (seconds since the epoch) as ISO-8601 UTC with microseconds."""
    seconds = int(created // 1)
    micros = int(round((created - seconds) * 1_000_000))
    if micros >= 1_000_000:
        seconds += 1
        micros -= 1_000_000
    prefix = _second_cache.get(seconds)
    if prefix is None:
        if len(_second_cache) > 64:
            _second_cache.clear()
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_cache[seconds] = prefix
    return "%s.%06dZ" % (prefix, micros)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the record
        try:
            return repr(value)
        except Exception:
            return "<unprintable %s>" % type(value).__name__


# One queued record: (created, levelno, levelname, message, name, module, funcName, lineno, metadata)
_Item = Tuple[float, int, str, str, str, str, str, int, Optional[Dict[str, str]]]


class _Failed(Exception):
    """A request got no usable answer: the connection could not be opened or broke, or the gateway
    refused. What of the body the gateway took is learnt on the next connection."""


class TailgateHandler(logging.Handler):
    """A `logging.Handler` that publishes records into the Tailgate worker `worker`.

    `url` is the gateway's base URL (`http://127.0.0.1:8080`, optionally with a path prefix when it sits
    behind a proxy). `queue_size` bounds the records waiting to be sent; `batch_max` bounds the records
    per request; `flush_interval` is how long (seconds) a record may wait for companions before it is
    sent; `timeout` is the socket timeout, and the longest `close()`/`flush()` wait. `token`, when given,
    is sent as `Authorization: Bearer <token>`. `max_record_bytes` (the gateway's `--max-record-bytes`)
    makes longer messages be cut (with a marker) rather than rejected.

    Each record the gateway confirms is published exactly once, across broken connections and gateway
    restarts (see the module's documentation); `publisher` is the id the handler publishes under.
    """

    def __init__(self, url: str, worker: str, level: int = logging.NOTSET, queue_size: int = 10000,
                 batch_max: int = 500, flush_interval: float = 0.05, timeout: float = 5.0,
                 token: Optional[str] = None, max_record_bytes: int = 64 * 1024,
                 backoff_initial: float = 0.1, backoff_max: float = 10.0):
        super().__init__(level)
        if not WORKER_ID.match(worker or ""):
            raise ValueError("invalid worker id %r: expected [A-Za-z0-9][A-Za-z0-9._:-]{0,127}" % (worker,))
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must look like http://HOST:PORT (got %r)" % (url,))
        if queue_size < 1 or batch_max < 1:
            raise ValueError("queue_size and batch_max must be positive")
        self.url = url
        self.worker = worker
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        prefix = self._prefix = parts.path.rstrip("/")
        quoted = urllib.parse.quote(worker, safe="")
        self._worker_path = "%s/api/workers/%s" % (prefix, quoted)
        self._queue_size = int(queue_size)
        self._batch_max = int(batch_max)
        self._flush_interval = max(0.0, float(flush_interval))
        self._timeout = float(timeout)
        self._max_record_bytes = int(max_record_bytes)
        self._backoff_initial = float(backoff_initial)
        self._backoff_max = float(backoff_max)
        #: This handler's publisher id (`Tailgate-Publisher`): new for every handler, so the gateway never
        #: holds offsets of it that another process (or an earlier handler) sent.
        self.publisher = "py-" + os.urandom(8).hex()
        self._headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json",
                         "User-Agent": "tailgate-logging/0.2 (Python %d.%d)" % sys.version_info[:2]}
        if token:
            self._headers["Authorization"] = "Bearer %s" % token
        self._publish_headers = dict(self._headers, **{"Tailgate-Publisher": self.publisher})

        self._queue: Deque[Any] = deque()  # LogRecords to format later, or formatted _Items
        self._drop_lock = threading.Lock()
        self._dropped = 0            # records not queued since the last drop report
        self._wake = threading.Event()
        self._idle = threading.Condition(threading.Lock())
        self._inflight = False       # the sender holds records not yet delivered
        self._closing = False
        self._closed = False
        self._close_deadline: Optional[float] = None
        self._conn: Optional[http.client.HTTPConnection] = None
        self._last_used = 0.0
        # The sender's buffer: encoded lines not yet confirmed by the gateway, `_pending[i]` with the
        # offset `_base + i`; the next line taken gets `_base + len(_pending)`. Sender thread only.
        self._pending: List[bytes] = []
        self._base = 1
        self._epoch: Optional[str] = None       # the run the gateway last said this publisher is in
        self._notices: List[str] = []           # warnings to publish (rejections)
        self._last_problem: Optional[str] = None
        #: Counters: `sent` (records the gateway published), `dropped` (queue overflow, all time),
        #: `rejected` (lines the gateway refused), `reconnects` (connections opened), `recovered` (records
        #: a new connection found the gateway already had: their answer had been lost), `duplicates`
        #: (records sent again that the gateway skipped), `runs` (times the worker's run changed under the
        #: handler), `lost` (given up at close), `requests`.
        self.stats = {"sent": 0, "dropped": 0, "rejected": 0, "reconnects": 0, "recovered": 0,
                      "duplicates": 0, "runs": 0, "lost": 0, "requests": 0}
        self._thread = threading.Thread(target=self._run, name=_SENDER_NAME, daemon=True)
        self._thread_ident: Optional[int] = None
        self._thread.start()

    def __repr__(self) -> str:
        return "<TailgateHandler %s worker=%s (%s)>" % (self.url, self.worker, logging.getLevelName(self.level))

    # ------------------------------------------------------------------ application side

    def handle(self, record: logging.LogRecord) -> Any:
        # Like logging.Handler.handle, minus the handler lock: emit is thread-safe on its own and must
        # not wait for another thread.
        if self.filters:  # most handlers have none: skip the call
            rv = self.filter(record)
            if isinstance(rv, logging.LogRecord):  # Python 3.12: a filter may return a replacement record
                record = rv
            if not rv:
                return rv
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        # The application's thread runs this for every record, so the usual path is a handful of
        # attribute reads and one append: no loop, no lock, no temporary object (an allocation here
        # can set off a garbage collection inside the application's logging call).
        try:
            queue = self._queue
            if len(queue) >= self._queue_size or self._closed or _get_ident() == self._thread_ident:
                self._refuse()
                return
            args = record.args
            if (len(record.__dict__) == _PLAIN_RECORD_SIZE and type(record.msg) is str and record.exc_info is None
                    and record.stack_info is None
                    and (not args or (type(args) is tuple and len(args) == 1 and type(args[0]) in _IMMUTABLE))):
                # No extras, and what the message is made of cannot change: the sender thread formats
                # it later to the same text.
                queue.append(record)
            else:
                queue.append(self._prepare(record))
            if len(queue) == self._batch_max:
                self._wake.set()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _refuse(self) -> None:
        """A record not queued: after close, from the sender itself, or counted as dropped (queue full)."""
        if self._closed or _get_ident() == self._thread_ident:
            return
        with self._drop_lock:
            self._dropped += 1
            self.stats["dropped"] += 1

    def _prepare(self, record: logging.LogRecord) -> Any:
        """What to queue for a record off the usual path: the record itself when every argument and
        `extra` value is an immutable built-in value (formatted later to the same text), else a tuple
        formatted now (its arguments may change once the call returns)."""
        attributes = record.__dict__
        extras = attributes.keys() - _STANDARD_ATTRIBUTES if len(attributes) > _PLAIN_RECORD_SIZE else None
        if record.exc_info or record.exc_text or record.stack_info:
            return self._snapshot(record, extras)
        args = record.args
        if type(record.msg) not in _IMMUTABLE:  # logger.info(some_object): its str() may change
            return self._snapshot(record, extras)
        if args and (type(args) is not tuple or not _IMMUTABLE.issuperset(map(type, args))):  # or a mapping
            return self._snapshot(record, extras)
        if extras:
            for key in extras:
                if type(attributes[key]) not in _IMMUTABLE:
                    return self._snapshot(record, extras)
        return record

    def _snapshot(self, record: logging.LogRecord, extras: Optional[Any]) -> _Item:
        """The record as a tuple, formatted now (its arguments may change after the call returns)."""
        message = record.getMessage()
        if record.exc_info or record.exc_text or record.stack_info:
            message = self._with_traceback(record, message)
        metadata = None
        if extras:
            attributes = record.__dict__
            metadata = {key: _text(attributes[key]) for key in extras}
        return (record.created, record.levelno, record.levelname, message, record.name,
                record.module, record.funcName, record.lineno, metadata)

    def _with_traceback(self, record: logging.LogRecord, message: str) -> str:
        formatter = self.formatter or _DEFAULT_FORMATTER
        if record.exc_info and not record.exc_text:
            record.exc_text = formatter.formatException(record.exc_info)
        if record.exc_text:
            if message[-1:] != "\n":
                message += "\n"
            message += record.exc_text
        if record.stack_info:
            if message[-1:] != "\n":
                message += "\n"
            message += formatter.formatStack(record.stack_info)
        return message

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits (at most `timeout`, default the handler's) until the gateway has confirmed every queued
        record (an answer's `offset` covers it: it is written to the gateway's disk). Returns whether it
        has."""
        if self._closed or not self._thread.is_alive():
            return not self._queue
        wait = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        self._wake.set()
        with self._idle:
            while self._queue or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
                self._wake.set()
        return True

    def close(self) -> None:
        """Sends what is queued (waiting at most `timeout` seconds for the gateway to confirm it), stops
        the sender thread and closes the connection. Records not confirmed in time are counted in
        `stats["lost"]` and reported on stderr (some of them may have reached the gateway: their answer
        did not come back in time)."""
        if not self._closing:
            self._closing = True
            self._close_deadline = time.monotonic() + self._timeout
            self._wake.set()
            if self._thread.is_alive() and threading.current_thread() is not self._thread:
                self._thread.join(self._timeout + 1.0)
            self._closed = True
        super().close()

    def stop_worker(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Flushes, then ends the worker (`POST /api/workers/{id}/stop`): its subscribers get `end`.
        Returns the gateway's answer; raises `TailgateError` if the gateway refused or was unreachable."""
        self.flush(timeout)
        status, body = self._request_once("POST", self._worker_path + "/stop", b"", timeout)
        if status != 200:
            raise TailgateError("stopping worker %r: HTTP %d %s" % (self.worker, status, _error_text(body)),
                                status, body)
        return body

    def workers(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The gateway's `GET /api/workers` list (each with `log_stream_url`)."""
        status, body = self._request_once("GET", self._prefix + "/api/workers", None, timeout)
        if status != 200:
            raise TailgateError("listing workers: HTTP %d %s" % (status, _error_text(body)), status, body)
        return body["workers"]

    def _request_once(self, method: str, path: str, body: Optional[bytes],
                      timeout: Optional[float]) -> Tuple[int, Any]:
        conn = self._new_connection(self._timeout if timeout is None else timeout)
        try:
            headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise TailgateError("%s %s: %s" % (method, path, error)) from error
        finally:
            conn.close()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, data.decode("utf-8", "replace")

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    # ------------------------------------------------------------------ sender thread

    def _run(self) -> None:
        self._thread_ident = threading.get_ident()
        pending = self._pending
        backoff = self._backoff_initial
        try:
            while True:
                if not pending:  # a new batch only once the last one is confirmed
                    self._take_batch()
                    if not pending:
                        self._set_idle()
                        if self._closing and not self._queue:
                            break
                        continue
                try:
                    self._deliver()
                    backoff = self._backoff_initial
                    self._problem(None)
                except _Failed as error:
                    self._problem(str(error))
                    self._drop_connection()
                    if self._closing and time.monotonic() >= (self._close_deadline or 0):
                        break
                    delay = random.uniform(backoff / 2, backoff)
                    backoff = min(self._backoff_max, backoff * 2)
                    self._sleep(delay)
                finally:
                    if not pending:
                        self._set_idle()
        except Exception:  # a bug here must not go unnoticed, nor take the application down
            sys.stderr.write("tailgate_logging: sender thread failed:\n" + traceback.format_exc())
        finally:
            lost = len(pending) + len(self._queue)
            self._queue.clear()
            if lost:
                self.stats["lost"] += lost
                sys.stderr.write("tailgate_logging: %d records for worker %r could not be delivered to %s "
                                 "before close\n" % (lost, self.worker, self.url))
            self._drop_connection()
            self._set_idle()

    def _set_idle(self) -> None:
        with self._idle:
            self._inflight = False
            self._idle.notify_all()

    def _sleep(self, delay: float) -> None:
        """Waits out a backoff. A flush does not shorten it; once closing, it is cut to 0.1 s (and to the
        close deadline), so close() retries often while it may, without spinning."""
        end = time.monotonic() + delay
        while True:
            if self._closing:
                end = min(end, time.monotonic() + 0.1, self._close_deadline or 0)
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            if self._closing:
                time.sleep(remaining)
            else:
                self._wake.wait(remaining)  # close() sets it
                self._wake.clear()

    def _problem(self, text: Optional[str]) -> None:
        if text == self._last_problem:
            return
        if text is not None and self._last_problem is None:
            sys.stderr.write("tailgate_logging: gateway %s unreachable for worker %r (%s); retrying with "
                             "backoff, queueing up to %d records\n" % (self.url, self.worker, text, self._queue_size))
        self._last_problem = text

    def _take_batch(self) -> None:
        """Encodes a batch into the (empty) buffer, preceded by the drop report if records were dropped.
        When there is nothing to send, waits one flush interval first (woken early by close, flush or a
        full batch): records wait at most that long, and gather into batches while a request is under
        way."""
        queue = self._queue
        if not queue and not self._dropped and not self._notices:
            if self._closing:
                return
            self._wake.wait(max(self._flush_interval, 0.005))
            self._wake.clear()
            if not queue and not self._dropped and not self._notices:
                return
        self._inflight = True  # before taking records off the queue, for flush()
        lines = self._pending
        with self._drop_lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            lines.append(self._notice_line("WARNING", _DROP_MESSAGE.format(n=dropped), {"dropped": str(dropped)}))
        while self._notices:
            lines.append(self._notice_line("WARNING", self._notices.pop(0), None))
        encode = self._encode
        for n in range(self._batch_max):
            try:
                item = queue.popleft()
            except IndexError:
                break
            try:
                lines.append(encode(item))
            except Exception:
                if type(item) is tuple:
                    self.stats["rejected"] += 1
                else:  # a record whose message could not be formatted: reported as emit would have
                    self.handleError(item)
            if n % 4 == 3:
                time.sleep(0)  # hand the GIL to the application's threads: their emit must not wait for ours

    def _notice_line(self, level: str, message: str, metadata: Optional[Dict[str, str]]) -> bytes:
        return self._encode((time.time(), 0, level, message, "tailgate_logging", "handler", "", 0, metadata))

    def _encode(self, item: Any) -> bytes:
        """One NDJSON line, ending with a newline. JSON escapes every control character, so a line is
        always exactly one record (and one offset) for the gateway."""
        if type(item) is not tuple:  # a record queued as it was (see emit)
            item = self._snapshot(item, item.__dict__.keys() - _STANDARD_ATTRIBUTES
                                  if len(item.__dict__) > _PLAIN_RECORD_SIZE else None)
        created, levelno, levelname, message, name, module, func, line_no, metadata = item
        timestamp = iso_timestamp(created)
        level = _LEVEL_CACHE.get((levelno, levelname))
        if level is None:
            level = _LEVEL_CACHE[(levelno, levelname)] = gateway_level(levelno, levelname)
        # Written by hand around the C string escaper: the sender holds the GIL while it encodes, and
        # the application's threads wait for the GIL meanwhile, so this must be cheap.
        source = (name, module, func)
        fields = _SOURCE_CACHE.get(source)
        if fields is None:
            if len(_SOURCE_CACHE) > 1024:
                _SOURCE_CACHE.clear()
            fields = _SOURCE_CACHE[source] = ',"logger_name":%s,"module":%s,"func_name":%s,"line_no":' % (
                _escape(name or ""), _escape(module or ""), _escape(func or ""))
        text = '{"message":%s,"level":"%s","timestamp":"%s"%s%d%s}' % (
            _escape(message), level, timestamp, fields, int(line_no or 0),
            ',"metadata":' + _JSON.encode(metadata) if metadata else "")
        line = text.encode("utf-8", "replace")
        if len(line) > self._max_record_bytes:
            obj: Dict[str, Any] = {"message": message, "level": level, "timestamp": timestamp,
                                   "logger_name": name or "", "module": module or "", "func_name": func or "",
                                   "line_no": int(line_no or 0)}
            if metadata:
                obj["metadata"] = metadata
            line = self._shorten(obj)
        return line + b"\n"

    def _shorten(self, obj: Dict[str, Any]) -> bytes:
        message: str = obj["message"]
        excess = len(_JSON.encode(obj).encode("utf-8", "replace"))
        excess -= self._max_record_bytes
        data = message.encode("utf-8", "replace")
        keep = max(0, len(data) - excess - 200)
        while True:
            cut = data[:keep].decode("utf-8", "ignore")
            obj["message"] = "%s… [%d bytes cut by tailgate_logging]" % (cut, len(data) - len(cut.encode("utf-8")))
            line = _JSON.encode(obj).encode("utf-8", "replace")
            if len(line) <= self._max_record_bytes or keep == 0:
                return line
            keep = max(0, keep - (len(line) - self._max_record_bytes) - 64)

    # -- the connection

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _usable_connection(self) -> bool:
        """Whether the open connection may carry the next body (open, not idle for long, not closed by
        the gateway meanwhile); if not, it is closed."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            if time.monotonic() - self._last_used < 20.0 and not _dropped(conn.sock):
                return True
        self._drop_connection()
        return False

    def _connect(self) -> None:
        """Opens a new connection. Raises `_Failed`."""
        self._drop_connection()
        conn = self._new_connection(self._timeout)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            conn.close()
            raise _Failed("connect: %s" % (error,)) from None
        self._conn = conn
        self._last_used = time.monotonic()
        self.stats["reconnects"] += 1

    def _post(self, body: bytes, headers: Dict[str, str]) -> Dict[str, Any]:
        """One `POST …/records` on the open connection; the gateway's answer. Raises `_Failed` (the
        connection broke, or an answer other than 200: then nothing is taken as confirmed)."""
        conn = self._conn
        if conn is None:
            raise _Failed("no connection")
        try:
            conn.request("POST", self._worker_path + "/records", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self._drop_connection()
            raise _Failed("POST records: %s" % (error or type(error).__name__,)) from None
        self.stats["requests"] += 1
        self._last_used = time.monotonic()
        if response.will_close:
            self._drop_connection()
        answer = _json(data)
        if response.status != 200:
            # A refusal (403 not allowed, 409 id owned in-process, 503 …). Retried with backoff.
            raise _Failed("HTTP %d %s" % (response.status, _error_text(answer)))
        if not isinstance(answer, dict):
            raise _Failed("HTTP 200 without a JSON answer")
        return answer

    # -- exactly once

    def _deliver(self) -> None:
        """Sends the buffer as one body and drops from it what the answer confirms. On a new connection,
        first asks where this publisher stands (`_resume`). Raises `_Failed`."""
        if not self._usable_connection():
            self._connect()
            self._resume()
            if not self._pending:
                return
            if self._conn is None:
                # The gateway closed the connection after answering (no keep-alive, e.g. a proxy):
                # what it just said is current, and the offsets keep the body exact anyway.
                self._connect()
        pending = self._pending
        count = len(pending)
        headers = self._publish_headers.copy()
        headers["Tailgate-Offset"] = str(self._base)
        answer = self._post(b"".join(pending), headers)
        self.stats["sent"] += _count(answer, "accepted")
        self.stats["duplicates"] += _count(answer, "duplicates")
        rejected = _count(answer, "rejected")
        if rejected:
            self.stats["rejected"] += rejected
            errors = answer.get("errors") or []
            first = errors[0].get("message") if errors and isinstance(errors[0], dict) else "?"
            self._notices.append("%d records rejected by the gateway (first: %s)" % (rejected, first))
        offset = _offset(answer)
        if offset is None:
            # A gateway without exactly-once publishing: its 200 means it took the whole body. (After a
            # broken connection, such a gateway gets the unconfirmed batch again: at least once.)
            del pending[:count]
            self._base += count
            return
        self._new_epoch(answer.get("epoch"))
        if self._confirm(offset) == 0:
            raise _Failed("the answer confirmed none of the %d records sent from offset %d (gateway offset %d)"
                          % (count, self._base, offset))

    def _resume(self) -> None:
        """The first request of a connection: an empty body with `Tailgate-Publisher`. Its `offset` K is
        the last line of this publisher the gateway has (in its current run, `epoch`): lines up to K leave
        the buffer, the rest is sent from K+1. In a new run K counts only what reached that run, so every
        line not yet confirmed is sent into it."""
        answer = self._post(b"", self._publish_headers)
        offset = _offset(answer)
        if offset is None:
            return  # a gateway without exactly-once publishing: nothing can be learnt, send it all
        self._new_epoch(answer.get("epoch"))
        self.stats["recovered"] += self._confirm(offset)

    def _new_epoch(self, epoch: Any) -> None:
        if epoch is not None and epoch != self._epoch:
            if self._epoch is not None:
                self.stats["runs"] += 1
            self._epoch = epoch

    def _confirm(self, offset: int) -> int:
        """Drops the lines at or below `offset` from the buffer; returns how many."""
        pending = self._pending
        n = min(len(pending), offset - self._base + 1)
        if n > 0:
            del pending[:n]
            self._base += n
        if not pending and self._base <= offset:
            # The gateway holds offsets of this publisher beyond any it was sent (cannot happen with a
            # fresh publisher id): number on above them, or the next lines would be skipped.
            self._base = offset + 1
        return max(n, 0)


def _count(answer: Dict[str, Any], key: str) -> int:
    value = answer.get(key)
    return value if type(value) is int else 0


def _offset(answer: Dict[str, Any]) -> Optional[int]:
    value = answer.get("offset")
    return value if type(value) is int else None


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle keep-alive connection was closed by the other side (readable means EOF here)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return "%s: %s" % (body["error"].get("code"), body["error"].get("message"))
    return "" if body is None else str(body)[:200]


_DEFAULT_FORMATTER = logging.Formatter()
_LEVEL_CACHE: Dict[Tuple[int, str], str] = {}
