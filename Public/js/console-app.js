// The console page (one worker): wires the stream, the store of lines, the windowed view, search,
// alerts, the toolbar and the run picker together.
//
// What the page shows — the search box (with its `key:value` metadata filters), its flags, the levels
// and the time display — is kept in the URL (view-state.js), so that a link shows the same view.
//
// `console.html?worker=ID` follows the worker's current run live (and the next one, when it starts);
// `console.html?worker=ID&run=EPOCH` shows that run (`/ws/workers/ID/runs/EPOCH`: its records, then
// `end` once it has ended). The run picker switches between them in the page and keeps the URL in step.
//
// `console.html?workers=a,b,strategy-*` is a merged console: those workers (ids and prefix patterns) on
// one `/ws/streams` connection (multiplex.js), their lines interleaved by timestamp (merge.js), each
// tagged with its worker; the worker picker adds and removes workers live and keeps `workers=` in the URL.

import { Alerts } from './alerts.js';
import { State, StreamConnection } from './connection.js';
import { frames } from './frame.js';
import { ALL_LEVELS, ERROR_LEVEL, LEVELS, timestampMillis } from './levels.js';
import { COLLAPSE, drawLine, estimateRows, isCollapsible, isHidden, lineText, prefixColumns, rowCount } from './line.js';
import { formatFilter, metadataFilter, parseQuery } from './filters.js';
import { RateMeter, formatRate } from './meter.js';
import { Search } from './search.js';
import { fetchRuns, formatRecords, formatWhen, hasRuns, runDuration, showStatus, statusLabel, statusTitle } from './runs.js';
import { Kind, LineStore } from './store.js';
import { MergedStore } from './merge.js';
import { StreamMux, transportNote } from './multiplex.js';
import { setUpTheme } from './theme.js';
import { EPOCH, WORKER_ID, apiURL, isSelection, pageParam, pageURL, runPath } from './urls.js';
import { WorkerPicker } from './worker-picker.js';
import { Viewport } from './viewport.js';
import { TIME_MODES, readViewState, sameView, writeViewState } from './view-state.js';

const $ = (id) => document.getElementById(id);
/** Arriving lines are drawn at most this often (ms); scrolling and keys draw at once. */
const DATA_FRAME_MS = 50;
/** How often the run list is fetched again while the page is visible (ms). */
const RUNS_REFRESH_MS = 5000;
const SEARCH_HELP = 'Search messages and metadata; key:value words keep only the lines whose metadata has that value (stream:stderr, symbol:002050.SZ, -key:value, key:*)';

function loadSetting(key, fallback) {
  try {
    return localStorage.getItem(`tailgate.${key}`) ?? fallback;
  } catch {
    return fallback;
  }
}

function saveSetting(key, value) {
  try {
    localStorage.setItem(`tailgate.${key}`, String(value));
  } catch {
    // Storage unavailable: the setting lasts for this page.
  }
}

function isPressed(id) {
  return $(id).getAttribute('aria-pressed') === 'true';
}

function setPressed(id, on) {
  $(id).setAttribute('aria-pressed', String(Boolean(on)));
}

function permalinkSeq() {
  const match = /^#L(\d+)$/.exec(location.hash);
  return match ? Number(match[1]) : null;
}

/** A merged console's permalink (`#LWORKER:SEQ`): `{worker, seq}`, or `null`. */
function mergedPermalink() {
  const match = /^#L(.+):(\d+)$/.exec(decodeURIComponent(location.hash));
  return match && WORKER_ID.test(match[1]) ? { worker: match[1], seq: Number(match[2]) } : null;
}

/** The names of a merged console's `workers=` (ids and patterns), or `null` when it has none. */
function workersParam() {
  const text = pageParam('workers');
  if (text === null) return null;
  return [...new Set(text.split(',').map((name) => name.trim()).filter(Boolean))];
}

/** How often a merged console lists the gateway's workers again (for the picker and ended streams). */
const WORKERS_REFRESH_MS = 5000;

/** The run the page's URL asks for (`?run=EPOCH`), or `null` (follow the current run). */
function runParam() {
  const run = new URLSearchParams(location.search).get('run');
  return run && EPOCH.test(run) ? run : null;
}

/** This page's URL showing run `epoch` (or following the current run), keeping its other parameters. */
function consoleHref(epoch) {
  const url = new URL(location.href);
  url.hash = '';
  if (epoch) url.searchParams.set('run', epoch);
  else url.searchParams.delete('run');
  return url.href;
}

function span(className, text = '') {
  const element = document.createElement('span');
  element.className = className;
  element.textContent = text;
  return element;
}

const STATE_TEXT = {
  [State.connecting]: 'connecting…',
  [State.live]: 'live',
  [State.reconnecting]: 'reconnecting',
  [State.disconnected]: 'disconnected',
  [State.ended]: 'finished',
  [State.notFound]: 'no such worker',
  [State.refused]: 'refused',
};

class ConsoleApp {
  workerId;
  store;
  search;
  viewport;
  connection;
  alerts;
  meter = new RateMeter();
  timeMode = loadSetting('time', 'local');
  /** Long lines wrap (rows are then measured) instead of scrolling sideways. */
  wrap = loadSetting('wrap', 'false') === 'true';
  /** Metadata is shown as `key=value` chips after the message. */
  showMeta = loadSetting('meta', 'true') !== 'false';
  /** The metadata filters of the search box (`[{key, value, negate}]`). */
  filters = [];
  /** Why the search box's text or filters are invalid, or `''`. */
  queryError = '';
  /** New lines in the view since following stopped. */
  newLines = 0;
  /** The line highlighted by a permalink (its id), or -1. */
  highlightId = -1;
  /** A permalink seq waiting for its record to arrive. */
  pendingSeq = null;
  /** In a merged console, the worker of that permalink. */
  pendingWorker = null;
  /** A merged console (`?workers=`): the selected names (ids and patterns); `null` for one worker. */
  names = null;
  /** Per worker of a merged console: its seqs up to this one were history when its stream opened. */
  #historyByWorker = new Map();
  /** Old id → new id, when the merged store numbered its lines again during the last insertion. */
  #renumbered = null;
  /** While a merged console gathers a task's lines: where the view was (`undefined` otherwise). */
  #batchAnchor = undefined;
  picker = null;
  /** Seqs up to this one were history when the stream (re)opened; later ones are live. */
  historyUntil = 0;
  /** Lag of the latest live record on arrival (ms), or null. */
  lag = null;
  received = 0;
  /** The gateway has no such worker (or no such run). */
  missing = false;
  /** The run shown (`?run=EPOCH`), or `null`: the current run, followed live. */
  runEpoch = null;
  /** The worker's runs, newest first (`GET /api/workers/ID/runs`), once fetched. */
  runs = null;
  /** Whether the gateway keeps runs (its workers have a `status`): the run picker is shown. */
  runsSupported = false;
  #runsLoading = false;
  #runsAgain = false;
  #searchTimer = null;
  #filterKey = JSON.stringify([[], false, false]);
  #dataRenderPending = false;
  #lastRender = 0;

  constructor(workerId, names = null) {
    this.workerId = workerId;
    this.names = names;
    const capacity = Number(pageParam('max')) || 200000;
    this.store = names ? new MergedStore({ capacity }) : new LineStore({ capacity });
    this.search = new Search(this.store);
    this.viewport = new Viewport($('log'), {
      count: () => this.store.view.length,
      idAt: (position) => this.store.view[position],
      positionOf: (id) => this.store.positionOf(id),
      height: (id, metrics) => this.#height(id, metrics),
      draw: (row, id) => this.#draw(row, id),
    }, {
      onUserScroll: (scroll) => this.#userScrolled(scroll),
      onRenderNeeded: () => this.requestRender(),
    });
    this.alerts = new Alerts({ name: workerId ?? 'merged console', onChange: () => this.#showAlerts() });
    const arrived = (ids) => {
      this.viewport.appended(ids);
      if (!this.viewport.follow) this.newLines += ids.length;
      this.requestDataRender();
    };
    this.store.on('append', arrived);
    if (names) {
      // Lines of the merged view that belong before others (by time) come as `insert`; `renumber` is rare.
      this.store.on('insert', arrived);
      this.store.on('renumber', ({ map }) => {
        this.highlightId = map.get(this.highlightId) ?? -1;
        this.#renumbered = map;
      });
    }
    this.store.on('trim', ({ viewRemoved }) => {
      this.viewport.removedFront(viewRemoved);
      this.requestDataRender();
    });
    this.store.on('reset', () => {
      this.viewport.rebuild();
      this.viewport.invalidate();
      this.requestRender();
    });
  }

  get merged() {
    return this.names !== null;
  }

  start() {
    if (this.merged) {
      this.#startMerged();
      return;
    }
    document.title = `${this.workerId} — Tailgate`;
    $('worker-name').textContent = this.workerId;
    this.runEpoch = runParam();
    this.#setUpToolbar();
    this.#setUpKeys();
    this.#setUpRuns();
    this.pendingSeq = permalinkSeq();
    this.connection = this.#newConnection();
    this.#updateDownloads();
    setInterval(() => this.#showStatus(), 250);
    this.#showStatus();
    this.requestRender();
    this.#checkWorker();
  }

  /** A stream of the run shown: the worker's live stream, or the stream of the chosen run. */
  #newConnection() {
    const tail = Number(pageParam('tail') ?? 10000);
    let connection = null;
    // Events of a connection the page has since replaced (another run chosen) are ignored.
    const mine = (handler) => (...args) => {
      if (this.connection === connection) handler(...args);
    };
    connection = new StreamConnection(this.workerId, {
      run: this.runEpoch,
      tail: Number.isFinite(tail) && tail >= 0 ? tail : 10000,
      since: this.pendingSeq !== null ? Math.max(0, this.pendingSeq - 200) : null,
      onHello: mine((hello) => this.#hello(hello)),
      onRestart: mine((hello, details) => this.#restarted(hello, details)),
      onRecords: mine((records) => this.#records(records)),
      onGap: mine((from, to, reason) => this.#gap(from, to, reason)),
      onEnd: mine((message) => this.#ended(message)),
      onState: mine(() => this.#showStatus()),
    });
    return connection;
  }

  // A merged console

  #startMerged() {
    document.body.classList.add('merged');
    $('worker-name').textContent = 'Merged';
    $('worker-name').title = 'Several workers in one console, their lines in timestamp order (ties: worker id, then seq)';
    const root = document.createElement('div');
    root.className = 'picker';
    root.id = 'picker';
    $('worker-name').after(root);
    this.picker = new WorkerPicker(root, this.names, { onChange: (names, change) => this.#selectionChanged(names, change) });
    this.#showTitle();
    this.#setUpToolbar();
    this.#setUpKeys();
    const target = mergedPermalink();
    this.pendingSeq = target?.seq ?? null;
    this.pendingWorker = target?.worker ?? null;
    this.connection = new StreamMux({
      tail: this.#tailOf('worker'),
      onHello: ((id, hello) => {
        this.#historyByWorker.set(id, hello.last_seq);
        this.picker.setStatus(id, 'live', `${hello.state}, run ${hello.epoch ?? '?'}`);
      }),
      onRestart: ((id, hello, { previous }) => {
        this.#mergeSoon();
        this.store.addMarker(id, Kind.restart, { epoch: hello.epoch, previous });
        this.#historyByWorker.set(id, 0);
      }),
      onRecords: ((id, records) => this.#records(records, id)),
      onGap: ((id, from, to, reason) => {
        this.#mergeSoon();
        this.store.addMarker(id, Kind.gap, { from, to, reason });
      }),
      onEnd: ((id, message) => {
        this.#mergeSoon();
        const label = statusLabel(message);
        this.store.addMarker(id, Kind.end, { lastSeq: message.last_seq, status: label });
        this.picker.setStatus(id, 'ended', `finished${label ? `: ${label}` : ''}`);
      }),
      onError: ((id, code, message) => {
        this.picker.setStatus(id, 'error', message);
        this.#notice(`${id}: ${message}`);
      }),
      onForget: ((id) => this.store.removeWorker(id)),
      onState: (() => this.#showStatus()),
    });
    this.#updateDownloads();
    setInterval(() => this.#showStatus(), 250);
    this.#showStatus();
    this.requestRender();
    this.#subscribe(this.names);
    this.connection.connect();
    this.#loadWorkers();
    setInterval(() => {
      if (!document.hidden) this.#loadWorkers();
    }, WORKERS_REFRESH_MS);
  }

  /**
   * How many records a merged console's new subscription starts with: `?tail=N`, else 1,000 for a
   * worker and 200 for each worker of a prefix pattern (which may select hundreds).
   */
  #tailOf(name) {
    const tail = Number(pageParam('tail') ?? NaN);
    if (Number.isFinite(tail) && tail >= 0) return tail;
    return name.endsWith('*') ? 200 : 1000;
  }

  #subscribe(names) {
    const ids = names.filter((name) => !name.endsWith('*'));
    const patterns = names.filter((name) => name.endsWith('*'));
    if (ids.length) this.connection.subscribe(ids, { tail: this.#tailOf('worker') });
    if (patterns.length) this.connection.subscribe(patterns, { tail: this.#tailOf('*') });
  }

  /**
   * What a merged console receives in one task (the messages of many workers) goes into the view
   * together, at the end of the task; what is in sight stays put.
   */
  #mergeSoon() {
    if (this.#batchAnchor !== undefined) return;
    this.#batchAnchor = this.viewport.anchor();
    this.#renumbered = null;
    this.store.beginBatch();
    queueMicrotask(() => {
      const anchor = this.#batchAnchor;
      this.#batchAnchor = undefined;
      this.store.endBatch();
      if (anchor && this.#renumbered) anchor.id = this.#renumbered.get(anchor.id) ?? anchor.id;
      this.viewport.restoreAnchor(anchor);
      if (this.pendingSeq !== null) this.#resolvePermalink();
    });
  }

  #showTitle() {
    const names = this.names;
    document.title = names.length ? `${names.join(', ')} — Tailgate` : 'Merged console — Tailgate';
    const banner = $('banner');
    if (names.length && banner.classList.contains('empty-selection')) {
      banner.hidden = true;
      banner.classList.remove('empty-selection');
    }
    if (!names.length) {
      banner.hidden = false;
      banner.className = 'banner notice empty-selection';
      banner.textContent = 'No workers selected: add some with “+ Worker”.';
    }
  }

  /** The picker changed the selection: subscribe and unsubscribe on the open connection, keep the URL. */
  #selectionChanged(names, { added, removed }) {
    this.names = [...names];
    if (removed.length) this.connection.unsubscribe(removed);
    if (added.length) this.#subscribe(added);
    const url = new URL(location.href);
    if (names.length) url.searchParams.set('workers', names.join(','));
    else url.searchParams.delete('workers');
    history.replaceState(history.state, '', url.href.replace(/%2C/gi, ',').replace(/%2A/gi, '*'));
    this.#showTitle();
    this.#showStatus();
  }

  /** The gateway's workers: for the picker, and to follow an explicitly named worker into its next run. */
  async #loadWorkers() {
    let workers;
    try {
      const response = await fetch(apiURL('api/workers'), { cache: 'no-store' });
      if (!response.ok) return;
      workers = (await response.json()).workers ?? [];
    } catch {
      return; // unreachable: the stream says so
    }
    workers.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.picker.setWorkers(workers);
    const mux = this.connection;
    for (const worker of workers) {
      if (!this.names.includes(worker.id)) continue;
      const stream = mux.workers.get(worker.id);
      if (mux.errors.has(worker.id) || (stream?.ended && worker.state === 'running'
        && (worker.epoch !== stream.epoch || worker.last_seq > (stream.cursor ?? 0)))) {
        mux.resubscribe(worker.id);
      }
    }
  }

  async #checkWorker() {
    try {
      const response = await fetch(apiURL(`api/workers/${this.workerId}`), { cache: 'no-store' });
      if (response.status === 404) {
        this.#showMissing();
        return;
      }
      if (response.ok && hasRuns(await response.json())) this.#enableRuns();
    } catch {
      // The gateway is unreachable: the stream retries until it is back.
    }
    this.connection.connect();
  }

  requestRender() {
    frames.request(this.#renderTask);
  }

  /** Like `requestRender`, for arriving lines: at most one frame every DATA_FRAME_MS. */
  requestDataRender() {
    if (this.#dataRenderPending) return;
    this.#dataRenderPending = true;
    const wait = Math.max(0, this.#lastRender + DATA_FRAME_MS - performance.now());
    setTimeout(() => {
      this.#dataRenderPending = false;
      frames.request(this.#renderTask);
    }, wait);
  }

  #renderTask = () => {
    this.#lastRender = performance.now();
    this.viewport.render();
    const jump = $('jump');
    jump.hidden = this.viewport.follow;
    if (!this.viewport.follow) jump.textContent = `⇣ Jump to live${this.newLines ? ` (${this.newLines.toLocaleString('en-US')} new)` : ''}`;
  };

  // Stream events

  #hello(hello) {
    this.historyUntil = hello.last_seq;
    document.body.dataset.workerState = hello.state;
    if (!this.runsSupported && 'status' in hello) this.#enableRuns();
    if (hello.status) this.#patchRun(hello.epoch, { status: hello.status });
    if (!this.runEpoch && this.#isFinishedBanner()) $('banner').hidden = true;
    this.#updateDownloads();
    if (this.runsSupported && hello.epoch && !(this.runs ?? []).some((run) => run.epoch === hello.epoch)) this.#loadRuns();
    this.#showRun();
  }

  #restarted(hello, { previous } = {}) {
    // A new run of the worker: its records follow, from its first one; the run list gets it.
    this.store.addMarker(Kind.restart, { epoch: hello.epoch, previous });
    this.historyUntil = 0;
    if (this.runsSupported) this.#loadRuns();
  }

  #records(records, worker = null) {
    let historyUntil = this.historyUntil;
    if (worker !== null) {
      // Merged: the worker's lines go where their times put them, and what is in sight stays put.
      this.#mergeSoon();
      this.store.addRecords(worker, this.connection.workers.get(worker)?.epoch ?? null, records);
      historyUntil = this.#historyByWorker.get(worker) ?? 0;
    } else {
      this.store.addRecords(records);
    }
    this.received += records.length;
    const last = records[records.length - 1];
    if (last.seq > historyUntil) {
      // Live records (not the history replayed on connecting): count them and measure how late they are.
      const live = records[0].seq > historyUntil ? records.length : last.seq - historyUntil;
      this.meter.add(live);
      this.lag = Date.now() + this.connection.clockOffset - timestampMillis(last.timestamp);
    }
    let errors = 0;
    let firstError = null;
    for (const record of records) {
      if (record.level === 'ERROR' || record.level === 'CRITICAL') {
        errors++;
        firstError ??= record;
      }
    }
    if (errors) {
      const text = worker !== null ? `${worker}: ${firstError.message}` : String(firstError.message);
      this.alerts.add(errors, { live: last.seq > historyUntil, level: firstError.level, text });
    }
    if (this.pendingSeq !== null) this.#resolvePermalink();
  }

  #gap(from, to, reason) {
    this.store.addMarker(Kind.gap, { from, to, reason });
    if (this.pendingSeq !== null) this.#resolvePermalink();
  }

  #ended(message) {
    const following = !this.connection.run;
    const epoch = message.epoch ?? this.connection.epoch;
    const label = statusLabel(message);
    this.store.addMarker(Kind.end, { lastSeq: message.last_seq, status: label, what: following ? 'worker' : 'run' });
    if (message.status) {
      this.#patchRun(epoch, { status: message.status, exit_code: message.exit_code ?? null, reason: message.reason ?? null, last_seq: message.last_seq });
    }
    const banner = $('banner');
    banner.hidden = false;
    banner.className = 'banner finished';
    banner.dataset.status = message.status ?? '';
    const what = following ? '■ Worker finished' : `■ Run ${epoch ?? ''} finished`;
    const why = label ? ` — ${label}${message.reason ? `: ${message.reason}` : ''}` : ` (${message.reason ?? 'stopped'})`;
    banner.replaceChildren(`${what}${why} — last seq ${message.last_seq}. `);
    const link = document.createElement('a');
    link.href = $('download-server').href;
    link.textContent = 'Download its log';
    link.download = '';
    banner.append(link);
    this.#showStatus();
    this.#showRun();
    if (this.runsSupported) this.#loadRuns();
  }

  #isFinishedBanner() {
    const banner = $('banner');
    return !banner.hidden && banner.classList.contains('finished');
  }

  #showMissing() {
    this.missing = true;
    $('main').hidden = true;
    $('toolbar').hidden = true;
    $('missing').hidden = false;
    const noRun = this.connection?.run && this.connection.detail === 'no such run';
    $('missing').querySelector('h2').textContent = noRun ? 'No such run' : 'No such worker';
    $('missing-text').textContent = noRun
      ? `The gateway has no run “${this.connection.run}” of worker “${this.workerId}” (its history may have been deleted).`
      : `The gateway has no worker “${this.workerId}” (it may have finished and been removed).`;
    if (noRun) {
      const link = document.createElement('a');
      link.href = consoleHref(null);
      link.textContent = `Show the current run of ${this.workerId}`;
      $('missing-text').append(' ', link);
    }
    document.title = noRun ? 'No such run — Tailgate' : 'No such worker — Tailgate';
    this.#showStatus();
  }

  // Runs

  #setUpRuns() {
    const button = $('run-select');
    button.addEventListener('click', () => this.#toggleRunList());
    const list = $('run-list');
    list.addEventListener('click', (event) => {
      const item = event.target.closest('.run-item');
      if (!item || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      this.selectRun(item.dataset.current === 'true' ? null : item.dataset.epoch);
    });
    list.addEventListener('keydown', (event) => {
      const items = [...list.querySelectorAll('.run-item')];
      const index = items.indexOf(document.activeElement);
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        const next = items[Math.max(0, Math.min(items.length - 1, index + (event.key === 'ArrowDown' ? 1 : -1)))];
        next?.focus();
      } else if (event.key === 'Escape') {
        this.#closeRunList();
        button.focus();
      }
    });
    document.addEventListener('click', (event) => {
      if (!list.hidden && !event.target.closest('#runs')) this.#closeRunList();
    });
    window.addEventListener('popstate', () => {
      const epoch = runParam();
      if (epoch !== this.runEpoch) this.selectRun(epoch, { push: false });
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.runsSupported) this.#loadRuns();
    });
  }

  /** The gateway keeps runs: show the picker and keep its list fresh. */
  #enableRuns() {
    if (this.runsSupported) return;
    this.runsSupported = true;
    $('runs').hidden = false;
    this.#updateDownloads();
    this.#loadRuns();
    setInterval(() => {
      if (!document.hidden) this.#loadRuns();
    }, RUNS_REFRESH_MS);
  }

  async #loadRuns() {
    if (this.#runsLoading) {
      this.#runsAgain = true;
      return;
    }
    this.#runsLoading = true;
    try {
      this.runs = await fetchRuns(this.workerId);
      this.#renderRuns();
      this.#followNewRun();
    } catch {
      // Unreachable or refused: the last list stays; the next refresh tries again.
    } finally {
      this.#runsLoading = false;
      if (this.#runsAgain) {
        this.#runsAgain = false;
        this.#loadRuns();
      }
    }
  }

  /** Updates the run `epoch` in the list with what the stream told (before the next fetch does). */
  #patchRun(epoch, fields) {
    const run = (this.runs ?? []).find((r) => r.epoch === epoch);
    if (run) Object.assign(run, fields);
    this.#renderRuns();
  }

  /** The epoch of the run on screen. */
  get shownEpoch() {
    return this.runEpoch ?? this.connection?.epoch ?? (this.runs ?? []).find((run) => run.current)?.epoch ?? null;
  }

  /**
   * Shows run `epoch` (its records, from the gateway's copy), or with `null` the current run, followed
   * live. `push`: a new entry in the browser's history (back returns to the run shown before).
   */
  selectRun(epoch, { push = true } = {}) {
    this.#closeRunList();
    epoch = epoch || null;
    if (epoch === this.runEpoch && !this.missing) return;
    this.connection.disconnect();
    this.runEpoch = epoch;
    if (push) history.pushState(null, '', consoleHref(epoch));
    // The view starts afresh: lines, alerts, counters and banners belong to the run shown before.
    this.store.clear();
    this.newLines = 0;
    this.highlightId = -1;
    this.pendingSeq = push ? null : permalinkSeq();
    this.historyUntil = 0;
    this.lag = null;
    this.received = 0;
    this.meter.reset();
    this.alerts.reset();
    $('banner').hidden = true;
    if (this.missing) {
      this.missing = false;
      $('main').hidden = false;
      $('toolbar').hidden = false;
      $('missing').hidden = true;
      document.title = `${this.workerId} — Tailgate`;
    }
    this.setFollow(true);
    this.connection = this.#newConnection();
    this.connection.connect();
    this.#updateDownloads();
    this.#renderRuns();
    this.#showStatus();
  }

  /** Following the worker, the shown run ended, and the worker runs again: follow it on. */
  #followNewRun() {
    const c = this.connection;
    if (this.runEpoch || c.state !== State.ended) return;
    const current = (this.runs ?? []).find((run) => run.current);
    if (!current || current.status !== 'running') return;
    // The same run going on again (its publisher came back after a restart of the gateway) has
    // records beyond the end seen; a list fetched before that end has not.
    if (current.epoch === c.epoch && !(current.last_seq > (c.cursor ?? 0))) return;
    if (current.epoch === c.epoch) this.store.addMarker(Kind.note, { text: `run ${current.epoch} goes on` });
    $('banner').hidden = true;
    c.reopen();
  }

  #toggleRunList() {
    const list = $('run-list');
    if (list.hidden) {
      list.hidden = false;
      $('run-select').setAttribute('aria-expanded', 'true');
      this.#renderRuns();
      this.#loadRuns();
      (list.querySelector('.run-item[aria-selected="true"]') ?? list.querySelector('.run-item'))?.focus();
    } else {
      this.#closeRunList();
    }
  }

  #closeRunList() {
    $('run-list').hidden = true;
    $('run-select').setAttribute('aria-expanded', 'false');
  }

  #renderRuns() {
    this.#showRun();
    const list = $('run-list');
    const selected = this.shownEpoch;
    const focused = document.activeElement?.closest?.('.run-item')?.dataset.epoch;
    const items = (this.runs ?? []).map((run) => {
      const item = document.createElement('a');
      item.className = 'run-item';
      item.setAttribute('role', 'option');
      item.dataset.epoch = run.epoch;
      item.dataset.status = run.status ?? '';
      item.dataset.current = String(Boolean(run.current));
      item.href = consoleHref(run.current ? null : run.epoch);
      item.setAttribute('aria-selected', String(run.epoch === selected));
      const status = span('run-status');
      showStatus(status, run);
      const when = span('run-when', formatWhen(run.started_at));
      when.title = `started ${run.started_at ?? '?'}${run.stopped_at ? `, stopped ${run.stopped_at}` : ''}`;
      const parts = [status, when, span('run-duration', runDuration(run, this.connection?.clockOffset ?? 0)),
        span('run-records', formatRecords(run.records))];
      if (run.current) parts.push(span('run-tag', 'current'));
      parts.push(span('run-epoch', run.epoch));
      item.append(...parts);
      item.title = `Run ${run.epoch}: ${statusTitle(run)}`;
      return item;
    });
    if (items.length === 0) items.push(span('run-none', this.runs ? 'No runs kept.' : 'Loading runs…'));
    list.replaceChildren(...items);
    if (focused) list.querySelector(`.run-item[data-epoch="${CSS.escape(focused)}"]`)?.focus();
  }

  /** The picker's button: the status and start of the run on screen. */
  #showRun() {
    const epoch = this.shownEpoch;
    const run = (this.runs ?? []).find((r) => r.epoch === epoch)
      ?? (epoch && this.connection?.epoch === epoch ? this.#runFromStream() : null);
    showStatus($('run-status'), run);
    $('run-when').textContent = run ? formatWhen(run.started_at) : (epoch ?? '');
    $('run-current').hidden = !(run?.current ?? !this.runEpoch);
    $('run-select').dataset.status = run?.status ?? '';
    $('run-select').title = `Runs of this worker — showing ${run ? `run ${run.epoch} (${statusLabel(run)})` : 'the current run'}${this.runEpoch ? '' : ', followed live'}: choose one to show it`;
  }

  /** What the stream told about its run (before the list has it). */
  #runFromStream() {
    const c = this.connection;
    const end = c.lastEnd;
    return {
      epoch: c.epoch,
      status: end?.status ?? c.lastHello?.status,
      exit_code: end?.exit_code ?? null,
      reason: end?.reason ?? null,
      current: !this.runEpoch,
    };
  }

  #updateDownloads() {
    if (this.merged) {
      // The gateway keeps each worker's log; a merged one is made here from the records loaded.
      $('download-server').hidden = true;
      const link = $('download-ndjson');
      link.removeAttribute('href');
      link.textContent = '⇩ NDJSON (loaded)';
      link.title = 'The records loaded in this page (every selected worker, merged, filters not applied), as NDJSON with each record\'s worker';
      return;
    }
    const epoch = this.runEpoch ?? (this.runsSupported ? this.connection?.epoch : null);
    const path = epoch ? `${runPath(this.workerId, epoch)}/logs` : `api/workers/${this.workerId}/logs`;
    $('download-server').href = apiURL(path, { download: 1, format: 'text' });
    $('download-ndjson').href = apiURL(path, { download: 1, format: 'ndjson' });
  }

  // Drawing

  /** The height (px) of line `id`: its lines, or with wrapping an estimate until it is measured. */
  #height(id, metrics) {
    const entry = this.store.entry(id);
    if (!entry) return metrics.unit;
    if (!this.wrap) return rowCount(entry, COLLAPSE) * metrics.unit;
    const columns = Math.floor((metrics.width - 12) / metrics.charWidth);
    return metrics.unit * estimateRows(entry, {
      collapse: COLLAPSE, columns, prefix: prefixColumns(entry, { timeMode: this.timeMode }), showMeta: this.showMeta,
    });
  }

  #draw(row, id) {
    const entry = this.store.entry(id);
    if (!entry) {
      row.className = 'line';
      row.textContent = '';
      return;
    }
    const matched = this.search.active && this.search.test(entry);
    drawLine(row, entry, {
      timeMode: this.timeMode,
      ranges: matched ? this.search.ranges(entry.text) : [],
      metaRanges: matched && this.showMeta && entry.metaText ? this.search.ranges(entry.metaText) : [],
      showMeta: this.showMeta,
      collapse: COLLAPSE,
    });
    if (matched) row.classList.add('match');
    if (id === this.search.currentId) row.classList.add('current');
    if (id === this.highlightId) row.classList.add('permalink');
  }

  setFollow(on) {
    this.viewport.follow = on;
    if (on) this.newLines = 0;
    $('follow').setAttribute('aria-pressed', String(on));
    this.requestRender();
  }

  #userScrolled({ atBottom, up }) {
    if (up && this.viewport.follow && !atBottom) this.setFollow(false);
    else if (!up && !this.viewport.follow && atBottom) this.setFollow(true);
    this.requestRender();
  }

  /** Shows line `id` (centred), leaving follow mode. */
  reveal(id) {
    this.setFollow(false);
    this.viewport.scrollToPosition(this.store.positionOf(id), 'center');
    this.viewport.invalidate();
    // Drawn now, in the same task as the match count or the permalink: the page never shows one
    // without the other.
    this.#renderTask();
  }

  #resolvePermalink() {
    const entry = this.merged ? this.store.findSeq(this.pendingSeq, this.pendingWorker) : this.store.findSeq(this.pendingSeq);
    if (!entry) return;
    const seq = this.pendingSeq;
    this.pendingSeq = null;
    this.highlightId = entry.id;
    if (entry.kind === Kind.gap) this.#notice(`Line ${seq} is no longer available (it left the gateway's buffer).`);
    this.reveal(entry.id);
  }

  #notice(text) {
    const banner = $('banner');
    if (!banner.hidden && banner.classList.contains('finished')) return;
    banner.hidden = false;
    banner.className = 'banner notice';
    banner.textContent = text;
  }

  // Toolbar

  #setUpToolbar() {
    setUpTheme($('theme'), () => {
      this.viewport.measure();
      this.requestRender();
    });
    $('home').href = pageURL('./');
    $('missing-back').href = pageURL('./');
    $('follow').addEventListener('click', () => this.setFollow(!this.viewport.follow));
    $('jump').addEventListener('click', () => this.setFollow(true));
    $('connect').addEventListener('click', () => {
      const c = this.connection;
      if ([State.live, State.connecting, State.reconnecting].includes(c.state)) c.disconnect();
      else c.connect();
    });
    $('clear').addEventListener('click', () => {
      this.store.clear();
      this.newLines = 0;
      this.highlightId = -1;
      this.alerts.reset();
    });

    const timeSelect = $('time-mode');
    timeSelect.addEventListener('change', () => {
      this.#setTimeMode(timeSelect.value);
      saveSetting('time', this.timeMode);
      this.#saveView();
    });

    const levels = $('levels');
    LEVELS.forEach((name, index) => {
      const chip = document.createElement('button');
      chip.type = 'button';
      chip.className = `chip lv-${name}`;
      chip.dataset.level = name;
      chip.textContent = name;
      chip.title = `Show ${name} lines (alt-click: only ${name} and above)`;
      chip.addEventListener('click', (event) => {
        let next = this.store.levelMask;
        if (event.altKey) next = ALL_LEVELS & ~((1 << index) - 1);
        else next ^= 1 << index;
        this.#setLevels(next);
        saveSetting('levels', this.store.levelMask);
        this.#saveView();
      });
      levels.append(chip);
    });

    const input = $('search');
    input.addEventListener('input', () => {
      clearTimeout(this.#searchTimer);
      this.#searchTimer = setTimeout(() => this.#query(), 120);
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.#query();
        this.move(event.shiftKey ? -1 : 1);
      } else if (event.key === 'Escape') {
        input.blur();
        $('log').focus();
      }
    });
    for (const id of ['regex', 'case', 'only']) {
      $(id).addEventListener('click', () => {
        setPressed(id, !isPressed(id));
        this.#query();
      });
    }

    // Wrapping and metadata chips: the user's choices (kept in localStorage), not part of a link.
    $('wrap').addEventListener('click', () => this.#setWrap(!this.wrap));
    $('meta').addEventListener('click', () => this.#setShowMeta(!this.showMeta));
    setPressed('wrap', this.wrap);
    setPressed('meta', this.showMeta);
    $('log').classList.toggle('wrap', this.wrap);
    this.viewport.setMeasuring(this.wrap);

    // The view from the URL (or the user's last choices), and back to it with the browser's back button.
    this.#applyView(readViewState(new URLSearchParams(location.search), this.#storedView()));
    window.addEventListener('popstate', () => {
      const view = readViewState(new URLSearchParams(location.search), this.#storedView());
      if (!sameView(view, this.#view())) this.#applyView(view);
    });
    $('next').addEventListener('click', () => this.move(1));
    $('prev').addEventListener('click', () => this.move(-1));
    $('download-view').addEventListener('click', () => this.#downloadView());
    if (this.merged) {
      $('download-ndjson').addEventListener('click', (event) => {
        event.preventDefault();
        this.#downloadLoaded();
      });
    }
    $('errors').addEventListener('click', () => this.#nextError());

    const notify = $('notify');
    const showNotify = () => {
      const permission = this.alerts.notificationPermission;
      notify.setAttribute('aria-pressed', String(this.alerts.notify === true && permission === 'granted'));
      notify.disabled = permission === 'denied' || permission === 'unsupported';
      if (notify.disabled) notify.title = 'Desktop notifications are blocked or not supported by this browser';
    };
    this.alerts.notify = loadSetting('notify', 'false') === 'true';
    showNotify();
    notify.addEventListener('click', async () => {
      if (this.alerts.notificationPermission !== 'granted') {
        const permission = await this.alerts.enableNotifications();
        this.alerts.notify = permission === 'granted';
      } else {
        this.alerts.notify = !this.alerts.notify;
      }
      saveSetting('notify', this.alerts.notify);
      showNotify();
    });

    $('log').addEventListener('click', (event) => {
      const more = event.target.closest('.line .more');
      if (more) {
        event.preventDefault();
        this.toggleExpanded(Number(more.closest('.line').dataset.id));
        return;
      }
      const chip = event.target.closest('.line .kv');
      if (chip && !window.getSelection()?.toString()) {
        this.addFilter(chip.dataset.key, chip.dataset.value);
        return;
      }
      const link = event.target.closest('a.seq');
      if (!link) return;
      event.preventDefault();
      const row = link.closest('.line');
      history.replaceState(null, '', row.dataset.worker ? `#L${row.dataset.worker}:${row.dataset.seq}` : `#L${row.dataset.seq}`);
      this.highlightId = Number(row.dataset.id);
      this.setFollow(false);
      this.viewport.invalidate();
      this.requestRender();
    });
    // Copying several lines gives them as text lines (time, level, logger, message, metadata) rather than
    // the pieces of the rows; a selection inside one message is copied as it is (with its newlines).
    $('log').addEventListener('copy', (event) => {
      const selection = window.getSelection();
      if (!selection || selection.isCollapsed || selection.rangeCount === 0) return;
      const range = selection.getRangeAt(0);
      const start = range.startContainer.parentElement?.closest('.msg');
      if (start && start.contains(range.endContainer)) return;
      const rows = [...$('log').querySelectorAll('.line:not([hidden])')]
        .filter((row) => range.intersectsNode(row))
        .map((row) => this.store.entry(Number(row.dataset.id)))
        .filter(Boolean)
        .sort((a, b) => a.id - b.id);
      if (rows.length === 0) return;
      event.clipboardData.setData('text/plain', `${rows.map((entry) => lineText(entry, this.timeMode)).join('\n')}\n`);
      event.preventDefault();
    });
    $('log').addEventListener('wheel', (event) => {
      if (event.deltaY < 0 && this.viewport.follow) this.setFollow(false);
    }, { passive: true });
    window.addEventListener('hashchange', () => {
      if (this.merged) {
        const target = mergedPermalink();
        this.pendingWorker = target?.worker ?? null;
        this.pendingSeq = target?.seq ?? null;
      } else this.pendingSeq = permalinkSeq();
      if (this.pendingSeq !== null) this.#resolvePermalink();
    });
    window.addEventListener('resize', () => this.requestRender());
  }

  #setLevels(mask) {
    const next = mask & ALL_LEVELS;
    for (const chip of $('levels').children) {
      chip.setAttribute('aria-pressed', String(Boolean(next & (1 << LEVELS.indexOf(chip.dataset.level)))));
    }
    if (next !== this.store.levelMask) this.#keepingTop(() => this.store.setLevelMask(next));
    this.#showMatches();
  }

  /** Runs `change` (which filters the view again) keeping the first line in sight at the top. */
  #keepingTop(change) {
    const anchor = this.viewport.follow ? -1 : this.store.view[this.viewport.topPosition()];
    change();
    if (anchor !== undefined && anchor >= 0) this.viewport.scrollToPosition(this.store.positionOf(anchor), 'top');
    this.viewport.invalidate();
    this.requestRender();
  }

  #setTimeMode(mode) {
    this.timeMode = TIME_MODES.includes(mode) ? mode : 'local';
    $('time-mode').value = this.timeMode;
    document.body.classList.toggle('ts-off', this.timeMode === 'off');
    // Wrapped lines have room for more characters without timestamps.
    if (this.wrap) this.viewport.relayout();
    this.viewport.invalidate();
    this.requestRender();
  }

  #setWrap(on) {
    this.wrap = on;
    saveSetting('wrap', on);
    setPressed('wrap', on);
    $('log').classList.toggle('wrap', on);
    this.viewport.setMeasuring(on);
    this.viewport.invalidate();
    this.requestRender();
  }

  #setShowMeta(on) {
    this.showMeta = on;
    saveSetting('meta', on);
    setPressed('meta', on);
    if (this.wrap) this.viewport.relayout();
    this.viewport.invalidate();
    this.requestRender();
  }

  /**
   * Applies the search box: its `key:value` words filter the view by metadata, the rest is searched
   * (messages and metadata) and highlighted; with "only", the view keeps only the matching lines.
   */
  #query() {
    clearTimeout(this.#searchTimer);
    const input = $('search');
    const regex = isPressed('regex');
    const caseSensitive = isPressed('case');
    const { text, filters } = parseQuery(input.value);
    let predicate = null;
    let filterError = '';
    try {
      predicate = metadataFilter(filters, { regex, caseSensitive });
    } catch (error) {
      filterError = error.message.replace(/^Invalid regular expression: /, '');
    }
    this.filters = filters;
    this.search.setQuery(text, { regex, caseSensitive });
    const filterKey = filterError ? this.#filterKey : JSON.stringify([filters, regex, caseSensitive]);
    if (filterKey !== this.#filterKey) {
      this.#filterKey = filterKey;
      this.#keepingTop(() => this.store.setMetadataFilter(predicate));
    }
    const only = isPressed('only') && this.search.active ? (e) => this.search.test(e) : null;
    if (only || this.store.hasExtraFilter) this.#keepingTop(() => this.store.setExtraFilter(only));
    this.queryError = this.search.error || filterError;
    input.classList.toggle('invalid', Boolean(this.queryError));
    input.title = this.queryError || SEARCH_HELP;
    $('search-filters').textContent = filters.length ? `${filters.length} filter${filters.length === 1 ? '' : 's'}` : '';
    $('search-filters').hidden = filters.length === 0;
    this.viewport.invalidate();
    this.#showMatches();
    this.requestRender();
    this.#saveView();
  }

  /** The view as the URL keeps it. */
  #view() {
    return {
      q: $('search').value,
      regex: isPressed('regex'),
      caseSensitive: isPressed('case'),
      only: isPressed('only'),
      levels: this.store.levelMask,
      time: this.timeMode,
    };
  }

  /** The user's last choices (for a URL that names no view). */
  #storedView() {
    return { time: loadSetting('time', 'local'), levels: Number(loadSetting('levels', ALL_LEVELS)) & ALL_LEVELS || ALL_LEVELS };
  }

  /** Shows `view` (from the URL). */
  #applyView(view) {
    $('search').value = view.q;
    setPressed('regex', view.regex);
    setPressed('case', view.caseSensitive);
    setPressed('only', view.only);
    this.#setTimeMode(view.time);
    this.#setLevels(view.levels);
    this.#query();
  }

  /** Puts the view in the page's URL (in place: no new history entry). */
  #saveView() {
    const url = writeViewState(new URL(location.href), this.#view());
    if (url.href !== location.href) history.replaceState(history.state, '', url.href);
  }

  /** Adds the metadata filter `key:value` to the search box (a click on a chip). */
  addFilter(key, value) {
    const input = $('search');
    const word = formatFilter({ key, value });
    const { filters } = parseQuery(input.value);
    if (!filters.some((f) => f.key === key && f.value === value && !f.negate)) {
      input.value = input.value.trim() ? `${input.value.trim()} ${word}` : word;
    }
    this.#query();
  }

  /** Expands or collapses the message of line `id`. */
  toggleExpanded(id) {
    const entry = this.store.entry(id);
    if (!entry || !isCollapsible(entry)) return;
    this.setFollow(false);
    entry.open = !entry.open;
    this.viewport.heightChanged(id);
    this.requestRender();
  }

  /** Shows every line of line `id` when its search matches are all on lines collapsed away. */
  #expandForMatches(id) {
    const entry = this.store.entry(id);
    if (!entry || entry.open || !isCollapsible(entry)) return;
    const ranges = this.search.ranges(entry.text);
    if (ranges.length === 0 || ranges.some(([start]) => !isHidden(entry, start))) return;
    if (this.showMeta && entry.metaText && this.search.ranges(entry.metaText).length) return;
    entry.open = true;
    this.viewport.heightChanged(id);
  }

  /** Goes to the next (`1`) or previous (`-1`) match. */
  move(direction) {
    const search = this.search;
    if (!search.active || search.matches.length === 0) {
      this.#showMatches();
      return;
    }
    let id;
    if (search.current < 0) {
      const top = this.viewport.topPosition();
      const view = this.store.view;
      if (direction > 0) id = search.next(this.viewport.follow ? -1 : (view[top] ?? 0) - 1);
      else id = search.previous(this.viewport.follow ? -1 : (view[this.viewport.bottomPosition()] ?? 0) + 1);
    } else {
      id = direction > 0 ? search.next() : search.previous();
    }
    this.#showMatches();
    if (id >= 0) {
      this.#expandForMatches(id);
      this.reveal(id);
    }
  }

  #showMatches() {
    const search = this.search;
    const count = $('match-count');
    if (this.queryError) count.textContent = 'bad pattern';
    else if (!search.active) count.textContent = '';
    else if (search.matches.length === 0) count.textContent = 'no matches';
    else if (search.current < 0) count.textContent = `${search.matches.length.toLocaleString('en-US')} matches`;
    else count.textContent = `${(search.current + 1).toLocaleString('en-US')} / ${search.matches.length.toLocaleString('en-US')}`;
    count.dataset.matches = search.matches.length;
  }

  #nextError() {
    const view = this.store.view;
    const start = this.viewport.follow ? 0 : this.viewport.topPosition() + 1;
    for (let k = 0; k < view.length; k++) {
      const position = (start + k) % view.length;
      const entry = this.store.entry(view[position]);
      if (entry.kind === Kind.record && entry.lv >= ERROR_LEVEL) {
        this.highlightId = entry.id;
        this.reveal(entry.id);
        return;
      }
    }
  }

  #downloadView() {
    const mode = this.timeMode === 'off' ? 'off' : this.timeMode;
    const lines = this.store.view.map((id) => lineText(this.store.entry(id), mode));
    const blob = new Blob([lines.join('\n'), lines.length ? '\n' : ''], { type: 'text/plain;charset=utf-8' });
    this.#save(blob, `${this.merged ? 'merged' : this.workerId.replace(/:/g, '_')}-console.log`);
  }

  /** A merged console's records as NDJSON (what is loaded, in merge order, each with its worker). */
  #downloadLoaded() {
    const lines = [];
    for (const e of this.store.entries) {
      if (e.kind !== Kind.record) continue;
      lines.push(JSON.stringify({ worker: e.worker, seq: e.seq, timestamp: e.ts, level: e.level, message: e.raw, logger_name: e.logger || undefined, metadata: e.metadata ?? undefined }));
    }
    this.#save(new Blob([lines.join('\n'), lines.length ? '\n' : ''], { type: 'application/x-ndjson' }), 'merged-console.ndjson');
  }

  #save(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  #setUpKeys() {
    document.addEventListener('keydown', (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const target = event.target;
      if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) return;
      switch (event.key) {
        case '/':
          event.preventDefault();
          $('search').focus();
          $('search').select();
          break;
        case 'f':
          this.setFollow(!this.viewport.follow);
          break;
        case 'n':
          this.move(1);
          break;
        case 'N':
          this.move(-1);
          break;
        case 'g':
          this.setFollow(false);
          this.viewport.scrollToPosition(0, 'top');
          this.requestRender();
          break;
        case 'G':
          this.setFollow(true);
          break;
        case 'w':
          this.#setWrap(!this.wrap);
          break;
        case 'm':
          this.#setShowMeta(!this.showMeta);
          break;
        default:
          return;
      }
    });
  }

  // Status

  #showAlerts() {
    const badge = $('errors');
    badge.hidden = this.alerts.count === 0;
    badge.textContent = `⚠ ${this.alerts.count.toLocaleString('en-US')}`;
    badge.classList.toggle('unseen', this.alerts.unseen > 0);
  }

  #showStatus() {
    const c = this.connection;
    const state = this.missing ? State.notFound : c ? c.state : State.connecting;
    const status = $('status');
    let text = STATE_TEXT[state] ?? state;
    if (state === State.live && c?.transport === 'sse') text = `live (${transportNote('sse')})`;
    else if (state === State.reconnecting && c.retryAt > Date.now()) {
      text = `reconnecting in ${Math.ceil((c.retryAt - Date.now()) / 1000)} s${c.detail ? ` (${c.detail})` : ''}`;
    } else if (state === State.refused && c.detail) {
      text = `refused: ${c.detail}`;
    }
    $('st-conn').textContent = `● ${text}`;
    status.dataset.state = state;
    const pill = $('state');
    pill.textContent = STATE_TEXT[state] ?? state;
    pill.dataset.state = state;
    $('connect').textContent = [State.live, State.connecting, State.reconnecting].includes(state) ? 'Disconnect' : 'Connect';
    $('connect').disabled = state === State.ended || state === State.notFound;
    if (state === State.notFound && !this.missing) this.#showMissing();
    $('st-rate').textContent = `${formatRate(this.meter.rate())} rec/s`;
    $('st-lag').textContent = this.lag === null || state !== State.live ? 'lag –' : `lag ${formatLag(this.lag)}`;
    const total = this.store.entries.length;
    const shown = this.store.view.length;
    $('st-lines').textContent = `${total.toLocaleString('en-US')} lines${shown !== total ? ` · ${shown.toLocaleString('en-US')} shown` : ''}`;
    status.dataset.transport = c?.transport ?? '';
    if (this.merged) {
      const streams = [...c.workers.values()];
      const ended = streams.filter((w) => w.ended).length;
      $('st-seq').textContent = `${streams.length} worker${streams.length === 1 ? '' : 's'}${ended ? ` · ${ended} finished` : ''}`;
      $('st-seq').title = streams.map((w) => `${w.id}: seq ${w.cursor ?? '–'}${w.ended ? ' (finished)' : ''}`).join('\n');
      $('st-run').textContent = '';
      this.#showMatches();
      return;
    }
    $('st-seq').textContent = c && c.cursor !== null ? `seq ${c.cursor.toLocaleString('en-US')}` : '';
    $('st-run').textContent = c && c.epoch ? `run ${c.epoch}${this.runEpoch ? '' : ' (current)'}` : '';
    status.dataset.cursor = c?.cursor ?? '';
    status.dataset.epoch = c?.epoch ?? '';
    this.#showMatches();
  }

  /** For tests and debugging: what the console holds. */
  inspect({ lines = false } = {}) {
    const result = {
      merged: this.merged,
      names: this.names,
      transport: this.connection?.transport,
      state: this.connection?.state,
      epoch: this.connection?.epoch,
      cursor: this.connection?.cursor,
      run: this.store.run,
      runEpoch: this.runEpoch,
      runs: this.runs ? this.runs.map((r) => ({ epoch: r.epoch, status: r.status, exit_code: r.exit_code, current: r.current })) : null,
      status: this.connection?.lastEnd?.status ?? this.connection?.lastHello?.status ?? null,
      resumed: this.connection?.lastHello?.resumed,
      lines: this.store.entries.length,
      shown: this.store.view.length,
      received: this.received,
      domLines: document.querySelectorAll('#log .line').length,
      follow: this.viewport.follow,
      matches: this.search.matches.length,
      wrap: this.wrap,
      showMeta: this.showMeta,
      filters: this.filters,
      view: this.#view(),
      errors: this.alerts.count,
      lag: this.lag,
      rate: this.meter.rate(),
    };
    if (this.merged) {
      result.workers = Object.fromEntries([...this.connection.workers.values()].map((w) => [w.id, { cursor: w.cursor, epoch: w.epoch, ended: w.ended }]));
      result.subscriptionErrors = Object.fromEntries(this.connection.errors);
      result.alerts = this.alerts.count;
      result.opened = this.connection.opened;
    }
    if (lines) {
      result.entries = this.store.entries.map((e) => (e.kind === Kind.record
        ? { kind: 'record', worker: e.worker, ts: e.ts, run: e.run, seq: e.seq, level: e.level, text: e.text, metadata: e.metadata, lines: e.nl, open: e.open }
        : { kind: ['record', 'gap', 'restart', 'end', 'note'][e.kind], worker: e.worker, run: e.run, from: e.from, to: e.to, text: e.text }));
    }
    return result;
  }
}

function formatLag(ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

let app = null;

/** The page's console (for tests and debugging from the developer tools). */
export function currentConsole() {
  return app;
}

const workerId = pageParam('worker');
const runText = pageParam('run');
const names = workersParam();
if (names !== null && names.every(isSelection)) {
  app = new ConsoleApp(null, names);
  app.start();
} else if (names !== null) {
  $('main').hidden = true;
  $('toolbar').hidden = true;
  $('missing').hidden = false;
  $('missing-back').href = pageURL('./');
  $('missing').querySelector('h2').textContent = 'No such workers';
  $('missing-text').textContent = `“${names.find((name) => !isSelection(name))}” is neither a worker id nor a prefix pattern (such as strategy-*).`;
  $('st-conn').textContent = '● no workers';
  setUpTheme($('theme'));
} else if (!workerId || !WORKER_ID.test(workerId) || (runText !== null && !EPOCH.test(runText))) {
  $('main').hidden = true;
  $('toolbar').hidden = true;
  $('missing').hidden = false;
  $('missing-back').href = pageURL('./');
  if (workerId && WORKER_ID.test(workerId)) {
    $('missing').querySelector('h2').textContent = 'No such run';
    $('missing-text').textContent = `“${runText}” is not a valid run. `;
    const link = document.createElement('a');
    link.href = consoleHref(null);
    link.textContent = `Show the current run of ${workerId}`;
    $('missing-text').append(link);
    $('st-conn').textContent = '● no run';
  } else {
    $('missing-text').textContent = workerId ? `“${workerId}” is not a valid worker id.` : 'No worker given: open a console from the dashboard.';
    $('st-conn').textContent = '● no worker';
  }
  setUpTheme($('theme'));
} else {
  app = new ConsoleApp(workerId);
  app.start();
}
