"""`TailgateHandler`: publishes Python log records to a Tailgate gateway over HTTP, each exactly once.

The application's side (`emit`) only appends to a bounded in-memory queue — the record itself when its
arguments and `extra` values are immutable built-in values (the sender thread formats it later, to the
same text), else a tuple formatted at the call; it never touches the network, never waits for a lock
held across I/O, and never raises.
A daemon thread takes the queue in batches and POSTs each batch as NDJSON to
`/api/workers/{worker}/records` over one persistent HTTP/1.1 (or HTTPS) connection. When the gateway is
down or slow the queue fills up; records that do not fit are counted, and once the gateway answers again
one `WARNING` record "N records dropped while the gateway was unreachable" is published: loss is never
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

Forking (`os.fork()`, `multiprocessing` with the fork start method): in the child the handler becomes a
new publisher — an empty queue, a publisher id of its own (numbering from 1 again, so its offsets never
meet the parent's), and a sender thread of its own, started by the child's first record. What the parent
had queued or had in flight at the fork stays the parent's: the parent sends it, the child never does.
A `multiprocessing` child flushes and closes the handler when it ends normally (a finalizer: those
processes leave with `os._exit`, without `atexit`).

Configuration: `url`, `worker` and `token` default to the environment variables `TAILGATE_URL`,
`TAILGATE_WORKER` and `TAILGATE_TOKEN`, so a `logging.config.dictConfig` file needs only the class.
`token` may be a callable (called again when the gateway answers 401: a token that expires is refreshed,
not retried); `headers` go with every request (a proxy's basic auth: then the token travels as
`?access_token=`); `https://` URLs use `ssl_context`. A refusal (401, 403, 409, …) is not an outage: it is
reported on stderr at once (what was refused and what to do about it) and then at most once a minute,
and retried after 1 s, 2 s, 4 s … up to once a minute, never in a storm.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import random
import re
import select
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple, Union

from ._version import __version__

__all__ = ["TailgateHandler", "TailgateError", "TokenSource", "WORKER_ID", "ENV_URL", "ENV_WORKER", "ENV_TOKEN",
           "DEFAULT_URL"]

#: What the gateway accepts as a worker id.
WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")

#: The environment variables the constructor's `url`, `worker` and `token` default to.
ENV_URL, ENV_WORKER, ENV_TOKEN = "TAILGATE_URL", "TAILGATE_WORKER", "TAILGATE_TOKEN"
#: The gateway's address when neither `url` nor `TAILGATE_URL` says one (`tailgate serve`'s default).
DEFAULT_URL = "http://127.0.0.1:8080"

#: A token: the token itself, or a callable returning the current one (called again after a 401).
TokenSource = Union[str, Callable[[], str]]

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
_USER_AGENT = "tailgate-logging/%s (Python %d.%d)" % (__version__, sys.version_info[0], sys.version_info[1])

# Headers the handler writes itself; `headers=` may not set them.
_OWN_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding", "connection", "tailgate-publisher",
                          "tailgate-offset", "expect"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
_TOKEN_TEXT = re.compile(r"[\x21-\x7e]+\Z")
# 403 codes about what a token allows: a token provider is asked again (its token may have been replaced).
_TOKEN_REFUSALS = frozenset({"scope_not_allowed", "worker_not_allowed"})
#: The longest wait between two reports of the same refusal on stderr (seconds).
_REPORT_INTERVAL = 60.0


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


# Nested `extra` values (dicts, lists, tuples) become JSON text; what JSON cannot hold inside them, its str().
_NESTED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_text)


def _metadata_text(value: Any) -> str:
    """The text of one `extra` value in the record's `metadata` (whose values are strings): a `str` as it
    is; a `dict`, `list` or `tuple` as compact JSON (`{"side":"buy","qty":[1,2]}`, anything JSON cannot
    hold inside it as its `str()`); anything else as its `str()` (`repr()` if that fails)."""
    if type(value) is str:
        return value
    if isinstance(value, (dict, list, tuple)):
        try:
            return _NESTED.encode(value)
        except Exception:  # circular, or keys JSON cannot have: its str() then
            pass
    return _text(value)


def _redacted(url: str) -> str:
    """`url` without a password (for messages)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit((parts.scheme, "***@" + parts.netloc.rpartition("@")[2], parts.path, parts.query,
                                    parts.fragment))


# One queued record: (created, levelno, levelname, message, name, module, funcName, lineno, metadata)
_Item = Tuple[float, int, str, str, str, str, str, int, Optional[Dict[str, str]]]


class _Failed(Exception):
    """A request got no usable answer: the connection could not be opened or broke, or the gateway was
    busy (408, 429, 5xx). What of the body the gateway took is learnt on the next connection."""


class _Refused(_Failed):
    """The gateway (or a proxy in front of it) refused the request, and asking again will not change that
    by itself: a 3xx or a 4xx other than 408 and 429 (or a token provider that failed). Nothing of the body
    was taken."""

    def __init__(self, status: int, code: str, text: str, hint: str = ""):
        super().__init__(text)
        self.status = status
        self.code = code
        self.hint = hint


# Handlers alive in this process: each becomes a publisher of its own in a forked child.
_HANDLERS: "weakref.WeakSet[TailgateHandler]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_HANDLERS):
        handler._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_at_exit(reference: "weakref.ref[TailgateHandler]") -> None:
    handler = reference()
    if handler is not None:
        handler.close()


class TailgateHandler(logging.Handler):
    """A `logging.Handler` that publishes records into the Tailgate worker `worker`.

    `url` is the gateway's base URL (`http://127.0.0.1:8080`, `https://logs.example.com/tailgate` behind a
    proxy with a path prefix; `https://user:password@…` sends basic auth); default `TAILGATE_URL`, else
    `http://127.0.0.1:8080`. `worker` is the worker id; default `TAILGATE_WORKER`. `queue_size` bounds the
    records waiting to be sent; `batch_max` bounds the records per request; `flush_interval` is how long
    (seconds) a record may wait for companions before it is sent; `timeout` is the socket timeout, and
    the longest `close()`/`flush()` wait. `max_record_bytes` (the gateway's `--max-record-bytes`) makes
    longer messages be cut (with a marker) rather than rejected. `backoff_initial`/`backoff_max` pace the
    retries while the gateway is unreachable or busy; `refused_backoff_max` is the longest wait between two
    requests the gateway refuses.

    `token` (default `TAILGATE_TOKEN`; `""` for none) is sent as `Authorization: Bearer <token>`, or as
    `?access_token=<token>` when `headers` carry an `Authorization` of their own (a proxy's basic auth). It
    may be a callable returning the token: it is called before the first request and again whenever the
    gateway answers 401 (or 403 for the token's scope or workers), and the request is repeated at once
    when the token changed. `headers` are sent with
    every request. `ssl_context` is used for `https://` URLs (default: the system's trusted CAs, which
    `SSL_CERT_FILE` can point elsewhere).

    Each record the gateway confirms is published exactly once, across broken connections and gateway
    restarts (see the module's documentation); `publisher` is the id the handler publishes under (a new
    one in a forked child).
    """

    def __init__(self, url: Optional[str] = None, worker: Optional[str] = None, level: Union[int, str] = logging.NOTSET,
                 queue_size: int = 10000, batch_max: int = 500, flush_interval: float = 0.05, timeout: float = 5.0,
                 token: Optional[TokenSource] = None, max_record_bytes: int = 64 * 1024,
                 backoff_initial: float = 0.1, backoff_max: float = 10.0, *,
                 headers: Optional[Mapping[str, str]] = None, ssl_context: Optional[ssl.SSLContext] = None,
                 refused_backoff_max: float = 60.0) -> None:
        super().__init__(level)
        if url is None:
            url = os.environ.get(ENV_URL) or DEFAULT_URL
        if worker is None:
            worker = os.environ.get(ENV_WORKER) or ""
            if not worker:
                raise ValueError("no worker id: pass worker=... or set the environment variable %s" % ENV_WORKER)
        if not WORKER_ID.match(worker or ""):
            raise ValueError("invalid worker id %r: expected [A-Za-z0-9][A-Za-z0-9._:-]{0,127}" % (worker,))
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ValueError("url must look like http://HOST:PORT or https://HOST[:PORT][/prefix] (got %r)"
                             % (_redacted(url),))
        if parts.query or parts.fragment:
            raise ValueError("url must have no query or fragment (got %r); pass a token with token= or %s"
                             % (_redacted(url), ENV_TOKEN))
        if queue_size < 1 or batch_max < 1:
            raise ValueError("queue_size and batch_max must be positive")
        netloc = parts.netloc.rpartition("@")[2]
        #: The gateway's base URL (without the password of a `user:password@` part).
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.worker = worker
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        self._ssl_context = ssl_context
        prefix = self._prefix = parts.path.rstrip("/")
        quoted = urllib.parse.quote(worker, safe="")
        self._worker_path = "%s/api/workers/%s" % (prefix, quoted)
        self._queue_size = int(queue_size)
        self._limit = self._queue_size  # what emit lets the queue grow to; 0 until a forked child's sender runs
        self._batch_max = int(batch_max)
        self._flush_interval = max(0.0, float(flush_interval))
        self._timeout = float(timeout)
        self._max_record_bytes = int(max_record_bytes)
        self._backoff_initial = float(backoff_initial)
        self._backoff_max = float(backoff_max)
        self._refused_backoff_initial = max(1.0, self._backoff_initial)
        self._refused_backoff_max = max(float(refused_backoff_max), self._refused_backoff_initial)

        # Headers of every request: the application's, basic auth from the URL, then the token's.
        extra: Dict[str, str] = {}
        if parts.username is not None or parts.password is not None:
            credentials = "%s:%s" % (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))
            extra["Authorization"] = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        for name, value in (headers or {}).items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError("invalid header name %r" % (name,))
            if not isinstance(value, str) or not _HEADER_VALUE.match(value):
                raise ValueError("invalid value for header %r (a string without line breaks)" % (name,))
            if name.lower() in _OWN_HEADERS:
                raise ValueError("header %r is the handler's own" % (name,))
            for existing in [k for k in extra if k.lower() == name.lower()]:
                del extra[existing]
            extra[name] = value
        self._extra_headers = extra
        # With an Authorization header of the application's (basic auth of a proxy), the gateway's token
        # cannot travel in it: it goes in the query (`?access_token=`), which the gateway reads first.
        self._token_in_query = any(k.lower() == "authorization" for k in extra)
        if token is None:
            token = os.environ.get(ENV_TOKEN) or None
        self._token_provider: Optional[Callable[[], str]] = None
        self._token: Optional[str] = None
        if callable(token):
            self._token_provider = token
        elif isinstance(token, str):
            token = token.strip()
            if token and not _TOKEN_TEXT.match(token):
                raise ValueError("the token has characters a token cannot have (spaces, line breaks, non-ASCII)")
            self._token = token or None
        elif token is not None:
            raise TypeError("token must be a string or a callable returning one, not %s" % type(token).__name__)

        #: This handler's publisher id (`Tailgate-Publisher`): new for every handler (and in a forked
        #: child), so the gateway never holds offsets of it that another process (or an earlier handler) sent.
        self.publisher = "py-" + os.urandom(8).hex()
        self._headers: Dict[str, str] = {}
        self._publish_headers: Dict[str, str] = {}
        self._records_target = ""
        self._build_headers()

        self._queue: Deque[Any] = deque()  # LogRecords to format later, or formatted _Items
        self._drop_lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._start_lock = threading.Lock()
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
        self._reset_reports()
        #: Counters: `sent` (records the gateway published), `dropped` (queue overflow, all time),
        #: `rejected` (lines the gateway refused), `reconnects` (connections opened), `recovered` (records
        #: a new connection found the gateway already had: their answer had been lost), `duplicates`
        #: (records sent again that the gateway skipped), `runs` (times the worker's run changed under the
        #: handler), `lost` (given up at close), `requests`, `refused` (requests the gateway refused),
        #: `token_refreshes` (calls of the token provider).
        self.stats: Dict[str, int] = dict.fromkeys(_STATS, 0)
        self._forked = False
        self._thread: Optional[threading.Thread] = None
        self._thread_ident: Optional[int] = None
        self._start_sender()
        _HANDLERS.add(self)

    def __repr__(self) -> str:
        return "<TailgateHandler %s worker=%s (%s)>" % (self.url, self.worker, logging.getLevelName(self.level))

    def _build_headers(self) -> None:
        """The headers and records target for the current token (and publisher id)."""
        headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json", "User-Agent": _USER_AGENT}
        headers.update(self._extra_headers)
        if self._token and not self._token_in_query:
            headers["Authorization"] = "Bearer " + self._token
        publish = dict(headers)
        publish["Tailgate-Publisher"] = self.publisher
        self._headers = headers
        self._publish_headers = publish
        self._records_target = self._target(self._worker_path + "/records")

    def _target(self, path: str, params: Optional[Dict[str, str]] = None) -> str:
        """`path` with its query: `params`, and the token when it travels in the query."""
        query = dict(params or {})
        if self._token and self._token_in_query:
            query["access_token"] = self._token
        return path + ("?" + urllib.parse.urlencode(query) if query else "")

    def _reset_reports(self) -> None:
        self._last_problem: Optional[str] = None   # what went wrong last (None: the last request succeeded)
        self._refusal_key: Optional[Tuple[int, str]] = None
        self._refusals_unreported = 0
        self._refusals_total = 0         # attempts refused since the last success
        self._next_refusal_report = 0.0

    # ------------------------------------------------------------------ forking

    def _after_fork_in_child(self) -> None:
        """Runs in a forked child (os.register_at_fork): the handler becomes a new publisher. The parent's
        queue, buffer and connection are the parent's: dropped here (the socket's descriptor is closed,
        which leaves the parent's connection open). A sender thread is started by the child's first record
        (a child that never logs, e.g. one about to exec, runs none)."""
        try:
            self._queue = deque()
            self._pending = []
            self._base = 1
            self._epoch = None
            self._notices = []
            self._dropped = 0
            self._drop_lock = threading.Lock()
            self._token_lock = threading.Lock()
            self._start_lock = threading.Lock()
            self._wake = threading.Event()
            self._idle = threading.Condition(threading.Lock())
            self._inflight = False
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()  # close(2) of this process's descriptor only: no FIN while the parent has it
                except Exception:
                    pass
            self.publisher = "py-" + os.urandom(8).hex()
            self._build_headers()
            self.stats = dict.fromkeys(_STATS, 0)
            self._reset_reports()
            self._thread = None
            self._thread_ident = None
            self._forked = True
            if self._closing:  # closed (or closing) in the parent: closed here
                self._closed = True
            self._limit = 0  # the next emit starts the sender (see _refuse)
        except Exception:
            self._closed = True
            try:
                sys.stderr.write("tailgate_logging: the handler could not be set up after fork (it is closed in "
                                 "this process):\n" + traceback.format_exc())
            except Exception:
                pass

    def _start_sender(self) -> bool:
        """Starts the sender thread unless it runs (or the handler is closing); whether it runs."""
        with self._start_lock:
            if self._thread is None and not self._closing:
                thread = threading.Thread(target=self._run, name=_SENDER_NAME, daemon=True)
                self._thread_ident = None
                self._thread = thread
                thread.start()
                self._limit = self._queue_size
                if self._forked:
                    # multiprocessing's children end with os._exit (no atexit, no logging.shutdown) after
                    # running its finalizers: flush and close there. (Registered now, not at the fork:
                    # multiprocessing clears the finalizers of a new child before running its target.)
                    util = sys.modules.get("multiprocessing.util")
                    if util is not None:
                        try:
                            util.Finalize(None, _close_at_exit, args=(weakref.ref(self),), exitpriority=10)
                        except Exception:
                            pass
            return self._thread is not None

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
            if len(queue) >= self._limit or self._closed or _get_ident() == self._thread_ident:
                self._refuse(record)
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

    def _refuse(self, record: logging.LogRecord) -> None:
        """A record off the usual path: the first one of a forked child (which starts the child's sender
        and is then queued), or one not queued: after close, from the sender itself, or counted as dropped
        (queue full)."""
        if self._closed or _get_ident() == self._thread_ident:
            return
        if self._thread is None:
            if self._start_sender():
                self.emit(record)
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
            metadata = {key: _metadata_text(attributes[key]) for key in extras}
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

    def flush(self, timeout: Optional[float] = None) -> bool:  # type: ignore[override]  # says whether it flushed
        """Waits (at most `timeout`, default the handler's) until the gateway has confirmed every queued
        record (an answer's `offset` covers it: it is written to the gateway's disk). Returns whether it
        has."""
        thread = self._thread
        if self._closed or thread is None or not thread.is_alive():
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
        did not come back in time). While the gateway refuses the records (403, …), close does not wait."""
        if not self._closing:
            self._closing = True
            self._close_deadline = time.monotonic() + self._timeout
            self._wake.set()
            thread = self._thread
            if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
                thread.join(self._timeout + 1.0)
            self._closed = True
        super().close()

    def stop_worker(self, timeout: Optional[float] = None, exit_code: Optional[int] = None,
                    reason: Optional[str] = None) -> Dict[str, Any]:
        """Flushes, then ends the worker's run (`POST /api/workers/{id}/stop`): its subscribers get `end`.
        `exit_code` (0: the run `succeeded`, else `failed`) and `reason` are stored with the run. Returns the
        gateway's answer; raises `TailgateError` if the gateway refused or was unreachable."""
        self.flush(timeout)
        params: Dict[str, str] = {}
        if exit_code is not None:
            params["exit_code"] = str(int(exit_code))
        if reason is not None:
            params["reason"] = reason
        status, body = self._request_once("POST", self._worker_path + "/stop", params, b"", timeout)
        if status != 200:
            raise TailgateError("stopping worker %r: HTTP %d %s" % (self.worker, status, _error_text(body)),
                                status, body)
        return body  # type: ignore[no-any-return]

    def workers(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The gateway's `GET /api/workers` list (each with `log_stream_url`)."""
        status, body = self._request_once("GET", self._prefix + "/api/workers", None, None, timeout)
        if status != 200:
            raise TailgateError("listing workers: HTTP %d %s" % (status, _error_text(body)), status, body)
        return body["workers"]  # type: ignore[no-any-return]

    def _request_once(self, method: str, path: str, params: Optional[Dict[str, str]], body: Optional[bytes],
                      timeout: Optional[float]) -> Tuple[int, Any]:
        """One request of the application's (not the sender's), on a connection of its own; after a 401
        the token provider (if any) is asked for a new token and the request is made once more."""
        for attempt in (1, 2):
            try:
                if self._token_provider is not None and self._token is None:
                    self._refresh_token()
            except _Refused as error:
                raise TailgateError(str(error)) from None
            conn = self._new_connection(self._timeout if timeout is None else timeout)
            try:
                headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
                conn.request(method, self._target(path, params), body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                raise TailgateError("%s %s: %s" % (method, path, error)) from error
            finally:
                conn.close()
            if response.status == 401 and attempt == 1 and self._token_provider is not None:
                try:
                    if self._refresh_token():
                        continue
                except _Refused:
                    pass
            try:
                return response.status, json.loads(data) if data else None
            except ValueError:
                return response.status, data.decode("utf-8", "replace")
        raise AssertionError("unreachable")

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl_context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _refresh_token(self) -> bool:
        """Asks the token provider for the current token; returns whether it differs from the one in use.
        Raises `_Refused` when the provider fails (raises, or returns no token)."""
        provider = self._token_provider
        if provider is None:
            return False
        with self._token_lock:
            self.stats["token_refreshes"] += 1
            try:
                token = provider()
            except Exception as error:
                raise _Refused(0, "token_provider_failed", "the token provider %s raised %s: %s"
                               % (getattr(provider, "__qualname__", repr(provider)), type(error).__name__, error),
                               "fix the token provider (token=)") from None
            if not isinstance(token, str) or not _TOKEN_TEXT.match(token.strip()):
                raise _Refused(0, "token_provider_failed", "the token provider %s returned %s, not a token"
                               % (getattr(provider, "__qualname__", repr(provider)),
                                  "an empty string" if token == "" else "a %s" % type(token).__name__),
                               "it must return the token as a string")
            token = token.strip()
            changed = token != self._token
            self._token = token
            self._build_headers()
            return changed

    # ------------------------------------------------------------------ sender thread

    def _run(self) -> None:
        self._thread_ident = threading.get_ident()
        pending = self._pending
        backoff = self._backoff_initial
        refused_backoff = 0.0
        retried_with_new_token = False
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
                    refused_backoff = 0.0
                    retried_with_new_token = False
                    self._recovered()
                except _Refused as refusal:
                    self._drop_connection()
                    self._refusals_total += 1
                    if refusal.status:
                        self.stats["refused"] += 1
                    if (self._token_provider is not None and not retried_with_new_token
                            and (refusal.status == 401 or refusal.code in _TOKEN_REFUSALS)):
                        # An expired token is the usual reason (or one replaced by a better one since): ask
                        # for the current one and, if it is another, try again at once.
                        retried_with_new_token = True
                        try:
                            if self._refresh_token():
                                continue
                        except _Refused as failed:
                            refusal = failed
                    self._report_refusal(refusal)
                    if self._closing:
                        break  # no retries at close while refused: they would be refused as well
                    refused_backoff = min(self._refused_backoff_max, max(self._refused_backoff_initial, refused_backoff * 2))
                    self._sleep(random.uniform(refused_backoff * 0.75, refused_backoff))
                    retried_with_new_token = False
                except _Failed as error:
                    self._report_unreachable(str(error))
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
            _write("sender thread failed:\n" + traceback.format_exc())
        finally:
            lost = len(pending) + len(self._queue)
            self._queue.clear()
            if lost:
                self.stats["lost"] += lost
                _write("%d records for worker %r could not be delivered to %s before close%s" % (
                    lost, self.worker, self.url, " (%s)" % self._last_problem if self._last_problem else ""))
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

    # -- what goes to stderr

    def _report_unreachable(self, text: str) -> None:
        if self._last_problem is None:
            _write("the gateway %s is unreachable or busy for worker %r (%s); retrying with backoff (up to %g s), "
                   "queueing up to %d records" % (self.url, self.worker, text, self._backoff_max, self._queue_size))
        self._last_problem = text

    def _report_refusal(self, refusal: _Refused) -> None:
        """Reports a refusal on stderr: a new kind of refusal at once, the same one at most once a minute
        (with how many requests were refused meanwhile)."""
        now = time.monotonic()
        key = (refusal.status, refusal.code)
        self._last_problem = str(refusal)
        if key == self._refusal_key and now < self._next_refusal_report:
            self._refusals_unreported += 1
            return
        hint = " " + refusal.hint[0].upper() + refusal.hint[1:] + "." if refusal.hint else ""
        if key != self._refusal_key:
            _write("the gateway %s refused the records of worker %r: %s.%s The handler keeps the records (up "
                   "to %d queued; beyond that new ones are dropped and counted), asks again after %g s, then "
                   "after twice as long each time, up to every %g s, and reports here at most once a minute."
                   % (self.url, self.worker, refusal, hint, self._queue_size, self._refused_backoff_initial,
                      self._refused_backoff_max))
        else:
            _write("the gateway %s still refuses the records of worker %r (%d more refused requests): %s.%s"
                   % (self.url, self.worker, self._refusals_unreported + 1, refusal, hint))
        self._refusal_key = key
        self._refusals_unreported = 0
        self._next_refusal_report = now + _REPORT_INTERVAL

    def _recovered(self) -> None:
        if self._last_problem is None and not self._refusals_total:
            return
        if self._refusal_key is not None:
            _write("the gateway %s accepts the records of worker %r again (after %d refused attempts)"
                   % (self.url, self.worker, self._refusals_total))
        self._reset_reports()

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
        """Opens a new connection (fetching the first token from the provider if need be). Raises
        `_Failed` (`_Refused` when the token provider fails)."""
        self._drop_connection()
        if self._token_provider is not None and self._token is None:
            self._refresh_token()
        conn = self._new_connection(self._timeout)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except ssl.SSLCertVerificationError as error:
            conn.close()
            raise _Refused(0, "tls_certificate", "TLS: %s" % (error.verify_message or error,),
                           "pass ssl_context= with the CA that signed the gateway's certificate, or point "
                           "SSL_CERT_FILE at it") from None
        except OSError as error:
            conn.close()
            raise _Failed("connect: %s" % (error,)) from None
        self._conn = conn
        self._last_used = time.monotonic()
        self.stats["reconnects"] += 1

    def _post(self, body: bytes, headers: Dict[str, str]) -> Dict[str, Any]:
        """One `POST …/records` on the open connection; the gateway's answer. Raises `_Failed` (the
        connection broke, the gateway is busy: retried with backoff) or `_Refused` (a refusal: retried
        slowly, and reported); then nothing is taken as confirmed."""
        conn = self._conn
        if conn is None:
            raise _Failed("no connection")
        try:
            conn.request("POST", self._records_target, body=body, headers=headers)
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
        status = response.status
        if status != 200:
            if status in (408, 429) or status >= 500 or status < 300:
                # Busy (503 too many connections, 408 publisher idle, …): retried with backoff.
                raise _Failed("HTTP %d %s" % (status, _error_text(answer)))
            raise _refusal(status, answer, response, self)
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


_STATS = ("sent", "dropped", "rejected", "reconnects", "recovered", "duplicates", "runs", "lost", "requests",
          "refused", "token_refreshes")


def _write(text: str) -> None:
    """One report line on stderr (never raises: stderr may be closed)."""
    try:
        sys.stderr.write("tailgate_logging: " + text + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _refusal(status: int, answer: Any, response: http.client.HTTPResponse, handler: TailgateHandler) -> _Refused:
    """What a refusal says, and what to do about it."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        text = "HTTP %d %s: %s" % (status, code, error.get("message"))
    else:  # not the gateway's JSON: a proxy in front of it, or another server
        code = ""
        text = "HTTP %d %s (not the gateway's answer: from a proxy?)" % (status, response.reason)
    challenge = response.getheader("WWW-Authenticate") or ""
    location = re.sub(r"(access_token=)[^&#]*", r"\1…", response.getheader("Location") or "")
    has_token = handler._token is not None or handler._token_provider is not None
    provider = handler._token_provider is not None
    if 300 <= status < 400:
        text = "HTTP %d redirect to %s" % (status, location or "?")
        hint = "the gateway is elsewhere: use the URL it redirects to (e.g. https://) as url= or %s" % ENV_URL
    elif status == 401 and challenge.lower().startswith("basic"):
        text += " (%s: %s)" % ("WWW-Authenticate", challenge)
        hint = ("a proxy in front of the gateway asks for a password%s: pass headers={'Authorization': 'Basic …'} "
                "or put user:password@ in the URL" % (" (the one sent is wrong)" if handler._token_in_query else ""))
    elif status == 401 and code == "auth_required":
        hint = ("the gateway requires a token: pass token= or set %s (`tailgate token --scope publish "
                "--worker %s`)" % (ENV_TOKEN, handler.worker))
    elif status == 401 and code == "token_expired":
        hint = ("the token provider returned an expired token" if provider else
                "make a new token, or pass token= a callable that returns a fresh one (called again after a 401)")
    elif status == 401:
        hint = ("the token is not one this gateway accepts: check that it was made with the gateway's "
                "--auth-secret-file (`tailgate token --scope publish`)")
    elif code == "scope_not_allowed":
        hint = ("the token lacks publish scope: make one with `tailgate token --scope publish --worker %s`"
                % handler.worker)
    elif code == "worker_not_allowed":
        hint = "the token does not cover worker %r: make one with `--worker %s` (or `--worker '*'`)" % (
            handler.worker, handler.worker)
    elif code == "publish_not_allowed":
        hint = ("the gateway has auth off (no --auth-secret-file), so it takes no tokens, and this address is not "
                "in its --publish-from" if has_token else
                "this address may publish only with a token (the gateway's --publish-from): pass one of publish "
                "scope (token= or %s)" % ENV_TOKEN)
    elif code in ("origin_not_allowed", "cross_site_request"):
        hint = "do not send Origin or Sec-Fetch-Site headers (headers=)"
    elif code == "host_not_allowed":
        hint = "the gateway does not answer to the host %r: use its address, or start it with --allowed-host" % (
            handler._host,)
    elif code == "worker_owned_in_process":
        hint = "the gateway's own process publishes this worker id: pick another worker id"
    elif status == 404:
        hint = "check the URL's path prefix (the gateway's --base-path behind a proxy)"
    else:
        hint = ""
    return _Refused(status, code, text, hint)


def _count(answer: Dict[str, Any], key: str) -> int:
    value = answer.get(key)
    return value if type(value) is int else 0


def _offset(answer: Dict[str, Any]) -> Optional[int]:
    value = answer.get("offset")
    return value if type(value) is int else None


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle keep-alive connection was closed by the other side. Readable means EOF for plain
    TCP; over TLS it may also be a record without data (a TLS 1.3 session ticket), read here to tell."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    if isinstance(sock, ssl.SSLSocket):
        timeout = sock.gettimeout()
        try:
            sock.setblocking(False)
            try:
                sock.recv(1)  # b"": closed; data: an answer nobody asked for: either way not reusable
            finally:
                sock.settimeout(timeout)
        except ssl.SSLWantReadError:
            return False  # no data: still open
        except (OSError, ValueError):
            return True
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
