// Many workers' streams on one connection: `/ws/streams` (subscribe and unsubscribe by message on the
// open socket), or where WebSockets cannot open, `/api/streams/events` (Server-Sent Events; its list
// is fixed, so a change of subscriptions reopens it). Follows the protocol per worker exactly like
// connection.js does for one (hello, logs, gap, end; no record twice, none skipped), and reconnects with
// backoff, resuming every worker where it was (`resume=ID:EPOCH:SEQ,…`).
//
// Subscriptions are names: worker ids and prefix patterns (`strategy-*`); a worker's stream state is
// created by its `hello` and forgotten when no name selects it any more.

import { State } from './connection.js';
import { EventSourceSocket, probe } from './transport.js';
import { apiURL, selects, socketURL } from './urls.js';

/**
 * Opens that fail in a row (never opened, or closed before any message) while the gateway answers HTTP,
 * before trying Server-Sent Events.
 */
const FAILURES_BEFORE_FALLBACK = 2;

/** One worker's position in its stream. */
class WorkerStream {
  constructor(id) {
    this.id = id;
    /** The last seq covered by `logs` or `gap`, `null` before the first `hello`. */
    this.cursor = null;
    this.epoch = null;
    this.lastHello = null;
    this.lastEnd = null;
    this.ended = false;
  }
}

/**
 * Callbacks (all optional): `onHello(id, hello, {restarted})`, `onRecords(id, records)` (new records of
 * worker `id`, in seq order), `onGap(id, from, to, reason)`, `onRestart(id, hello, {previous})` (a new
 * run: seqs start over), `onEnd(id, message)`, `onError(id, code, message)` (a subscription the gateway
 * could not make), `onForget(id)` (no name selects the worker any more), `onState(state, detail)`.
 */
export class StreamMux {
  /** Stream states by worker id. */
  workers = new Map();
  /** Subscription errors by name: `{code, message}`. */
  errors = new Map();
  /** `websocket` or `sse`. */
  transport = 'websocket';
  state = State.disconnected;
  detail = '';
  retryAt = 0;
  clockOffset = 0;
  /** Connections opened (for tests and the status line). */
  opened = 0;
  #options;
  /** Subscribed names (ids and patterns) → their tail. */
  #names = new Map();
  #socket = null;
  #timer = null;
  #reopenTimer = null;
  #attempt = 0;
  #failures = 0;
  #wanted = false;

  /**
   * `options`: `tail` (records each new subscription starts with), `minDelay`, `maxDelay` (backoff, ms),
   * `sseDelay` (ms to gather subscription changes before reopening the event stream), `fallback`
   * (use Server-Sent Events when WebSockets fail; default true), and the callbacks.
   */
  constructor(options = {}) {
    this.#options = { tail: 100, minDelay: 500, maxDelay: 15000, sseDelay: 250, fallback: true, ...options };
  }

  /** The subscribed names. */
  get names() {
    return [...this.#names.keys()];
  }

  /** Whether some subscribed name selects worker `id`. */
  wants(id) {
    for (const name of this.#names.keys()) if (selects(name, id)) return true;
    return false;
  }

  connect() {
    this.#wanted = true;
    this.#attempt = 0;
    this.#open();
  }

  disconnect() {
    this.#wanted = false;
    clearTimeout(this.#timer);
    clearTimeout(this.#reopenTimer);
    this.#timer = null;
    this.#reopenTimer = null;
    this.#drop();
    this.#setState(State.disconnected);
  }

  /** Retries now (when waiting to reconnect). */
  retryNow() {
    if (this.#wanted && this.state === State.reconnecting && this.#timer) this.#open();
  }

  /**
   * Subscribes to `names` (ids and patterns) not subscribed yet, each from its last `tail` records; a
   * worker whose stream ended (still known here) resumes after its cursor instead.
   */
  subscribe(names, { tail = this.#options.tail } = {}) {
    const added = names.filter((name) => !this.#names.has(name));
    for (const name of added) {
      this.#names.set(name, tail);
      this.errors.delete(name);
    }
    if (added.length) this.#sendSubscribe(added, tail);
    return added;
  }

  /**
   * Subscribes again to worker `id` after its stream ended (a new run, or the same one going on), or
   * after the gateway refused it (it did not exist yet).
   */
  resubscribe(id) {
    if (!this.#names.has(id)) return;
    const stream = this.workers.get(id);
    if (this.errors.has(id)) this.errors.delete(id); // refused before (no such worker yet): ask again
    else if (!stream?.ended) return;
    if (stream) stream.ended = false;
    this.#sendSubscribe([id], this.#names.get(id));
  }

  /** Unsubscribes from `names`; the workers no other name selects are forgotten at once. */
  unsubscribe(names) {
    const removed = names.filter((name) => this.#names.delete(name));
    if (!removed.length) return removed;
    for (const name of removed) this.errors.delete(name);
    for (const id of [...this.workers.keys()]) {
      if (!this.wants(id)) this.#forget(id);
    }
    if (this.transport === 'websocket') this.#send({ type: 'unsubscribe', workers: removed });
    else this.#reopenSoon();
    return removed;
  }

  #forget(id) {
    if (!this.workers.delete(id)) return;
    this.#options.onForget?.(id);
  }

  #sendSubscribe(names, tail) {
    if (this.transport !== 'websocket') {
      this.#reopenSoon();
      return;
    }
    if (!this.#socket || this.#socket.readyState !== WebSocket.OPEN) return; // the next open names them
    const fresh = [];
    for (const name of names) {
      const stream = this.workers.get(name);
      if (stream && stream.cursor !== null && stream.epoch) {
        this.#send({ type: 'subscribe', workers: [name], since: stream.cursor, epoch: stream.epoch });
      } else fresh.push(name);
    }
    if (fresh.length) this.#send({ type: 'subscribe', workers: fresh, tail });
  }

  #send(message) {
    const socket = this.#socket;
    if (socket && this.transport === 'websocket' && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  /** Query parameters that (re)subscribe everything: names, and where each known worker resumes. */
  #query() {
    const resume = [];
    const resumed = new Set();
    for (const stream of this.workers.values()) {
      if (stream.cursor !== null && stream.epoch) {
        resume.push(`${stream.id}:${stream.epoch}:${stream.cursor}`);
        resumed.add(stream.id);
      }
    }
    let workers = this.names.filter((name) => !resumed.has(name));
    let tail = 0;
    if (this.transport === 'websocket' && workers.length) {
      // One tail per URL: the names with another tail are subscribed by message once the socket is open.
      tail = this.#names.get(workers[0]);
      workers = workers.filter((name) => this.#names.get(name) === tail);
    } else {
      for (const name of workers) tail = Math.max(tail, this.#names.get(name));
    }
    const params = {};
    if (workers.length) params.workers = workers.join(',');
    if (workers.length) params.tail = tail;
    if (resume.length) params.resume = resume.join(',');
    return params;
  }

  #drop() {
    const socket = this.#socket;
    this.#socket = null;
    if (socket) socket.close(1000);
  }

  /** The event stream's list is fixed: gather changes for a moment, then reopen it (resuming). */
  #reopenSoon() {
    if (!this.#wanted || this.transport !== 'sse' || this.#reopenTimer) return;
    this.#reopenTimer = setTimeout(() => {
      this.#reopenTimer = null;
      if (this.#wanted && this.transport === 'sse' && this.state !== State.reconnecting) this.#open();
    }, this.#options.sseDelay);
  }

  #open() {
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#drop();
    const first = this.#attempt === 0 && this.opened === 0;
    this.#setState(first ? State.connecting : State.reconnecting, 'connecting…');
    const params = this.#query();
    let socket;
    if (this.transport === 'sse') {
      if (!params.workers && !params.resume) {
        // Nothing to stream: no connection until something is subscribed.
        this.#setState(State.live, '');
        return;
      }
      socket = new EventSourceSocket(apiURL('api/streams/events', params));
    } else {
      try {
        socket = new WebSocket(socketURL('ws/streams', params));
      } catch (error) {
        this.#setState(State.refused, String(error));
        return;
      }
    }
    this.opened++;
    this.#socket = socket;
    const session = { opened: false, messages: 0, subscribed: this.#names.size > 0 };
    // What the URL subscribed: changes made while the socket was connecting are sent once it is open.
    const named = new Set([...(params.workers ? params.workers.split(',') : []), ...this.workers.keys()]);
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      session.opened = true;
      this.#attempt = 0;
      this.#setState(State.live, '');
      if (this.transport !== 'websocket') return;
      const gone = [...named].filter((name) => !this.#names.has(name) && !this.wants(name));
      if (gone.length) this.#send({ type: 'unsubscribe', workers: gone });
      const byTail = new Map();
      for (const [name, tail] of this.#names) {
        if (named.has(name)) continue;
        if (!byTail.has(tail)) byTail.set(tail, []);
        byTail.get(tail).push(name);
      }
      for (const [tail, names] of byTail) this.#sendSubscribe(names, tail);
    };
    // Messages are handled together in one task; consecutive `logs` of a worker reach `onRecords` as one array.
    const queue = [];
    const drain = () => {
      const messages = queue.splice(0);
      let pending = null;
      const flush = () => {
        if (pending) this.#logs(pending.worker, pending.records);
        pending = null;
      };
      for (const data of messages) {
        if (this.#socket !== socket) return;
        let message;
        try {
          message = JSON.parse(data);
        } catch {
          continue;
        }
        if (message.type === 'logs' && Array.isArray(message.records)) {
          if (pending && pending.worker !== message.worker) flush();
          pending ??= { worker: message.worker, records: [] };
          for (const record of message.records) pending.records.push(record);
        } else {
          flush();
          this.#handle(message);
        }
      }
      if (this.#socket === socket) flush();
    };
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      session.messages++;
      this.#failures = 0;
      queue.push(event.data);
      if (queue.length === 1) setTimeout(drain, 0);
    };
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#closed(event, session);
    };
  }

  #handle(message) {
    const id = message.worker;
    if (typeof id !== 'string') return;
    const o = this.#options;
    switch (message.type) {
      case 'hello': {
        if (!this.wants(id)) return;
        let stream = this.workers.get(id);
        if (!stream) {
          stream = new WorkerStream(id);
          this.workers.set(id, stream);
        }
        this.errors.delete(id);
        const serverTime = Date.parse(message.server_time);
        const offset = serverTime - Date.now();
        this.clockOffset = Number.isNaN(offset) || Math.abs(offset) < 1000 ? 0 : offset;
        const previous = stream.epoch;
        const restarted = previous !== null && message.epoch !== undefined && message.epoch !== previous;
        stream.epoch = message.epoch ?? stream.epoch;
        stream.lastHello = message;
        stream.lastEnd = null;
        stream.ended = false;
        if (restarted) {
          stream.cursor = 0;
          o.onRestart?.(id, message, { previous });
          if (message.replay_from > 1) {
            o.onGap?.(id, 1, message.replay_from - 1, message.resumed === false ? 'not kept' : 'not replayed');
            stream.cursor = message.replay_from - 1;
          }
        } else if (stream.cursor === null) {
          stream.cursor = message.replay_from - 1;
        } else if (message.replay_from - 1 > stream.cursor) {
          // Resumed further on than asked (should not happen: the gateway sends a gap): say so.
          o.onGap?.(id, stream.cursor + 1, message.replay_from - 1, 'missing');
          stream.cursor = message.replay_from - 1;
        }
        o.onHello?.(id, message, { restarted });
        break;
      }
      case 'gap': {
        const stream = this.workers.get(id);
        if (!stream || stream.cursor === null || message.to <= stream.cursor) return;
        const from = Math.max(message.from, stream.cursor + 1);
        stream.cursor = message.to;
        o.onGap?.(id, from, message.to, message.reason ?? 'evicted');
        break;
      }
      case 'end': {
        const stream = this.workers.get(id);
        if (!stream) return;
        if (stream.ended && stream.lastEnd?.epoch === message.epoch) return; // told again after a resumption
        stream.ended = true;
        stream.lastEnd = message;
        o.onEnd?.(id, message);
        break;
      }
      case 'error': {
        const error = { code: message.code ?? 'error', message: message.message ?? message.code ?? 'refused' };
        if (error.code === 'already_subscribed') return;
        this.errors.set(id, error);
        o.onError?.(id, error.code, error.message);
        break;
      }
      case 'unsubscribed':
        // Nothing of the worker follows; a new subscription of it starts with a new `hello`.
        if (!this.wants(id)) this.#forget(id);
        else this.workers.delete(id);
        break;
      default:
        break;
    }
  }

  #logs(id, records) {
    const stream = this.workers.get(id);
    if (!stream || stream.cursor === null || records.length === 0) return;
    if (records[0].seq <= stream.cursor) records = records.filter((r) => r.seq > stream.cursor);
    if (records.length === 0) return;
    if (records[0].seq > stream.cursor + 1) this.#options.onGap?.(id, stream.cursor + 1, records[0].seq - 1, 'missing');
    stream.cursor = records[records.length - 1].seq;
    this.#options.onRecords?.(id, records);
  }

  async #closed(event, session) {
    if (!this.#wanted) {
      this.#setState(State.disconnected);
      return;
    }
    if (event.code === 1008) {
      this.#wanted = false;
      this.#setState(State.refused, event.reason || 'refused by the gateway (policy)');
      return;
    }
    const failed = !session.opened || (session.messages === 0 && session.subscribed && event.code !== 1001);
    if (failed) {
      const refusal = await this.#diagnose();
      if (!this.#wanted || this.#socket) return;
      if (refusal) {
        this.#wanted = false;
        this.#setState(State.refused, refusal);
        return;
      }
    } else {
      this.#failures = 0;
    }
    this.#scheduleRetry(event.code === 1001 ? 'gateway restarting' : `closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`);
  }

  /**
   * After a connection failed: when the gateway answers HTTP right after WebSockets failed, twice in a
   * row, WebSockets are blocked on the way (a proxy): use Server-Sent Events. A refusal of the event
   * stream (a bad name, access) gives its message; anything else `null` (retry).
   */
  async #diagnose() {
    const sse = this.transport === 'sse';
    const answer = await probe(sse ? apiURL('api/streams/events', this.#query()) : apiURL('api/workers'));
    if (answer && (answer.unreachable || answer.status >= 500)) {
      this.#failures = 0; // the gateway is away (restarting): not a matter of WebSockets
      return null;
    }
    if (answer) return `${answer.message} (${answer.status})`;
    if (!sse && this.#options.fallback && ++this.#failures >= FAILURES_BEFORE_FALLBACK) {
      this.transport = 'sse';
      this.#failures = 0;
      this.#attempt = 0;
    }
    return null;
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

  #setState(state, detail = '') {
    this.state = state;
    this.detail = detail;
    this.#options.onState?.(state, detail);
  }
}

/** What the status line says about the transport. */
export function transportNote(transport) {
  return transport === 'sse' ? 'Server-Sent Events: WebSockets unavailable' : '';
}
