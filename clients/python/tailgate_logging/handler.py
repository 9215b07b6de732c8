"""`TailgateHandler`: publishes Python log records to a Tailgate gateway over HTTP.

The application's side (`emit`) only appends to a bounded in-memory queue — the record itself when its
arguments and `extra` values are immutable built-in values (the sender thread formats it later, to the
same text), else a tuple formatted at the call; it never touches the network, never waits for a lock
held across I/O, and never raises.
A daemon thread takes the queue in batches and POSTs each batch as NDJSON to
`/api/workers/{worker}/records` over one persistent HTTP/1.1 connection. When the gateway is down or
slow the queue fills up; records that do not fit are counted, and once the gateway answers again one
`WARNING` record "N records dropped while the gateway was unreachable" is published: loss is never
silent.

Delivery is at-most-once per record with recovery: when a connection breaks after a batch was (partly)
sent, the sender asks the gateway which of the batch's records arrived (by worker epoch and the ring's
content) and sends only the rest, so a broken connection neither duplicates nor loses records.
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
# One line ready to send, with the key that recognises it in the gateway's ring.
_Line = Tuple[bytes, Tuple[str, str]]


class _Unreachable(Exception):
    """Nothing of the batch reached the gateway (connect failed, or it refused the request)."""


class _Broken(Exception):
    """The connection broke after the batch was (perhaps partly) sent."""


class TailgateHandler(logging.Handler):
    """A `logging.Handler` that publishes records into the Tailgate worker `worker`.

    `url` is the gateway's base URL (`http://127.0.0.1:8080`, optionally with a path prefix when it sits
    behind a proxy). `queue_size` bounds the records waiting to be sent; `batch_max` bounds the records
    per request; `flush_interval` is how long (seconds) a record may wait for companions before it is
    sent; `timeout` is the socket timeout, and the longest `close()`/`flush()` wait. `token`, when given,
    is sent as `Authorization: Bearer <token>`. `max_record_bytes` (the gateway's `--max-record-bytes`)
    makes longer messages be cut (with a marker) rather than rejected.
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
        self._headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json",
                         "User-Agent": "tailgate-logging/0.1 (Python %d.%d)" % sys.version_info[:2]}
        if token:
            self._headers["Authorization"] = "Bearer %s" % token

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
        self._epoch: Optional[str] = None       # the worker's epoch when this connection opened
        self._since: Optional[int] = None       # a seq at or before our undelivered records
        self._unsure = False                    # a batch's fate is unknown: recover before sending
        self._fresh = False                     # the connection is new: read the worker's epoch
        self._notices: List[str] = []           # warnings to publish (rejections)
        self._last_problem: Optional[str] = None
        #: Counters: `sent` (records the gateway accepted), `dropped` (queue overflow, all time),
        #: `rejected` (lines the gateway refused), `reconnects`, `recovered` (records found already
        #: delivered after a broken connection), `lost` (given up at close).
        self.stats = {"sent": 0, "dropped": 0, "rejected": 0, "reconnects": 0, "recovered": 0,
                      "lost": 0, "requests": 0}
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
        """Waits (at most `timeout`, default the handler's) until every queued record was delivered.
        Returns whether it was."""
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
        """Sends what is queued (waiting at most `timeout` seconds), stops the sender thread and closes
        the connection. Records that could not be delivered in time are counted in `stats["lost"]` and
        reported on stderr."""
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
        pending: List[_Line] = []
        backoff = self._backoff_initial
        try:
            while True:
                if not pending:
                    pending = self._take_batch()
                    if not pending:
                        self._set_idle()
                        if self._closing and not self._queue:
                            break
                        continue
                try:
                    pending = self._deliver(pending)
                    backoff = self._backoff_initial
                    self._problem(None)
                except (_Unreachable, _Broken) as error:
                    self._problem(str(error))
                    self._drop_connection()
                    if self._closing and time.monotonic() >= (self._close_deadline or 0):
                        break
                    delay = random.uniform(backoff / 2, backoff)
                    backoff = min(self._backoff_max, backoff * 2)
                    if self._closing:
                        delay = min(delay, max(0.0, (self._close_deadline or 0) - time.monotonic()))
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
        # Interruptible by close() (which sets _wake); a flush does not shorten the backoff.
        end = time.monotonic() + delay
        while not self._closing:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def _problem(self, text: Optional[str]) -> None:
        if text == self._last_problem:
            return
        if text is not None and self._last_problem is None:
            sys.stderr.write("tailgate_logging: gateway %s unreachable for worker %r (%s); retrying with "
                             "backoff, queueing up to %d records\n" % (self.url, self.worker, text, self._queue_size))
        self._last_problem = text

    def _take_batch(self) -> List[_Line]:
        """Encodes a batch (preceded by the drop report if records were dropped). When there is nothing
        to send, waits one flush interval first (woken early by close, flush or a full batch): records
        wait at most that long, and gather into batches while a request is under way."""
        queue = self._queue
        if not queue and not self._dropped and not self._notices:
            if self._closing:
                return []
            self._wake.wait(max(self._flush_interval, 0.005))
            self._wake.clear()
            if not queue and not self._dropped and not self._notices:
                return []
        self._inflight = True  # before taking records off the queue, for flush()
        lines: List[_Line] = []
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
        return lines

    def _notice_line(self, level: str, message: str, metadata: Optional[Dict[str, str]]) -> _Line:
        return self._encode((time.time(), 0, level, message, "tailgate_logging", "handler", "", 0, metadata))

    def _encode(self, item: Any) -> _Line:
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
            line, message = self._shorten(obj)
        return line + b"\n", (timestamp, message)

    def _shorten(self, obj: Dict[str, Any]) -> Tuple[bytes, str]:
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
                return line, obj["message"]
            keep = max(0, keep - (len(line) - self._max_record_bytes) - 64)

    # -- the connection

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        """The open connection, or a new one (then the worker's epoch is read, and a broken batch's fate
        settled). Raises `_Unreachable`."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            idle = time.monotonic() - self._last_used
            if idle < 20.0 and not _dropped(conn.sock):
                return conn
        self._drop_connection()
        conn = self._new_connection(self._timeout)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            conn.close()
            raise _Unreachable("connect: %s" % (error,)) from None
        self._conn = conn
        self._fresh = True
        self._last_used = time.monotonic()
        self.stats["reconnects"] += 1
        return conn

    def _call(self, method: str, path: str, body: Optional[bytes], headers: Dict[str, str]) -> Tuple[int, bytes]:
        """One request on the persistent connection. Raises `_Unreachable` (connect failed) or `_Broken`."""
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self._drop_connection()
            raise _Broken("%s %s: %s" % (method, path.rsplit("/", 1)[-1], error or type(error).__name__)) from None
        self.stats["requests"] += 1
        self._last_used = time.monotonic()
        if response.will_close:
            self._drop_connection()
        return response.status, data

    def _worker_info(self) -> Optional[Dict[str, Any]]:
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        status, data = self._call("GET", self._worker_path, None, headers)
        if status == 404:
            return None
        if status != 200:
            raise _Unreachable("GET worker: HTTP %d %s" % (status, _error_text(_json(data))))
        return _json(data)

    def _deliver(self, lines: List[_Line]) -> List[_Line]:
        """Sends `lines` until the gateway has them all; returns [] (raises when it could not)."""
        self._connection()  # (re)connects if needed: then the worker's epoch is read first
        if self._fresh or self._unsure:
            try:
                info = self._worker_info()
            except _Broken as error:
                raise _Unreachable(str(error)) from None
            if self._unsure:
                lines = self._recover(lines, info)
                if not lines:
                    return []
            self._epoch = info.get("epoch") if info else None
            self._since = info.get("last_seq") if info else 0
            self._fresh = False
        body = b"".join(line for line, _ in lines)
        try:
            status, data = self._call("POST", self._worker_path + "/records", body, self._headers)
        except _Broken:
            self._unsure = True
            raise
        if status != 200:
            # A refusal (403 not allowed, 409 id owned in-process, 503 …): nothing was published.
            raise _Unreachable("HTTP %d %s" % (status, _error_text(_json(data))))
        answer = _json(data) or {}
        accepted = int(answer.get("accepted") or 0)
        rejected = int(answer.get("rejected") or 0)
        self.stats["sent"] += accepted
        if answer.get("last_seq") is not None:
            self._since = answer["last_seq"]
        if rejected:
            self.stats["rejected"] += rejected
            errors = answer.get("errors") or []
            first = errors[0].get("message") if errors and isinstance(errors[0], dict) else "?"
            self._notices.append("%d records rejected by the gateway (first: %s)" % (rejected, first))
        return []

    def _recover(self, lines: List[_Line], info: Optional[Dict[str, Any]]) -> List[_Line]:
        """After a connection broke mid-request: which of `lines` did the gateway publish? Returns the
        rest. Lines are published in order, so what arrived is a prefix of `lines`."""
        if info is None:
            self._unsure = False
            return lines  # the worker is gone (gateway restarted): nothing of ours is there
        if self._epoch is not None and info.get("epoch") not in (None, self._epoch):
            self._unsure = False
            return lines  # a new incarnation of the worker: the old ring is gone
        since = self._since if self._epoch is not None and self._since is not None else 0
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        status, data = self._call("GET", "%s/logs?since=%d" % (self._worker_path, since), None, headers)
        if status != 200:
            self._unsure = True
            raise _Unreachable("GET logs: HTTP %d" % status)
        index = 0
        for raw in data.splitlines():
            if index >= len(lines):
                break
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if (record.get("timestamp"), record.get("message")) == lines[index][1]:
                index += 1
        self._unsure = False
        self.stats["recovered"] += index
        return lines[index:]


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
