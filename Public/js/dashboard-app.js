// The dashboard: every worker from `/api/workers` (refreshed every few seconds; stopped ones too, with
// the status of their last run) as a card with a live mini-console; a filter by name (kept in the URL
// as `?q=`).

import { setUpTheme } from './theme.js';
import { apiURL, pageParam } from './urls.js';
import { WorkerCard } from './worker-card.js';

const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);
const byName = new Intl.Collator('en', { numeric: true }).compare;

class Dashboard {
  /** Cards by worker id. */
  cards = new Map();
  filter = '';
  #timer = null;

  start() {
    setUpTheme($('theme'));
    const input = $('filter');
    this.filter = pageParam('q') ?? '';
    input.value = this.filter;
    input.addEventListener('input', () => {
      this.filter = input.value.trim();
      const url = new URL(location.href);
      if (this.filter) url.searchParams.set('q', this.filter);
      else url.searchParams.delete('q');
      history.replaceState(null, '', url);
      this.#applyFilter();
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
    this.refresh();
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
    const now = performance.now();
    const seen = new Set();
    workers.sort((a, b) => byName(a.id, b.id));
    const grid = $('grid');
    let previous = null;
    for (const worker of workers) {
      seen.add(worker.id);
      let card = this.cards.get(worker.id);
      if (card) card.update(worker, now);
      else {
        card = new WorkerCard(worker);
        this.cards.set(worker.id, card);
      }
      // Keep the cards in name order (moving only those out of place).
      const expected = previous ? previous.nextElementSibling : grid.firstElementChild;
      if (expected !== card.element) {
        if (previous) previous.after(card.element);
        else grid.prepend(card.element);
      }
      previous = card.element;
    }
    for (const [id, card] of this.cards) {
      if (!seen.has(id)) {
        card.close();
        card.element.remove();
        this.cards.delete(id);
      }
    }
    const running = workers.filter((w) => w.state === 'running').length;
    const failed = workers.filter((w) => w.state !== 'running' && w.status === 'failed').length;
    $('summary').textContent = `${workers.length} worker${workers.length === 1 ? '' : 's'} · ${running} running${failed ? ` · ${failed} failed` : ''}`;
    this.#applyFilter();
  }

  #applyFilter() {
    const needle = this.filter.toLowerCase();
    let shown = 0;
    for (const [id, card] of this.cards) {
      const visible = !needle || id.toLowerCase().includes(needle);
      card.element.hidden = !visible;
      if (visible) shown++;
    }
    const empty = $('empty');
    empty.hidden = shown > 0;
    empty.textContent = this.cards.size === 0
      ? 'No workers yet. Start one (tailgate serve --demo 4, tailgate run --worker NAME -- CMD, or POST /api/workers/NAME/records).'
      : `No worker matches “${this.filter}”.`;
  }
}

new Dashboard().start();
