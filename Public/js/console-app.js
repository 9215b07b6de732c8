// The console page (one worker): wires the stream, the store of lines, the windowed view, search,
// alerts and the toolbar together.

import { Alerts } from './alerts.js';
import { State, StreamConnection } from './connection.js';
import { frames } from './frame.js';
import { ALL_LEVELS, ERROR_LEVEL, LEVELS, timestampMillis } from './levels.js';
import { drawLine, lineText } from './line.js';
import { RateMeter, formatRate } from './meter.js';
import { Search } from './search.js';
import { Kind, LineStore } from './store.js';
import { setUpTheme } from './theme.js';
import { WORKER_ID, apiURL, pageParam, pageURL } from './urls.js';
import { Viewport } from './viewport.js';

const $ = (id) => document.getElementById(id);
/** Arriving lines are drawn at most this often (ms); scrolling and keys draw at once. */
const DATA_FRAME_MS = 50;

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

function permalinkSeq() {
  const match = /^#L(\d+)$/.exec(location.hash);
  return match ? Number(match[1]) : null;
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
  /** New lines in the view since following stopped. */
  newLines = 0;
  /** The line highlighted by a permalink (its id), or -1. */
  highlightId = -1;
  /** A permalink seq waiting for its record to arrive. */
  pendingSeq = null;
  /** Seqs up to this one were history when the stream (re)opened; later ones are live. */
  historyUntil = 0;
  /** Lag of the latest live record on arrival (ms), or null. */
  lag = null;
  received = 0;
  /** The gateway has no such worker. */
  missing = false;
  #searchTimer = null;
  #dataRenderPending = false;
  #lastRender = 0;

  constructor(workerId) {
    this.workerId = workerId;
    const capacity = Number(pageParam('max')) || 200000;
    this.store = new LineStore({ capacity });
    this.search = new Search(this.store);
    this.viewport = new Viewport($('log'), {
      count: () => this.store.view.length,
      idAt: (position) => this.store.view[position],
      draw: (row, id) => this.#draw(row, id),
    }, { onUserScroll: (scroll) => this.#userScrolled(scroll) });
    this.alerts = new Alerts({ name: workerId, onChange: () => this.#showAlerts() });
    this.store.on('append', (ids) => {
      if (!this.viewport.follow) this.newLines += ids.length;
      this.requestDataRender();
    });
    this.store.on('trim', ({ viewRemoved }) => {
      if (!this.viewport.follow && viewRemoved) this.viewport.shift(-viewRemoved);
      this.requestDataRender();
    });
    this.store.on('reset', () => {
      this.viewport.invalidate();
      this.requestRender();
    });
  }

  start() {
    document.title = `${this.workerId} — Tailgate`;
    $('worker-name').textContent = this.workerId;
    $('download-server').href = apiURL(`api/workers/${this.workerId}/logs`, { download: 1, format: 'text' });
    this.#setUpToolbar();
    this.#setUpKeys();
    this.pendingSeq = permalinkSeq();
    const tail = Number(pageParam('tail') ?? 10000);
    this.connection = new StreamConnection(this.workerId, {
      tail: Number.isFinite(tail) && tail >= 0 ? tail : 10000,
      since: this.pendingSeq !== null ? Math.max(0, this.pendingSeq - 200) : null,
      onHello: (hello) => this.#hello(hello),
      onRestart: (hello) => this.#restarted(hello),
      onRecords: (records) => this.#records(records),
      onGap: (from, to, reason) => this.#gap(from, to, reason),
      onEnd: (message) => this.#ended(message),
      onState: () => this.#showStatus(),
    });
    setInterval(() => this.#showStatus(), 250);
    this.#showStatus();
    this.requestRender();
    this.#checkWorker();
  }

  async #checkWorker() {
    try {
      const response = await fetch(apiURL(`api/workers/${this.workerId}`), { cache: 'no-store' });
      if (response.status === 404) {
        this.#showMissing();
        return;
      }
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
  }

  #restarted(hello) {
    this.store.addMarker(Kind.restart, { epoch: hello.epoch });
    this.historyUntil = 0;
  }

  #records(records) {
    this.store.addRecords(records);
    this.received += records.length;
    const last = records[records.length - 1];
    if (last.seq > this.historyUntil) {
      // Live records (not the history replayed on connecting): count them and measure how late they are.
      const live = records[0].seq > this.historyUntil ? records.length : last.seq - this.historyUntil;
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
      this.alerts.add(errors, { live: last.seq > this.historyUntil, level: firstError.level, text: String(firstError.message) });
    }
    if (this.pendingSeq !== null) this.#resolvePermalink();
  }

  #gap(from, to, reason) {
    this.store.addMarker(Kind.gap, { from, to, reason });
    if (this.pendingSeq !== null) this.#resolvePermalink();
  }

  #ended(message) {
    this.store.addMarker(Kind.end, { lastSeq: message.last_seq });
    const banner = $('banner');
    banner.hidden = false;
    banner.className = 'banner finished';
    banner.replaceChildren(`■ Worker finished (${message.reason ?? 'stopped'}) — last seq ${message.last_seq}. `);
    const link = document.createElement('a');
    link.href = $('download-server').href;
    link.textContent = 'Download its log';
    link.download = '';
    banner.append(link);
    this.#showStatus();
  }

  #showMissing() {
    this.missing = true;
    $('main').hidden = true;
    $('toolbar').hidden = true;
    $('missing').hidden = false;
    $('missing-text').textContent = `The gateway has no worker “${this.workerId}” (it may have finished and been removed).`;
    document.title = `No such worker — Tailgate`;
    this.#showStatus();
  }

  // Drawing

  #draw(row, id) {
    const entry = this.store.entry(id);
    if (!entry) {
      row.className = 'line';
      row.textContent = '';
      return;
    }
    const matched = this.search.active && this.search.test(entry);
    drawLine(row, entry, { timeMode: this.timeMode, ranges: matched ? this.search.ranges(entry.text) : [] });
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
    this.requestRender();
  }

  #resolvePermalink() {
    const entry = this.store.findSeq(this.pendingSeq);
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
    timeSelect.value = this.timeMode;
    document.body.classList.toggle('ts-off', this.timeMode === 'off');
    timeSelect.addEventListener('change', () => {
      this.timeMode = timeSelect.value;
      saveSetting('time', this.timeMode);
      document.body.classList.toggle('ts-off', this.timeMode === 'off');
      this.viewport.invalidate();
      this.requestRender();
    });

    const levels = $('levels');
    let mask = Number(loadSetting('levels', ALL_LEVELS)) & ALL_LEVELS;
    if (!mask) mask = ALL_LEVELS;
    LEVELS.forEach((name, index) => {
      const chip = document.createElement('button');
      chip.type = 'button';
      chip.className = `chip lv-${name}`;
      chip.dataset.level = name;
      chip.textContent = name;
      chip.title = `Show ${name} lines (alt-click: only ${name} and above)`;
      chip.setAttribute('aria-pressed', String(Boolean(mask & (1 << index))));
      chip.addEventListener('click', (event) => {
        let next = this.store.levelMask;
        if (event.altKey) next = ALL_LEVELS & ~((1 << index) - 1);
        else next ^= 1 << index;
        this.#setLevels(next);
      });
      levels.append(chip);
    });
    this.store.setLevelMask(mask);

    const input = $('search');
    const query = () => {
      clearTimeout(this.#searchTimer);
      this.search.setQuery(input.value, {
        regex: $('regex').getAttribute('aria-pressed') === 'true',
        caseSensitive: $('case').getAttribute('aria-pressed') === 'true',
      });
      if ($('only').getAttribute('aria-pressed') === 'true') this.store.setExtraFilter(this.search.active ? (e) => this.search.test(e) : null);
      input.classList.toggle('invalid', Boolean(this.search.error));
      input.title = this.search.error;
      this.viewport.invalidate();
      this.#showMatches();
      this.requestRender();
    };
    input.addEventListener('input', () => {
      clearTimeout(this.#searchTimer);
      this.#searchTimer = setTimeout(query, 120);
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        query();
        this.move(event.shiftKey ? -1 : 1);
      } else if (event.key === 'Escape') {
        input.blur();
        $('log').focus();
      }
    });
    for (const id of ['regex', 'case', 'only']) {
      $(id).addEventListener('click', () => {
        const button = $(id);
        const on = button.getAttribute('aria-pressed') !== 'true';
        button.setAttribute('aria-pressed', String(on));
        if (id === 'only' && !on) this.store.setExtraFilter(null);
        query();
      });
    }
    $('next').addEventListener('click', () => this.move(1));
    $('prev').addEventListener('click', () => this.move(-1));
    $('download-view').addEventListener('click', () => this.#downloadView());
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
      const link = event.target.closest('a.seq');
      if (!link) return;
      event.preventDefault();
      const row = link.closest('.line');
      history.replaceState(null, '', `#L${row.dataset.seq}`);
      this.highlightId = Number(row.dataset.id);
      this.setFollow(false);
      this.viewport.invalidate();
      this.requestRender();
    });
    $('log').addEventListener('wheel', (event) => {
      if (event.deltaY < 0 && this.viewport.follow) this.setFollow(false);
    }, { passive: true });
    window.addEventListener('hashchange', () => {
      this.pendingSeq = permalinkSeq();
      if (this.pendingSeq !== null) this.#resolvePermalink();
    });
    window.addEventListener('resize', () => this.requestRender());
  }

  #setLevels(mask) {
    const next = mask & ALL_LEVELS;
    saveSetting('levels', next);
    for (const chip of $('levels').children) {
      chip.setAttribute('aria-pressed', String(Boolean(next & (1 << LEVELS.indexOf(chip.dataset.level)))));
    }
    const anchor = this.viewport.follow ? -1 : this.store.view[this.viewport.topPosition()];
    this.store.setLevelMask(next);
    if (anchor !== undefined && anchor >= 0) this.viewport.scrollToPosition(this.store.positionOf(anchor), 'top');
    this.#showMatches();
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
      else id = search.previous(this.viewport.follow ? -1 : (view[Math.min(view.length - 1, top + this.viewport.pageRows())] ?? 0) + 1);
    } else {
      id = direction > 0 ? search.next() : search.previous();
    }
    this.#showMatches();
    if (id >= 0) this.reveal(id);
  }

  #showMatches() {
    const search = this.search;
    const count = $('match-count');
    if (search.error) count.textContent = 'bad pattern';
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
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = `${this.workerId.replace(/:/g, '_')}-console.log`;
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
    if (state === State.reconnecting && c.retryAt > Date.now()) {
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
    $('st-seq').textContent = c && c.cursor !== null ? `seq ${c.cursor.toLocaleString('en-US')}` : '';
    $('st-run').textContent = c && c.epoch ? `run ${c.epoch}` : '';
    status.dataset.cursor = c?.cursor ?? '';
    status.dataset.epoch = c?.epoch ?? '';
    this.#showMatches();
  }

  /** For tests and debugging: what the console holds. */
  inspect({ lines = false } = {}) {
    const result = {
      state: this.connection?.state,
      epoch: this.connection?.epoch,
      cursor: this.connection?.cursor,
      run: this.store.run,
      lines: this.store.entries.length,
      shown: this.store.view.length,
      received: this.received,
      domLines: document.querySelectorAll('#log .line').length,
      follow: this.viewport.follow,
      matches: this.search.matches.length,
      errors: this.alerts.count,
      lag: this.lag,
      rate: this.meter.rate(),
    };
    if (lines) {
      result.entries = this.store.entries.map((e) => (e.kind === Kind.record
        ? { kind: 'record', run: e.run, seq: e.seq, level: e.level, text: e.text }
        : { kind: ['record', 'gap', 'restart', 'end'][e.kind], run: e.run, from: e.from, to: e.to, text: e.text }));
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
if (!workerId || !WORKER_ID.test(workerId)) {
  $('main').hidden = true;
  $('toolbar').hidden = true;
  $('missing').hidden = false;
  $('missing-back').href = pageURL('./');
  $('missing-text').textContent = workerId ? `“${workerId}” is not a valid worker id.` : 'No worker given: open a console from the dashboard.';
  $('st-conn').textContent = '● no worker';
  setUpTheme($('theme'));
} else {
  app = new ConsoleApp(workerId);
  app.start();
}
