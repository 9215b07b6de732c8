// The dashboard's list view: one row per worker (state, exit status, records/s, errors, last line, last
// activity) under group headings, sortable by column. Windowed: rows are all one height, and only the
// rows in sight (plus a margin) are in the DOM, re-used as the list scrolls, so a thousand workers
// scroll as smoothly as ten. Tells the dashboard which workers are in sight (to stream only those).

import { frames } from './frame.js';
import { COLUMNS, GROUP_RULE, formatAgo, groupSelection } from './fleet.js';
import { formatRate } from './meter.js';
import { statusTitle } from './runs.js';
import { consoleURL, mergedConsoleURL } from './urls.js';

/** The height of a row (px; `.fleet-row` in the CSS). */
export const ROW_PX = 30;
/** The height of the headings (px; `.fleet-head`). */
const HEAD_PX = 32;
/** Rows drawn beyond each edge of the box. */
const OVERSCAN = 6;
/** Columns sorted from the largest value first on their first click. */
const DESCENDING_FIRST = new Set(['rate', 'errors', 'activity', 'exit']);

export class FleetList {
  element;
  #scroller;
  #sizer;
  #layer;
  #head;
  #rows = [];
  #pool = [];
  #sort = { key: 'id', direction: 1 };
  #onVisible;
  #onSort;
  #visibleKey = '';
  /** When the list was first drawn with rows (`performance.now()`), or `null`. */
  firstRendered = null;

  /** `root`: the list's element (empty); `onVisible(ids)`: the workers in sight changed; `onSort(key, direction)`. */
  constructor(root, { onVisible, onSort } = {}) {
    this.element = root;
    this.#onVisible = onVisible;
    this.#onSort = onSort;
    root.setAttribute('role', 'table');
    root.setAttribute('aria-label', 'Workers');
    this.#head = document.createElement('div');
    this.#head.className = 'fleet-row fleet-head';
    this.#head.setAttribute('role', 'row');
    this.#head.setAttribute('aria-rowindex', '1');
    for (const column of COLUMNS) {
      const cell = document.createElement('div');
      cell.className = `fc fc-${column.key}`;
      cell.setAttribute('role', 'columnheader');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'sort';
      button.dataset.key = column.key;
      button.textContent = column.label;
      button.title = `${column.title}. Click to sort by it (again: the other way); rows are sorted again at each refresh`;
      cell.append(button);
      this.#head.append(cell);
    }
    this.#head.addEventListener('click', (event) => {
      const button = event.target.closest('button.sort');
      if (!button) return;
      const key = button.dataset.key;
      const direction = key === this.#sort.key ? -this.#sort.direction : DESCENDING_FIRST.has(key) ? -1 : 1;
      this.setSort(key, direction);
      this.#onSort?.(key, direction);
    });
    this.#scroller = document.createElement('div');
    this.#scroller.className = 'fleet-scroll';
    this.#scroller.tabIndex = 0;
    this.#scroller.setAttribute('role', 'rowgroup');
    this.#sizer = document.createElement('div');
    this.#sizer.className = 'sizer';
    this.#layer = document.createElement('div');
    this.#layer.className = 'fleet-rows';
    // The headings scroll sideways with the rows (and stay on top): the columns always line up.
    this.#scroller.append(this.#head, this.#sizer, this.#layer);
    root.replaceChildren(this.#scroller);
    this.#scroller.addEventListener('scroll', () => this.render(), { passive: true });
    new ResizeObserver(() => this.render()).observe(this.#scroller);
    this.setSort('id', 1);
  }

  /** Shows the sort order in the headings. */
  setSort(key, direction) {
    this.#sort = { key, direction };
    for (const cell of this.#head.children) {
      const button = cell.firstElementChild;
      const on = button.dataset.key === key;
      cell.setAttribute('aria-sort', on ? (direction > 0 ? 'ascending' : 'descending') : 'none');
      button.dataset.dir = on ? (direction > 0 ? '▲' : '▼') : '';
    }
  }

  /** The rows to show (from `arrange`: headings and summaries). */
  setRows(rows) {
    this.#rows = rows;
    this.element.setAttribute('aria-rowcount', String(rows.length + 1));
    this.render();
  }

  /** Draws the rows in sight again (their data changed), in the next frame. */
  render() {
    frames.request(this.#draw);
  }

  /** The ids of the workers whose rows are in sight (or within the margin). */
  visibleIds() {
    const { first, last } = this.#range();
    const ids = [];
    for (let i = first; i < last; i++) if (!this.#rows[i].heading) ids.push(this.#rows[i].id);
    return ids;
  }

  #range() {
    const top = this.#scroller.scrollTop;
    const height = Math.max(0, (this.#scroller.clientHeight || 600) - HEAD_PX);
    const first = Math.max(0, Math.floor(top / ROW_PX) - OVERSCAN);
    const last = Math.min(this.#rows.length, Math.ceil((top + height) / ROW_PX) + OVERSCAN);
    return { first, last };
  }

  #draw = () => {
    if (this.element.hidden) return;
    const rows = this.#rows;
    this.#sizer.style.height = `${rows.length * ROW_PX}px`;
    const { first, last } = this.#range();
    const now = Date.now();
    let index = 0;
    for (let i = first; i < last; i++, index++) {
      let element = this.#pool[index];
      if (!element) {
        element = document.createElement('div');
        element.setAttribute('role', 'row');
        this.#layer.append(element);
        this.#pool.push(element);
      }
      element.hidden = false;
      // Only what changed is written (scrolling moves rows: most frames only their offsets change).
      if (element.tgIndex !== i) {
        element.tgIndex = i;
        element.style.transform = `translateY(${i * ROW_PX}px)`;
        element.setAttribute('aria-rowindex', String(i + 2));
      }
      const row = rows[i];
      if (row.heading) this.#drawHeading(element, row);
      else this.#drawWorker(element, row, now);
    }
    for (; index < this.#pool.length; index++) {
      this.#pool[index].hidden = true;
      this.#pool[index].tgKey = undefined;
      this.#pool[index].tgIndex = undefined;
    }
    if (this.firstRendered === null && rows.length) {
      this.firstRendered = performance.now();
      document.body.dataset.listRenderedAt = String(Math.round(this.firstRendered));
    }
    const ids = this.visibleIds();
    const key = ids.join('\n');
    if (key !== this.#visibleKey) {
      this.#visibleKey = key;
      this.#onVisible?.(ids);
    }
  };

  #drawHeading(element, row) {
    element.tgData = undefined;
    if (element.tgKey !== `group:${row.group}` || element.tgCount !== `${row.count}/${row.running}/${row.failed}`) {
      element.tgKey = `group:${row.group}`;
      element.tgCount = `${row.count}/${row.running}/${row.failed}`;
      element.className = 'fleet-row fleet-group';
      delete element.dataset.worker;
      element.dataset.group = row.group;
      const cell = document.createElement('div');
      cell.className = 'fc fc-group';
      cell.setAttribute('role', 'cell');
      cell.title = GROUP_RULE;
      const name = document.createElement('span');
      name.className = 'group-name';
      name.textContent = `${row.group}`;
      const counts = document.createElement('span');
      counts.className = 'group-counts';
      counts.textContent = `${row.count.toLocaleString('en-US')} worker${row.count === 1 ? '' : 's'} · ${row.running.toLocaleString('en-US')} running${row.failed ? ` · ${row.failed} failed` : ''}`;
      const link = document.createElement('a');
      link.className = 'group-merged';
      const selection = groupSelection(row.group);
      link.href = mergedConsoleURL([selection]);
      link.textContent = 'merged console';
      link.title = selection.endsWith('*')
        ? `Every worker whose id starts with ${row.group} in one console, in timestamp order (new ones too)`
        : `${row.group} in a console`;
      cell.append(name, counts, link);
      element.replaceChildren(cell);
    }
  }

  #drawWorker(element, s, now) {
    const ago = formatAgo(s.activity, now);
    const worker = s.worker;
    const data = `${worker.state}|${worker.status}|${s.status}|${s.exitCode}|${s.rate}|${s.errors}|${s.last?.text}|${s.last?.level}|${ago}`;
    if (element.tgKey === s.id && element.tgData === data) return;
    element.tgData = data;
    if (element.tgKey !== s.id) {
      element.tgKey = s.id;
      element.className = 'fleet-row fleet-worker';
      delete element.dataset.group;
      element.dataset.worker = s.id;
      const cells = COLUMNS.map((column) => {
        const cell = document.createElement('div');
        cell.className = `fc fc-${column.key}`;
        cell.setAttribute('role', 'cell');
        return cell;
      });
      const link = document.createElement('a');
      link.href = consoleURL(s.id);
      link.textContent = s.id;
      link.title = `Open the console of ${s.id}`;
      cells[0].append(link);
      const pill = document.createElement('span');
      pill.className = 'pill state';
      cells[1].append(pill);
      element.replaceChildren(...cells);
    }
    const cells = element.children;
    const pill = cells[1].firstElementChild;
    set(pill, s.status);
    pill.dataset.state = worker.state;
    pill.dataset.status = worker.status ?? '';
    pill.title = worker.status ? `Last run: ${statusTitle(worker)}` : `Worker ${worker.state}`;
    element.dataset.status = worker.status ?? '';
    element.dataset.state = worker.state;
    set(cells[2], s.exitCode === null ? '' : String(s.exitCode));
    set(cells[3], s.rate === null ? '–' : formatRate(s.rate));
    set(cells[4], s.errors ? s.errors.toLocaleString('en-US') : '');
    cells[4].classList.toggle('has-errors', s.errors > 0);
    set(cells[5], s.last ? s.last.text.replace(/\s+/g, ' ').slice(0, 300) : '');
    cells[5].dataset.level = s.last?.level ?? '';
    cells[5].title = s.last ? s.last.text.slice(0, 2000) : 'Shown while the row is on screen';
    set(cells[6], ago);
    cells[6].title = s.activity ? new Date(s.activity).toISOString() : '';
  }
}

function set(element, text) {
  if (element.textContent !== text) element.textContent = text;
}
