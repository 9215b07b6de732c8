// The dashboard's picture of the fleet: one summary per worker, from polling `/api/workers` (state, the
// status of its last run, records/s from `records_total`, when it last published) and from its stream
// while it is on screen (last line, ERROR and CRITICAL lines seen); grouping by id prefix, sorting and
// filtering of those summaries.

import { stripAnsi } from './ansi.js';
import { timestampMillis } from './levels.js';
import { statusLabel } from './runs.js';

const byName = new Intl.Collator('en', { numeric: true }).compare;

/**
 * The group of a worker id: its prefix up to the trailing number (`strategy-12` → `strategy-`,
 * `eu.node.3` → `eu.node.`, `host:7` → `host:`): the text before the last `-`, `.` or `:` that is
 * followed by digits only, with that separator. An id without such a number is a group of its own.
 */
export function groupOf(id) {
  const match = /^(.+?[-.:])\d+$/.exec(id);
  return match ? match[1] : id;
}

/** The selection of a merged console showing group `group` (`strategy-*`). */
export function groupSelection(group) {
  return /[-.:]$/.test(group) ? `${group}*` : group;
}

/** What the dashboard shows in its title about grouping. */
export const GROUP_RULE = 'Grouped by id prefix: the id up to its trailing number (strategy-12 → strategy-, eu.node.3 → eu.node., host:7 → host:); an id without one is a group of its own';

/** One worker's summary. */
export class WorkerSummary {
  constructor(worker) {
    this.id = worker.id;
    this.group = groupOf(worker.id);
    this.worker = worker;
    /** Records per second between the last two polls, or `null`. */
    this.rate = null;
    /** When it last published (ms since the epoch), or `null` when unknown yet. */
    this.activity = null;
    /** ERROR and CRITICAL records seen on its stream (each counted once). */
    this.errors = 0;
    /** The last record seen: `{text, level, ts}`, or `null`. */
    this.last = null;
    this.#pollTotal = null;
    this.#pollAt = 0;
    /** The run and seq up to which records were counted. */
    this.#epoch = null;
    this.#seq = 0;
  }

  #pollTotal;
  #pollAt;
  #epoch;
  #seq;

  /** Takes the worker from a poll of `/api/workers` at `now` (ms, `Date.now()` clock). */
  update(worker, now = Date.now()) {
    const previous = this.worker;
    this.worker = worker;
    const total = Number(worker.records_total) || 0;
    if (this.#pollTotal !== null && total >= this.#pollTotal && now > this.#pollAt) {
      this.rate = (total - this.#pollTotal) / ((now - this.#pollAt) / 1000);
      if (total > this.#pollTotal) this.activity = Math.max(this.activity ?? 0, now);
    } else if (this.#pollTotal !== null) {
      this.rate = null;
    }
    if (worker.state !== 'running') {
      this.rate = 0;
      const stopped = timestampMillis(worker.stopped_at);
      if (!Number.isNaN(stopped) && this.activity === null) this.activity = stopped;
    }
    if (previous && previous.epoch && worker.epoch && previous.epoch !== worker.epoch) this.rate = null;
    this.#pollTotal = total;
    this.#pollAt = now;
  }

  /** Records of its stream (in seq order, run `epoch`): the last line, errors, activity. */
  records(records, epoch) {
    if (epoch !== this.#epoch) {
      this.#epoch = epoch;
      this.#seq = 0;
    }
    for (const record of records) {
      if (record.seq <= this.#seq) continue; // a tail shown again after the row came back on screen
      this.#seq = record.seq;
      if (record.level === 'ERROR' || record.level === 'CRITICAL') this.errors++;
    }
    const last = records[records.length - 1];
    if (!last) return;
    this.last = { text: stripAnsi(String(last.message ?? '')), level: last.level ?? 'INFO', ts: last.timestamp ?? '' };
    const ms = timestampMillis(last.timestamp);
    if (!Number.isNaN(ms)) this.activity = Math.max(this.activity ?? 0, ms);
  }

  get status() {
    return statusLabel(this.worker) || this.worker.state;
  }

  get exitCode() {
    const code = this.worker.exit_code;
    return code === null || code === undefined ? null : code;
  }
}

/** Columns of the list: how each sorts (ascending), and its heading. */
export const COLUMNS = [
  { key: 'id', label: 'Worker', title: 'Worker id (natural order: demo-2 before demo-10)', compare: (a, b) => byName(a.id, b.id) },
  { key: 'state', label: 'State', title: 'The status of its current or last run', compare: (a, b) => byName(a.status, b.status) },
  { key: 'exit', label: 'Exit', title: 'The exit status of its last run, when it has one', compare: (a, b) => (a.exitCode ?? -Infinity) - (b.exitCode ?? -Infinity) },
  { key: 'rate', label: 'Records/s', title: 'Records per second between the last two refreshes (every 2 s)', compare: (a, b) => (a.rate ?? -1) - (b.rate ?? -1) },
  { key: 'errors', label: 'Errors', title: 'ERROR and CRITICAL lines this page has seen (workers are streamed while on screen)', compare: (a, b) => a.errors - b.errors },
  { key: 'last', label: 'Last line', title: 'Its last line (streamed while on screen)', compare: (a, b) => byName(a.last?.text ?? '', b.last?.text ?? '') },
  { key: 'activity', label: 'Last activity', title: 'When it last published a record', compare: (a, b) => (a.activity ?? 0) - (b.activity ?? 0) },
];

const COLUMN = new Map(COLUMNS.map((column) => [column.key, column]));

/** Whether summary `s` passes the name filter `text` and the state filter `state` (`''`: any). */
export function passes(s, text, state) {
  if (text && !s.id.toLowerCase().includes(text.toLowerCase())) return false;
  switch (state) {
    case 'running': return s.worker.state === 'running';
    case 'stopped': return s.worker.state !== 'running';
    case 'failed': return s.worker.status === 'failed' || s.worker.status === 'interrupted';
    case 'errors': return s.errors > 0;
    default: return true;
  }
}

/**
 * The rows of the list: `{group, count}` headings (when `grouped`) and summaries, filtered, each group
 * sorted by `sort` (a column key) in `direction` (1 or -1), ties by id; groups by name.
 */
export function arrange(summaries, { text = '', state = '', sort = 'id', direction = 1, grouped = true } = {}) {
  const column = COLUMN.get(sort) ?? COLUMN.get('id');
  const rows = summaries.filter((s) => passes(s, text, state));
  rows.sort((a, b) => direction * column.compare(a, b) || byName(a.id, b.id));
  if (!grouped) return rows;
  const groups = new Map();
  for (const row of rows) {
    let list = groups.get(row.group);
    if (!list) groups.set(row.group, (list = []));
    list.push(row);
  }
  const out = [];
  for (const name of [...groups.keys()].sort(byName)) {
    const list = groups.get(name);
    out.push({ heading: true, group: name, count: list.length, running: list.filter((s) => s.worker.state === 'running').length,
      failed: list.filter((s) => s.worker.status === 'failed').length });
    for (const row of list) out.push(row);
  }
  return out;
}

/** `3 s ago`, `4 min ago`, … for a time (ms) before `now`; `–` when unknown. */
export function formatAgo(ms, now = Date.now()) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 2) return 'now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
