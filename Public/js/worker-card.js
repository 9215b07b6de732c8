// A dashboard card: one worker's state (the status of its last run, when the gateway keeps runs),
// rate, subscribers and error count, and a live mini-console of its last lines. The dashboard feeds it
// from its one shared stream (multiplex.js) while the card is on screen or near it (`hello`, `records`,
// `gap`, `restart`, `end`); off screen it is paused. Stopped workers stay listed by the gateway while
// their history is kept: their cards show how their last run ended and its last lines.

import { State } from './connection.js';
import { frames } from './frame.js';
import { MINI_COLLAPSE, drawLine, rowCount } from './line.js';
import { formatRate } from './meter.js';
import { formatWhen, statusLabel, statusTitle } from './runs.js';
import { Kind, LineStore } from './store.js';
import { consoleURL } from './urls.js';

/** Lines of text a mini-console shows (a record with several lines takes up to 3 of them). */
const VISIBLE_LINES = 12;
/** The height of one of its lines (px; `.card .mini .line` in the CSS). */
const MINI_LINE_PX = 16;
const DRAW_EVERY_MS = 100;

// Cards are drawn together, at most every DRAW_EVERY_MS (a glance needs no more), in one animation
// frame: a few frames a second for the whole grid rather than one per card and record.
const dirtyCards = new Set();
let drawTimer = null;

function drawSoon(draw) {
  dirtyCards.add(draw);
  if (drawTimer !== null) return;
  drawTimer = setTimeout(() => {
    drawTimer = null;
    frames.request(() => {
      const draws = [...dirtyCards];
      dirtyCards.clear();
      for (const d of draws) d();
    });
  }, DRAW_EVERY_MS);
}

export class WorkerCard {
  element;
  worker;
  #store = new LineStore({ capacity: 200 });
  #lines;
  #rateText;
  #subscribersText;
  #stateText;
  #badge;
  #connText;
  #seqText;
  #stoppedText;
  #errors = 0;
  #rate = null;
  #lastTotal = null;
  #lastPoll = 0;
  #drawn = -1;
  /** The run and the last seq shown. */
  #epoch = null;
  #seq = 0;

  constructor(worker) {
    this.worker = worker;
    const card = document.createElement('article');
    card.className = 'card';
    card.dataset.worker = worker.id;

    const header = document.createElement('header');
    const name = document.createElement('a');
    name.className = 'name';
    name.href = consoleURL(worker.id);
    name.textContent = worker.id;
    name.title = `Open the console of ${worker.id}`;
    this.#stateText = document.createElement('span');
    this.#stateText.className = 'pill state';
    this.#badge = document.createElement('span');
    this.#badge.className = 'badge errors';
    this.#badge.hidden = true;
    this.#badge.title = 'ERROR and CRITICAL lines seen';
    const meta = document.createElement('span');
    meta.className = 'meta';
    this.#rateText = document.createElement('span');
    this.#rateText.className = 'rate';
    this.#rateText.title = 'records per second';
    this.#subscribersText = document.createElement('span');
    this.#subscribersText.className = 'subscribers';
    this.#subscribersText.title = 'subscribers (open streams)';
    meta.append(this.#rateText, this.#subscribersText, this.#badge);
    header.append(name, this.#stateText, meta);

    this.#lines = document.createElement('a');
    this.#lines.className = 'mini';
    this.#lines.href = consoleURL(worker.id);
    this.#lines.setAttribute('aria-label', `Last lines of ${worker.id}; open its console`);
    for (let i = 0; i < VISIBLE_LINES; i++) {
      const row = document.createElement('div');
      row.className = 'line';
      row.hidden = true;
      this.#lines.append(row);
    }

    const footer = document.createElement('footer');
    this.#connText = document.createElement('span');
    this.#connText.className = 'conn';
    this.#seqText = document.createElement('span');
    this.#seqText.className = 'seqs';
    this.#stoppedText = document.createElement('span');
    this.#stoppedText.className = 'stopped-at';
    footer.append(this.#connText, this.#seqText, this.#stoppedText);

    card.append(header, this.#lines, footer);
    this.element = card;

    this.#store.on('append', () => this.#scheduleDraw());
    this.#store.on('trim', () => this.#scheduleDraw());
    this.#store.on('reset', () => {
      this.#drawn = -2;
      this.#scheduleDraw();
    });
    this.paused();
    this.update(worker);
  }

  /** Takes the worker's latest summary from `/api/workers`. */
  update(worker, now = performance.now()) {
    this.worker = worker;
    if (this.#lastTotal !== null && worker.records_total >= this.#lastTotal && now > this.#lastPoll) {
      this.#rate = (worker.records_total - this.#lastTotal) / ((now - this.#lastPoll) / 1000);
    } else if (this.#lastTotal !== null) {
      this.#rate = null;
    }
    this.#lastTotal = worker.records_total;
    this.#lastPoll = now;
    // The last run's status (`failed (exit 1)`, `succeeded`, …) when the gateway keeps runs; else the state.
    this.#stateText.textContent = statusLabel(worker) || worker.state;
    this.#stateText.dataset.state = worker.state;
    this.#stateText.dataset.status = worker.status ?? '';
    this.#stateText.title = worker.status ? `Last run: ${statusTitle(worker)}` : `Worker ${worker.state}`;
    this.element.dataset.status = worker.status ?? '';
    this.element.classList.toggle('stopped', worker.state === 'stopped');
    this.#stoppedText.textContent = worker.state === 'stopped' && worker.stopped_at ? `stopped ${formatWhen(worker.stopped_at)}` : '';
    this.#stoppedText.title = worker.stopped_at ?? '';
    this.element.classList.remove('gone');
    this.#rateText.textContent = this.#rate === null ? '– /s' : `${formatRate(this.#rate)} /s`;
    this.#subscribersText.textContent = `${worker.subscribers} sub${worker.subscribers === 1 ? '' : 's'}`;
    this.#seqText.textContent = `seq ${worker.first_seq}–${worker.last_seq} · ${Number(worker.records_total).toLocaleString('en-US')} records`;
  }

  // The stream (while the card is on screen)

  /** Its stream (re)started: lines missed while the card was off screen are not shown; the tail follows. */
  hello(hello, { restarted = false } = {}) {
    if (!restarted && hello.epoch === this.#epoch && hello.replay_from > this.#seq + 1 && this.#seq > 0) this.#store.clear();
    this.#epoch = hello.epoch ?? this.#epoch;
    this.showConnection(State.live);
  }

  /** New records of its stream (in seq order). */
  records(records) {
    records = records.filter((record) => record.seq > this.#seq);
    if (records.length === 0) return;
    this.#seq = records[records.length - 1].seq;
    this.#store.addRecords(records);
  }

  gap(from, to, reason) {
    this.#seq = Math.max(this.#seq, to);
    this.#store.addMarker(Kind.gap, { from, to, reason });
  }

  restart(hello) {
    this.#epoch = hello.epoch;
    this.#seq = 0;
    this.#store.addMarker(Kind.restart, { epoch: hello.epoch });
  }

  end(message) {
    this.#store.addMarker(Kind.end, { lastSeq: message.last_seq, status: statusLabel(message) });
    this.showConnection(State.ended);
  }

  /** Off screen: not streamed. */
  paused() {
    this.showConnection('paused');
    this.#connText.title = 'Not streamed while off screen';
  }

  /** The worker is no longer listed by the gateway. */
  markGone() {
    this.element.classList.add('gone');
    this.#stateText.textContent = 'gone';
    this.#stateText.dataset.state = 'stopped';
    this.#stateText.dataset.status = '';
  }

  /** ERROR and CRITICAL lines seen (the dashboard's count for the worker). */
  setErrors(count) {
    if (count === this.#errors) return;
    this.#errors = count;
    this.#badge.hidden = count === 0;
    this.#badge.textContent = `⚠ ${count}`;
  }

  /** The state of its stream (`live`, `reconnecting`, `paused`, …). */
  showConnection(state) {
    this.#connText.textContent = `● ${state === State.live ? 'live' : state}`;
    this.#connText.dataset.state = state;
    this.#connText.title = '';
  }

  #scheduleDraw() {
    drawSoon(this.#draw);
  }

  #draw = () => {
    const entries = this.#store.entries;
    const lastId = entries.length ? entries[entries.length - 1].id : -1;
    if (lastId === this.#drawn) return;
    this.#drawn = lastId;
    // The newest records that fit in VISIBLE_LINES lines (a multi-line one takes its first line,
    // "⋯ N more lines" and its last line): each row is as tall as its lines, none is cut.
    let budget = VISIBLE_LINES;
    let start = entries.length;
    while (start > 0) {
      const lines = rowCount(entries[start - 1], MINI_COLLAPSE);
      if (lines > budget) break;
      budget -= lines;
      start--;
    }
    const wanted = entries.slice(start);
    const wantedIds = new Set(wanted.map((entry) => entry.id));
    const rows = [...this.#lines.children];
    const kept = new Map();
    const free = [];
    for (const row of rows) {
      if (wantedIds.has(row.tgKey)) kept.set(row.tgKey, row);
      else free.push(row);
    }
    // Lines only ever arrive at the end: rows still wanted keep their content and order; the rows of
    // lines that scrolled away are drawn again with the new lines and moved to the end.
    for (const entry of wanted) {
      if (kept.has(entry.id)) continue;
      const row = free.shift();
      const lines = drawLine(row, entry, { timeMode: 'local', showSeq: false, showLogger: false, showMeta: false, collapse: MINI_COLLAPSE, maxChars: 160 });
      row.style.height = `${lines * MINI_LINE_PX}px`;
      row.tgKey = entry.id;
      row.hidden = false;
      this.#lines.append(row);
    }
    for (const row of free) {
      row.hidden = true;
      row.tgKey = undefined;
    }
  };

  get errorCount() {
    return this.#errors;
  }
}
