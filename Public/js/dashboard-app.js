// The dashboard: every worker from `/api/workers` (polled every 2 s; stopped ones too, with the status of
// their last run), as a list (one row per worker, grouped by id prefix, sortable, windowed: the default
// with more than LIST_ABOVE workers) or as cards with live mini-consoles. One connection streams the
// workers on screen only (`/ws/streams`, or Server-Sent Events where WebSockets are blocked),
// subscribing as they come into sight and unsubscribing as they leave it.
//
// The URL keeps the view: `q=` (name filter), `view=list|cards`, `sort=COLUMN`, `dir=desc`,
// `state=running|stopped|failed|errors`, `group=0`.

import { State } from './connection.js';
import { GROUP_RULE, WorkerSummary, arrange } from './fleet.js';
import { FleetList } from './fleet-list.js';
import { StreamMux, transportNote } from './multiplex.js';
import { setUpTheme } from './theme.js';
import { apiURL, pageParam } from './urls.js';
import { WorkerCard } from './worker-card.js';

const REFRESH_MS = 2000;
/** More workers than this: the list view by default. */
const LIST_ABOVE = 24;
/** Records each stream starts with (a card shows 12 lines; a row its last line). */
const TAIL = 20;
/** Subscriptions follow what is in sight after it settles for this long (ms). */
const SETTLE_MS = 150;
const $ = (id) => document.getElementById(id);

class Dashboard {
  /** Summaries by worker id. */
  summaries = new Map();
  /** Cards by worker id (card view). */
  cards = new Map();
  filter = pageParam('q') ?? '';
  stateFilter = pageParam('state') ?? '';
  sort = pageParam('sort') ?? 'id';
  direction = pageParam('dir') === 'desc' ? -1 : 1;
  grouped = pageParam('group') !== '0';
  /** `list` or `cards`; `null` until the first poll chooses (unless the URL says). */
  view = ['list', 'cards'].includes(pageParam('view')) ? pageParam('view') : null;
  mux;
  list;
  /** Workers streamed now, and those in sight (cards). */
  #streamed = new Set();
  #cardsInSight = new Set();
  #observer;
  #timer = null;
  #settle = null;

  start() {
    setUpTheme($('theme'));
    this.mux = new StreamMux({
      tail: TAIL,
      maxDelay: 10000,
      onHello: (id, hello, info) => this.cards.get(id)?.hello(hello, info),
      onRecords: (id, records) => this.#records(id, records),
      onGap: (id, from, to, reason) => this.cards.get(id)?.gap(from, to, reason),
      onRestart: (id, hello) => this.cards.get(id)?.restart(hello),
      onEnd: (id, message) => this.cards.get(id)?.end(message),
      onForget: (id) => this.cards.get(id)?.paused(),
      onState: () => this.#showConnection(),
    });
    this.list = new FleetList($('fleet'), {
      onVisible: () => this.#sightChanged(),
      onSort: (key, direction) => {
        this.sort = key;
        this.direction = direction;
        this.#saveURL();
        this.#arrange();
      },
    });
    this.list.setSort(this.sort, this.direction);
    // Cards stream while on screen or within a screen of it (scrolling shows lines at once).
    this.#observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const id = entry.target.dataset.worker;
        if (entry.isIntersecting) this.#cardsInSight.add(id);
        else this.#cardsInSight.delete(id);
      }
      this.#sightChanged();
    }, { rootMargin: '100% 0px' });
    this.#setUpControls();
    if (this.view) this.#setView(this.view, { save: false });
    setInterval(() => this.#showConnection(), 1000);
    this.mux.connect();
    this.refresh();
  }

  #setUpControls() {
    const input = $('filter');
    input.value = this.filter;
    input.addEventListener('input', () => {
      this.filter = input.value.trim();
      this.#saveURL();
      this.#applyFilter();
    });
    const state = $('state-filter');
    state.value = this.stateFilter;
    state.addEventListener('change', () => {
      this.stateFilter = state.value;
      this.#saveURL();
      this.#applyFilter();
    });
    $('view-list').addEventListener('click', () => this.#setView('list'));
    $('view-cards').addEventListener('click', () => this.#setView('cards'));
    const group = $('group');
    group.title = GROUP_RULE;
    group.setAttribute('aria-pressed', String(this.grouped));
    group.addEventListener('click', () => {
      this.grouped = !this.grouped;
      group.setAttribute('aria-pressed', String(this.grouped));
      this.#saveURL();
      this.#arrange();
    });
    document.addEventListener('keydown', (event) => {
      if (event.key === '/' && document.activeElement !== input) {
        event.preventDefault();
        input.focus();
      }
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.refresh();
    });
  }

  #saveURL() {
    const url = new URL(location.href);
    const set = (name, value) => {
      if (value) url.searchParams.set(name, value);
      else url.searchParams.delete(name);
    };
    set('q', this.filter);
    set('state', this.stateFilter);
    set('sort', this.sort === 'id' ? '' : this.sort);
    set('dir', this.direction < 0 ? 'desc' : '');
    set('group', this.grouped ? '' : '0');
    set('view', this.view && this.view !== this.#defaultView() ? this.view : '');
    if (url.href !== location.href) history.replaceState(null, '', url);
  }

  #defaultView() {
    return this.summaries.size > LIST_ABOVE ? 'list' : 'cards';
  }

  async refresh() {
    clearTimeout(this.#timer);
    try {
      const response = await fetch(apiURL('api/workers'), { cache: 'no-store' });
      if (!response.ok) throw new Error(`the gateway answered ${response.status}`);
      const body = await response.json();
      this.#show(body.workers ?? []);
      $('error').hidden = true;
    } catch (error) {
      $('error').hidden = false;
      $('error').textContent = `Cannot list the workers: ${error.message}. Retrying…`;
    }
    this.#timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  #show(workers) {
    const now = Date.now();
    const seen = new Set();
    for (const worker of workers) {
      seen.add(worker.id);
      let summary = this.summaries.get(worker.id);
      if (!summary) {
        summary = new WorkerSummary(worker);
        this.summaries.set(worker.id, summary);
      }
      summary.update(worker, now);
      // A worker streamed here whose stream ended, running again (a new run): stream it again.
      const stream = this.mux.workers.get(worker.id);
      if (stream?.ended && worker.state === 'running' && (worker.epoch !== stream.epoch || worker.last_seq > (stream.cursor ?? 0))) {
        this.mux.resubscribe(worker.id);
      }
    }
    for (const id of [...this.summaries.keys()]) {
      if (!seen.has(id)) this.summaries.delete(id);
    }
    const running = workers.filter((w) => w.state === 'running').length;
    const failed = workers.filter((w) => w.state !== 'running' && w.status === 'failed').length;
    $('summary').textContent = `${workers.length.toLocaleString('en-US')} worker${workers.length === 1 ? '' : 's'} · ${running.toLocaleString('en-US')} running${failed ? ` · ${failed} failed` : ''}`;
    if (this.view === null) this.#setView(this.#defaultView(), { save: false });
    else this.#arrange();
  }

  #setView(view, { save = true } = {}) {
    this.view = view;
    $('view-list').setAttribute('aria-pressed', String(view === 'list'));
    $('view-cards').setAttribute('aria-pressed', String(view === 'cards'));
    $('group').hidden = view !== 'list';
    $('fleet').hidden = view !== 'list';
    $('grid').hidden = view !== 'cards';
    document.body.classList.toggle('list-view', view === 'list');
    if (view !== 'cards') this.#dropCards();
    if (save) this.#saveURL();
    this.#arrange();
    this.#sightChanged();
  }

  // Cards

  /** Cards for the workers that pass the filter (the others have none), in name order. */
  #showCards() {
    const grid = $('grid');
    const ids = arrange([...this.summaries.values()], { text: this.filter, state: this.stateFilter, grouped: false }).map((s) => s.id);
    const shown = new Set(ids);
    let previous = null;
    for (const id of ids) {
      const summary = this.summaries.get(id);
      let card = this.cards.get(id);
      if (card) card.update(summary.worker);
      else {
        card = new WorkerCard(summary.worker);
        this.cards.set(id, card);
        this.#observer.observe(card.element);
      }
      card.setErrors(summary.errors);
      // Keep the cards in name order (moving only those out of place).
      const expected = previous ? previous.nextElementSibling : grid.firstElementChild;
      if (expected !== card.element) {
        if (previous) previous.after(card.element);
        else grid.prepend(card.element);
      }
      previous = card.element;
    }
    for (const [id, card] of this.cards) {
      if (!shown.has(id)) {
        this.#observer.unobserve(card.element);
        card.element.remove();
        this.cards.delete(id);
        if (this.#cardsInSight.delete(id)) this.#sightChanged();
      }
    }
  }

  #dropCards() {
    for (const card of this.cards.values()) {
      this.#observer.unobserve(card.element);
      card.element.remove();
    }
    this.cards.clear();
    this.#cardsInSight.clear();
  }

  // The list, the filter

  #arrange() {
    const options = { text: this.filter, state: this.stateFilter, sort: this.sort, direction: this.direction, grouped: this.grouped };
    let shown;
    if (this.view === 'list') {
      const rows = arrange([...this.summaries.values()], options);
      this.list.setRows(rows);
      shown = rows.filter((row) => !row.heading).length;
    } else {
      this.#showCards();
      shown = this.cards.size;
    }
    const empty = $('empty');
    empty.hidden = shown > 0;
    empty.textContent = this.summaries.size === 0
      ? 'No workers yet. Start one (tailgate serve --demo 4, tailgate run --worker NAME -- CMD, or POST /api/workers/NAME/records).'
      : 'No worker matches the filter.';
  }

  #applyFilter() {
    this.#arrange();
  }

  // Streams of what is in sight

  #sightChanged() {
    clearTimeout(this.#settle);
    this.#settle = setTimeout(() => this.#follow(), this.#streamed.size ? SETTLE_MS : 0);
  }

  /** Subscribes to the workers in sight that are not streamed yet, unsubscribes from those that left. */
  #follow() {
    let wanted;
    if (this.view === 'list') wanted = new Set(this.list.visibleIds());
    else wanted = new Set([...this.#cardsInSight].filter((id) => this.cards.has(id)));
    const added = [...wanted].filter((id) => !this.#streamed.has(id));
    const removed = [...this.#streamed].filter((id) => !wanted.has(id));
    this.#streamed = wanted;
    if (removed.length) this.mux.unsubscribe(removed);
    if (added.length) this.mux.subscribe(added, { tail: TAIL });
    document.body.dataset.streamed = String(wanted.size);
  }

  #records(id, records) {
    const summary = this.summaries.get(id);
    if (summary) {
      summary.records(records, this.mux.workers.get(id)?.epoch ?? null);
      this.cards.get(id)?.setErrors(summary.errors);
    }
    this.cards.get(id)?.records(records);
    if (this.view === 'list') this.list.render();
  }

  #showConnection() {
    const mux = this.mux;
    const element = $('conn');
    let text = mux.state === State.live ? 'live' : mux.state;
    if (mux.state === State.reconnecting && mux.retryAt > Date.now()) text = `reconnecting in ${Math.ceil((mux.retryAt - Date.now()) / 1000)} s`;
    if (mux.state === State.refused && mux.detail) text = `refused: ${mux.detail}`;
    const note = transportNote(mux.transport);
    element.textContent = `● ${text}${note ? ` (${note})` : ''} · ${this.#streamed.size} streamed`;
    element.dataset.state = mux.state;
    element.dataset.transport = mux.transport;
    element.title = `One ${mux.transport === 'sse' ? 'event stream' : 'WebSocket'} for the whole dashboard; only the workers on screen are streamed`;
    for (const [id, card] of this.cards) {
      if (!this.#streamed.has(id)) continue;
      if (mux.state !== State.live) card.showConnection(mux.state);
    }
    if (this.view === 'list') this.list.render();
  }
}

new Dashboard().start();
