// The console's lines: records and marker lines (gap, stream restarted, finished, notes) in arrival order,
// bounded to a capacity (the oldest lines leave first), with the filtered view the page shows.
//
// Every line has an `id` that never changes (its arrival number); `entries[id - base]` finds it.
// The view is the sorted list of ids that pass the filter.

import { stripAnsi } from './ansi.js';
import { ALL_LEVELS, levelIndex, timestampMillis } from './levels.js';

/** Kinds of lines. */
export const Kind = Object.freeze({ record: 0, gap: 1, restart: 2, end: 3, note: 4 });

/** Index of the first element of the sorted array `ids` that is ≥ `id`. */
export function lowerBound(ids, id) {
  let low = 0;
  let high = ids.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (ids[mid] < id) low = mid + 1;
    else high = mid;
  }
  return low;
}

export class LineStore {
  /** The lines kept, oldest first. */
  entries = [];
  /** The id of `entries[0]`. */
  base = 0;
  /** Ids of the lines that pass the filter, ascending. */
  view = [];
  /** The number of the current run (0, then 1 after the first restart, …). */
  run = 0;
  /** Index in `entries` where the current run starts. */
  #runStartId = 0;
  #nextId = 0;
  #capacity;
  #slack;
  #levelMask = ALL_LEVELS;
  #metadataFilter = null;
  #extraFilter = null;
  #listeners = { append: [], trim: [], reset: [] };

  constructor({ capacity = 200000 } = {}) {
    this.#capacity = capacity;
    this.#slack = Math.max(100, Math.floor(capacity / 20));
  }

  get capacity() {
    return this.#capacity;
  }

  /** Listens to `append` (ids newly in the view), `trim` (new base), `reset` (view rebuilt). */
  on(event, listener) {
    this.#listeners[event].push(listener);
  }

  #emit(event, value) {
    for (const listener of this.#listeners[event]) listener(value);
  }

  /** The line with id `id`, or `undefined` once it has left. */
  entry(id) {
    return this.entries[id - this.base];
  }

  /** Adds protocol records (already in seq order, without duplicates). */
  addRecords(records) {
    const added = [];
    for (const record of records) {
      const entry = recordEntry(record, this.#nextId++, this.run);
      this.entries.push(entry);
      if (this.#passes(entry)) added.push(entry.id);
    }
    this.#appended(added);
  }

  /**
   * Adds a marker line: `Kind.gap` (`{from, to}`), `Kind.restart` (`{epoch, previous}`), `Kind.end`
   * (`{lastSeq, status, what}`: `status` a label such as `failed (exit 1)`, `what` 'worker' or 'run'),
   * `Kind.note` (`{text}`).
   */
  addMarker(kind, fields = {}) {
    if (kind === Kind.restart) {
      this.run++;
      this.#runStartId = this.#nextId;
    }
    const entry = { id: this.#nextId++, kind, run: this.run, seq: kind === Kind.gap ? fields.from : 0, lv: -1, text: '', ...fields };
    entry.text = markerText(entry);
    this.entries.push(entry);
    this.#appended([entry.id]);
    return entry;
  }

  #appended(ids) {
    if (ids.length) {
      for (const id of ids) this.view.push(id);
      this.#emit('append', ids);
    }
    if (this.entries.length > this.#capacity + this.#slack) this.#trim(this.entries.length - this.#capacity);
  }

  #trim(count) {
    this.entries.splice(0, count);
    this.base += count;
    const cut = lowerBound(this.view, this.base);
    if (cut) this.view.splice(0, cut);
    this.#emit('trim', { base: this.base, viewRemoved: cut });
  }

  /** Removes every line (the stream's position is kept by the connection). */
  clear() {
    this.base = this.#nextId;
    this.entries = [];
    this.view = [];
    this.#emit('reset');
  }

  /** Shows only the levels whose bit is set in `mask` (bit i = `LEVELS[i]`). */
  setLevelMask(mask) {
    this.#levelMask = mask;
    this.#rebuild();
  }

  get levelMask() {
    return this.#levelMask;
  }

  /** A filter on records' metadata (`key:value` in the search box), or `null`. */
  setMetadataFilter(predicate) {
    if (predicate === this.#metadataFilter) return;
    this.#metadataFilter = predicate;
    this.#rebuild();
  }

  /** Whether an extra filter is set. */
  get hasExtraFilter() {
    return this.#extraFilter !== null;
  }

  get metadataFilter() {
    return this.#metadataFilter;
  }

  /** An extra filter on records (e.g. "only lines matching the search"), or `null`. */
  setExtraFilter(predicate) {
    this.#extraFilter = predicate;
    this.#rebuild();
  }

  #passes(entry) {
    if (entry.kind !== Kind.record) return true;
    if (!(this.#levelMask & (1 << entry.lv))) return false;
    if (this.#metadataFilter && !this.#metadataFilter(entry)) return false;
    return this.#extraFilter ? this.#extraFilter(entry) : true;
  }

  #rebuild() {
    const view = [];
    for (const entry of this.entries) if (this.#passes(entry)) view.push(entry.id);
    this.view = view;
    this.#emit('reset');
  }

  /** The record with `seq` in the current run (or the gap that covers it), or `undefined`. */
  findSeq(seq) {
    let low = Math.max(0, this.#runStartId - this.base);
    let high = this.entries.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      const entry = this.entries[mid];
      const key = entry.kind === Kind.record || entry.kind === Kind.gap ? entry.seq : entry.kind === Kind.restart ? -1 : Infinity;
      if (key < seq) low = mid + 1;
      else high = mid;
    }
    const found = this.entries[low];
    if (found && found.kind === Kind.record && found.seq === seq) return found;
    const before = this.entries[low - 1];
    if (before && before.kind === Kind.gap && before.from <= seq && seq <= before.to) return before;
    if (found && found.kind === Kind.gap && found.from <= seq && seq <= found.to) return found;
    return undefined;
  }

  /** The view position of line `id` (or of the first line after it). */
  positionOf(id) {
    return lowerBound(this.view, id);
  }
}

/** The line of protocol record `record`, with id `id`, in run `run` (what the console draws and searches). */
export function recordEntry(record, id, run) {
  const message = typeof record.message === 'string' ? record.message : String(record.message ?? '');
  const text = stripAnsi(message);
  const metadata = metadataOf(record.metadata);
  const spans = text.includes('\n') ? lineSpans(text) : null;
  return {
    id,
    kind: Kind.record,
    run,
    seq: record.seq,
    ts: record.timestamp ?? '',
    ms: timestampMillis(record.timestamp),
    level: record.level ?? 'INFO',
    lv: levelIndex(record.level),
    raw: message,
    text,
    logger: record.logger_name ?? '',
    source: record.module || record.func_name ? `${record.module ?? ''}${record.func_name ? `.${record.func_name}` : ''}${record.line_no != null ? `:${record.line_no}` : ''}` : '',
    metadata,
    /** `key=value key=value` of the metadata (searched with the message), or `''`. */
    metaText: metadata ? Object.entries(metadata).map(([key, value]) => `${key}=${value}`).join(' ') : '',
    /** The message's lines: how many, and where (`[start, end, start, end, …]` in `text`) when more than one. */
    nl: spans ? spans.length / 2 : 1,
    spans,
    /** A long multi-line message shown in full (the user expanded it). */
    open: false,
  };
}

/** A record's metadata as an object of strings (the protocol's), or `null` when it has none. */
function metadataOf(metadata) {
  if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) return null;
  let result = null;
  for (const [key, value] of Object.entries(metadata)) {
    if (value === null || value === undefined) continue;
    result ??= {};
    result[key] = typeof value === 'string' ? value : String(value);
  }
  return result;
}

/**
 * Where the lines of `text` are: `[start, end, start, end, …]` (`end` before the newline; a final
 * newline ends the last line rather than starting an empty one; `\r` before a newline is left out).
 */
export function lineSpans(text) {
  const spans = [];
  let start = 0;
  let length = text.length;
  if (text.endsWith('\n')) length -= text.endsWith('\r\n') ? 2 : 1;
  for (;;) {
    const newline = text.indexOf('\n', start);
    if (newline < 0 || newline >= length) {
      spans.push(start, length);
      return spans;
    }
    spans.push(start, newline > start && text.charCodeAt(newline - 1) === 13 ? newline - 1 : newline);
    start = newline + 1;
  }
}

/** The text of a marker line (gap, restart, end, note). */
export function markerText(entry) {
  switch (entry.kind) {
    case Kind.gap: {
      const n = entry.to - entry.from + 1;
      return `… ${n.toLocaleString('en-US')} line${n === 1 ? '' : 's'} not available (seq ${entry.from}–${entry.to}${entry.reason && entry.reason !== 'evicted' ? `, ${entry.reason}` : ''}) …`;
    }
    case Kind.restart:
      if (entry.previous) {
        return `──── stream restarted: a new run started (previous run ${entry.previous}): showing it from its first record${entry.epoch ? ` (run ${entry.epoch})` : ''} ────`;
      }
      return `──── stream restarted${entry.epoch ? ` (run ${entry.epoch})` : ''} ────`;
    case Kind.end: {
      const details = [entry.status, entry.lastSeq != null ? `last seq ${entry.lastSeq}` : null].filter(Boolean);
      if (entry.status) return `──── ${entry.what ?? 'worker'} finished: ${details.join(', ')} ────`;
      return `──── ${entry.what ?? 'worker'} finished${details.length ? ` (${details.join(', ')})` : ''} ────`;
    }
    case Kind.note:
      return `──── ${entry.text} ────`;
    default:
      return '';
  }
}
