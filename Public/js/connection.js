// One worker's live stream (or the stream of one of its runs): opens the WebSocket, follows the
// protocol (hello, logs, gap, end), reconnects with backoff and resumes with `epoch=<run>&since=<last
// seq>` so that no record is given twice and none is skipped; notices a new run of the worker (a new
// `epoch`, or `"resumed":false` in `hello`) and starts that run from the beginning.
//
// Where WebSockets cannot open (a proxy refuses the upgrade: the socket fails twice in a row while the
// gateway answers HTTP), the same messages come as Server-Sent Events from `/api/workers/ID/events`
// (the browser resumes a dropped event stream with `Last-Event-ID`; reopened here, with `since`).

import { EventSourceSocket } from './transport.js';
import { apiURL, runPath, streamURL } from './urls.js';

/** The states a connection reports. */
export const State = Object.freeze({
  connecting: 'connecting',
  live: 'live',
  reconnecting: 'reconnecting',
  disconnected: 'disconnected',
  ended: 'ended',
  notFound: 'not-found',
  refused: 'refused',
});

/**
 * A worker's stream.
 *
 * Callbacks (all optional): `onHello(hello, {restarted})`, `onRecords(records)` (new records only, in
 * seq order), `onGap(from, to)`, `onRestart(hello, {previous})` (the worker's run changed: seqs start
 * over; `previous` is the epoch of the run shown before), `onEnd(message)`, `onState(state, detail)`.
 */
export class StreamConnection {
  #workerId;
  #options;
  #socket = null;
  #timer = null;
  #attempt = 0;
  #wanted = false;
  /** WebSocket failures in a row while the gateway answered HTTP. */
  #failures = 0;
  /** `websocket`, or `sse` once WebSockets were found blocked. */
  transport = 'websocket';
  /** The last seq covered by `logs` or `gap` in the current run, `null` before the first `hello`. */
  cursor = null;
  /** The current run's epoch. */
  epoch = null;
  /** The last `hello` and `end` messages (`end` only once the run has ended). */
  lastHello = null;
  lastEnd = null;
  state = State.disconnected;
  detail = '';
  /** When the next attempt is due (ms, `Date.now()` clock) while reconnecting. */
  retryAt = 0;
  /** `server_time − local time` at the last `hello`, in ms (to measure lag against the server's clock). */
  clockOffset = 0;

  /**
   * `options`: `tail` (records to replay on the first connection), `since` (resume point for the first
   * connection instead of `tail`), `run` (an epoch: stream that run only, `ws/workers/ID/runs/EPOCH`,
   * instead of following the worker), `minDelay`, `maxDelay` (backoff, ms), and the callbacks.
   */
  constructor(workerId, options = {}) {
    this.#workerId = workerId;
    this.#options = { tail: 1000, since: null, run: null, minDelay: 500, maxDelay: 15000, ...options };
  }

  get workerId() {
    return this.#workerId;
  }

  /** The epoch of the run this connection is fixed to, or `null` when it follows the worker. */
  get run() {
    return this.#options.run;
  }

  /**
   * Opens the stream again after it ended (the worker's run came back, or a new one started): resumes
   * after the cursor, in the same run when it goes on, else from the start of the new run.
   */
  reopen() {
    if (this.state === State.notFound) return;
    this.lastEnd = null;
    this.#wanted = true;
    this.#attempt = 0;
    this.#open();
  }

  /** Opens the stream (resuming after the cursor when there is one). */
  connect() {
    if (this.state === State.ended || this.state === State.notFound) return;
    this.#wanted = true;
    this.#attempt = 0;
    this.#open();
  }

  /** Closes the stream and stays closed until `connect()`. */
  disconnect() {
    this.#wanted = false;
    clearTimeout(this.#timer);
    this.#timer = null;
    const socket = this.#socket;
    this.#socket = null;
    if (socket) socket.close(1000, 'disconnected by the user');
    if (this.state !== State.ended && this.state !== State.notFound) this.#setState(State.disconnected);
  }

  #open(resetToStart = false) {
    clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#socket) {
      const old = this.#socket;
      this.#socket = null;
      old.close(1000);
    }
    let params;
    if (resetToStart) params = { since: 0 };
    else if (this.cursor !== null) {
      // Resuming: name the run the cursor belongs to, so that a new run of the worker is answered with
      // `"resumed":false` and its first records rather than a resumption at a seq of another run.
      params = this.epoch && !this.#options.run ? { epoch: this.epoch, since: this.cursor } : { since: this.cursor };
    } else if (this.#options.since !== null) params = { since: this.#options.since };
    else params = { tail: this.#options.tail };
    this.#setState(this.#attempt === 0 && this.cursor === null ? State.connecting : State.reconnecting, 'connecting…');
    let socket;
    if (this.transport === 'sse') {
      const run = this.#options.run;
      const path = run ? `${runPath(this.#workerId, run)}/events` : `api/workers/${this.#workerId}/events`;
      socket = new EventSourceSocket(apiURL(path, params), { reconnect: true });
      socket.onreconnecting = () => {
        if (this.#socket === socket) this.#setState(State.reconnecting, 'event stream interrupted');
      };
    } else {
      try {
        socket = new WebSocket(streamURL(this.#workerId, params, this.#options.run));
      } catch (error) {
        this.#setState(State.refused, String(error));
        return;
      }
    }
    this.#socket = socket;
    const session = { greeted: false };
    // Messages are queued and handled together in one task (at 10,000 records/s they arrive a thousand
    // times a second); consecutive `logs` reach `onRecords` as one array.
    const queue = [];
    const drain = () => {
      const messages = queue.splice(0);
      let records = [];
      const flush = () => {
        if (records.length) this.#handle({ type: 'logs', records }, session, socket);
        records = [];
      };
      for (const data of messages) {
        if (this.#socket !== socket) return;
        let message;
        try {
          message = JSON.parse(data);
        } catch {
          continue;
        }
        if (message.type === 'logs' && session.greeted && Array.isArray(message.records)) {
          for (const record of message.records) records.push(record);
        } else {
          flush();
          this.#handle(message, session, socket);
        }
      }
      if (this.#socket === socket) flush();
    };
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      queue.push(event.data);
      if (queue.length === 1) setTimeout(drain, 0);
    };
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#closed(event, session);
    };
  }

  #handle(message, session, socket) {
    const o = this.#options;
    switch (message.type) {
      case 'hello': {
        session.greeted = true;
        this.#attempt = 0;
        this.#failures = 0;
        const serverTime = Date.parse(message.server_time);
        // Correct for the clocks only when they really differ (the hello's own delay is noise).
        const offset = serverTime - Date.now();
        this.clockOffset = Number.isNaN(offset) || Math.abs(offset) < 1000 ? 0 : offset;
        const previous = this.epoch;
        const restarted = previous !== null && message.epoch !== undefined && message.epoch !== previous;
        this.epoch = message.epoch ?? this.epoch;
        this.lastHello = message;
        this.lastEnd = null;
        if (restarted && message.resumed === false) {
          // The gateway knew we asked for another run: it starts the new one at its first stored
          // record. Records before that one are gone (retention): say so rather than skip them.
          this.cursor = 0;
          o.onRestart?.(message, { previous });
          if (message.replay_from > 1) {
            o.onGap?.(1, message.replay_from - 1, 'not kept');
            this.cursor = message.replay_from - 1;
          }
        } else if (restarted) {
          this.cursor = 0;
          o.onRestart?.(message, { previous });
          if (message.replay_from !== 1) {
            // We asked to resume inside the previous run: ask the new run for everything instead.
            this.#open(true);
            return;
          }
        } else if (this.cursor === null || message.replay_from - 1 > this.cursor) {
          this.cursor = message.replay_from - 1;
        }
        this.#setState(State.live, '');
        o.onHello?.(message, { restarted });
        break;
      }
      case 'logs': {
        if (!session.greeted || !Array.isArray(message.records)) return;
        let records = message.records;
        if (records.length === 0) return;
        if (records[0].seq <= this.cursor) records = records.filter((r) => r.seq > this.cursor);
        if (records.length === 0) return;
        if (records[0].seq > this.cursor + 1) o.onGap?.(this.cursor + 1, records[0].seq - 1, 'missing');
        this.cursor = records[records.length - 1].seq;
        o.onRecords?.(records);
        break;
      }
      case 'gap': {
        if (!session.greeted || message.to <= this.cursor) return;
        const from = Math.max(message.from, this.cursor + 1);
        this.cursor = message.to;
        o.onGap?.(from, message.to, message.reason ?? 'evicted');
        break;
      }
      case 'end':
        this.#wanted = false;
        this.lastEnd = message;
        this.#setState(State.ended, message.reason ?? 'worker stopped');
        o.onEnd?.(message);
        socket.close(1000);
        break;
      default:
        break;
    }
  }

  async #closed(event, session) {
    if (this.state === State.ended || !this.#wanted) {
      if (this.state !== State.ended) this.#setState(State.disconnected);
      return;
    }
    if (event.code === 1008) {
      this.#wanted = false;
      this.#setState(State.refused, event.reason || 'refused by the gateway (policy)');
      return;
    }
    if (!session.greeted) {
      // Refused before the upgrade (the browser does not say why): ask the API whether the worker exists.
      let answered = false;
      try {
        const run = this.#options.run;
        const response = await fetch(apiURL(run ? runPath(this.#workerId, run) : `api/workers/${this.#workerId}`), { cache: 'no-store' });
        if (response.status === 404) {
          this.#wanted = false;
          this.#setState(State.notFound, run ? 'no such run' : 'no such worker');
          return;
        }
        if (response.status === 401 || response.status === 403) {
          this.#wanted = false;
          this.#setState(State.refused, `access refused (${response.status})`);
          return;
        }
        answered = response.ok;
      } catch {
        // The gateway is unreachable: retry below.
      }
      if (!this.#wanted) return;
      // The gateway answers HTTP but the WebSocket failed, twice in a row: WebSockets are blocked.
      if (!answered) this.#failures = 0;
      else if (this.transport === 'websocket' && ++this.#failures >= 2 && this.#options.fallback !== false) {
        this.transport = 'sse';
        this.#failures = 0;
        this.#attempt = 0;
      }
    }
    this.#scheduleRetry(event.code === 1001 ? 'gateway restarting' : `closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`);
  }

  #scheduleRetry(reason) {
    const o = this.#options;
    const base = Math.min(o.maxDelay, o.minDelay * 2 ** this.#attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.#attempt++;
    this.retryAt = Date.now() + delay;
    this.#setState(State.reconnecting, reason);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (this.#wanted) this.#open();
    }, delay);
  }

  /** Retries now (when waiting to reconnect). */
  retryNow() {
    if (this.#wanted && this.state === State.reconnecting && this.#timer) this.#open();
  }

  #setState(state, detail = '') {
    this.state = state;
    this.detail = detail;
    this.#options.onState?.(state, detail);
  }
}
