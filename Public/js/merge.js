// The lines of a merged console (several workers in one view), in timestamp order: a stable merge of
// the workers' streams. Each worker's records arrive in seq order and keep it (a record never sorts
// before an earlier one of its worker: its time counts as at least theirs); across workers, lines are
// ordered by timestamp (to the microsecond), ties by worker id, then seq. A batch that belongs before
// lines already there (a worker added later, its history; a batch that took longer) is inserted.
//
// The interface is LineStore's (store.js), so search and the windowed view work on it unchanged: ids
// ascend in view order. Ids are spaced out (SPACING apart) so that inserted lines take ids between
// their neighbours'; when there is no room left, every line is numbered again (`renumber`, rare).
//
// Events: `append` (ids added at the end of the view), `insert` (ids added inside it, ascending),
// `trim`, `reset` (the view was rebuilt), `renumber` (`{map}`: old id → new id; a `reset` follows).

import { ALL_LEVELS } from './levels.js';
import { Kind, lowerBound, markerText, recordEntry } from './store.js';

const SPACING = 2 ** 20;
/** A batch longer than this that goes among the lines already there is merged with them in one pass. */
const BULK = 256;

/** The lines of `a` and `b` (each in merge order) in merge order; `a`'s first on ties. */
function mergeSorted(a, b) {
  const out = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = compareLines(b[j], a[i]) < 0 ? b[j++] : a[i++];
  while (i < a.length) out[k++] = a[i++];
  while (j < b.length) out[k++] = b[j++];
  return out;
}

/** Microseconds since the epoch of an ISO-8601 timestamp, or NaN. */
export function timestampMicros(iso) {
  if (typeof iso !== 'string') return NaN;
  const dot = iso.indexOf('.');
  const ms = Date.parse(dot > 0 && iso.length > dot + 4 ? `${iso.slice(0, dot + 4)}Z` : iso);
  if (Number.isNaN(ms)) return NaN;
  const extra = dot > 0 ? Number(iso.slice(dot + 4, dot + 7).padEnd(3, '0')) : 0;
  return ms * 1000 + (Number.isNaN(extra) ? 0 : extra);
}

/** The merge order: time, then worker id, then seq (`sk`: a marker's place among its worker's records). */
export function compareLines(a, b) {
  return a.t - b.t || (a.worker < b.worker ? -1 : a.worker > b.worker ? 1 : 0) || a.sk - b.sk;
}

/** A worker's colour in a merged console: one of PALETTE_SIZE, the same for an id on every page. */
export const PALETTE_SIZE = 12;
export function workerColorIndex(id) {
  let hash = 2166136261;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 16777619);
  return (hash >>> 0) % PALETTE_SIZE;
}

export class MergedStore {
  /** The lines kept, in merge order. */
  entries = [];
  /** Ids of the lines that pass the filter, ascending (= merge order). */
  view = [];
  /** The id of `entries[0]` (for `trim` listeners). */
  base = 0;
  run = 0;
  #byId = new Map();
  /** Per worker: `{epoch, seq, t, run, pending}` — the last record's seq (in `epoch`) and time, markers waiting for the next record. */
  #workers = new Map();
  #capacity;
  #slack;
  #levelMask = ALL_LEVELS;
  #metadataFilter = null;
  #extraFilter = null;
  #listeners = { append: [], insert: [], trim: [], reset: [], renumber: [] };
  /** Lines added since `beginBatch()`, inserted together by `endBatch()`; `null` outside a batch. */
  #batch = null;

  constructor({ capacity = 200000 } = {}) {
    this.#capacity = capacity;
    this.#slack = Math.max(100, Math.floor(capacity / 20));
  }

  get capacity() {
    return this.#capacity;
  }

  on(event, listener) {
    this.#listeners[event].push(listener);
  }

  #emit(event, value) {
    for (const listener of this.#listeners[event]) listener(value);
  }

  entry(id) {
    return this.#byId.get(id);
  }

  #worker(id) {
    let state = this.#workers.get(id);
    if (!state) {
      state = { epoch: null, seq: 0, t: -Infinity, run: 0, pending: [] };
      this.#workers.set(id, state);
    }
    return state;
  }

  /**
   * Adds records of `worker` in run `epoch` (in seq order). Records already held (same worker, run and
   * seq, or an earlier seq) are left out: the streams promise none, this makes sure.
   */
  addRecords(worker, epoch, records) {
    const state = this.#worker(worker);
    if (epoch && state.epoch && epoch !== state.epoch) {
      state.seq = 0;
      state.run++;
    }
    if (epoch) state.epoch = epoch;
    const lines = [];
    for (const record of records) {
      if (!(record.seq > state.seq)) continue;
      const entry = recordEntry(record, 0, state.run);
      entry.worker = worker;
      const t = timestampMicros(record.timestamp);
      entry.t = Number.isNaN(t) || t < state.t ? state.t : t;
      entry.sk = record.seq;
      state.t = entry.t;
      state.seq = record.seq;
      for (const marker of state.pending.splice(0)) {
        marker.t = entry.t;
        marker.sk = marker.kind === Kind.restart ? -1 : record.seq - 0.5;
        lines.push(marker);
      }
      lines.push(entry);
    }
    if (lines.length) this.#insert(lines);
  }

  /**
   * Adds a marker of `worker`: `Kind.gap` (`{from, to, reason}`) and `Kind.restart` (`{epoch, previous}`)
   * go before the worker's next record, `Kind.end` (`{lastSeq, status}`) after its last one.
   */
  addMarker(worker, kind, fields = {}) {
    const state = this.#worker(worker);
    const entry = { id: 0, kind, worker, run: state.run, seq: kind === Kind.gap ? fields.from : 0, lv: -1, text: '', what: 'worker', ...fields };
    entry.text = `${worker}: ${markerText(entry)}`;
    if (kind === Kind.end) {
      for (const marker of state.pending.splice(0)) this.#placeNow(marker, state);
      this.#placeNow(entry, state, (fields.lastSeq ?? state.seq) + 0.5);
    } else if (kind === Kind.gap && state.t > -Infinity && fields.from === state.seq + 1) {
      this.#placeNow(entry, state, fields.from - 0.5);
      state.seq = Math.max(state.seq, fields.to);
    } else {
      if (kind === Kind.gap) state.seq = Math.max(state.seq, fields.to);
      state.pending.push(entry);
    }
    return entry;
  }

  /** Places a marker after the worker's last line (or now, when it has none). */
  #placeNow(entry, state, sk = state.seq + 0.5) {
    entry.t = state.t > -Infinity ? state.t : Date.now() * 1000;
    entry.sk = sk;
    this.#insert([entry]);
  }

  /**
   * Gathers what is added until `endBatch()` and inserts it in one go (many workers' histories arriving
   * together are merged once rather than one worker after the other).
   */
  beginBatch() {
    this.#batch ??= [];
  }

  endBatch() {
    const lines = this.#batch;
    this.#batch = null;
    if (lines?.length) this.#insert(lines.sort(compareLines));
  }

  /** Removes every line of `worker` (it left the selection) and forgets it. */
  removeWorker(worker) {
    this.#workers.delete(worker);
    if (this.#batch) this.#batch = this.#batch.filter((line) => line.worker !== worker);
    const kept = this.entries.filter((entry) => entry.worker !== worker);
    if (kept.length === this.entries.length) return;
    for (const entry of this.entries) if (entry.worker === worker) this.#byId.delete(entry.id);
    this.entries = kept;
    this.base = kept.length ? kept[0].id : this.base;
    this.#rebuild();
  }

  /** The workers with lines or state here. */
  get workerIds() {
    return [...this.#workers.keys()];
  }

  /** Inserts `lines` (in merge order) among the entries. */
  #insert(lines) {
    if (this.#batch) {
      for (const line of lines) this.#batch.push(line);
      return;
    }
    const entries = this.entries;
    const last = entries[entries.length - 1];
    if (!last || compareLines(lines[0], last) >= 0) {
      let id = last ? last.id : this.base - SPACING;
      const added = [];
      for (const line of lines) {
        id += SPACING;
        line.id = id;
        entries.push(line);
        this.#byId.set(id, line);
        if (this.#passes(line)) added.push(id);
      }
      if (!last) this.base = entries[0].id;
      if (added.length) {
        for (const added1 of added) this.view.push(added1);
        this.#emit('append', added);
      }
      this.#trimIfFull();
      return;
    }
    if (lines.length > BULK) {
      // Many lines among many (a worker's history): one merge of both, numbered again.
      this.entries = mergeSorted(entries, lines);
      this.#renumber();
      this.#trimIfFull();
      return;
    }
    // Groups of lines that go to the same place, each given ids between its neighbours'.
    let renumber = false;
    let position = 0;
    const inserted = [];
    for (let i = 0; i < lines.length;) {
      position = this.#upperBound(lines[i], position);
      let j = i + 1;
      while (j < lines.length && (position === entries.length || compareLines(lines[j], entries[position]) < 0)) j++;
      const group = lines.slice(i, j);
      const low = position > 0 ? entries[position - 1].id : entries[0].id - SPACING * (group.length + 1);
      const high = position < entries.length ? entries[position].id : low + SPACING * (group.length + 1);
      if (high - low <= group.length) renumber = true;
      group.forEach((line, k) => {
        line.id = low + Math.floor(((high - low) * (k + 1)) / (group.length + 1));
      });
      entries.splice(position, 0, ...group);
      position += group.length;
      for (const line of group) inserted.push(line);
      i = j;
    }
    this.base = entries[0].id;
    if (renumber) {
      this.#renumber();
      this.#trimIfFull();
      return;
    }
    const added = [];
    for (const line of inserted) {
      this.#byId.set(line.id, line);
      if (this.#passes(line)) {
        this.view.splice(lowerBound(this.view, line.id), 0, line.id);
        added.push(line.id);
      }
    }
    if (added.length) this.#emit('insert', added);
    this.#trimIfFull();
  }

  /** The index of the first entry after `line` in merge order (searching from `from`). */
  #upperBound(line, from) {
    let low = from;
    let high = this.entries.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (compareLines(this.entries[mid], line) <= 0) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  #renumber() {
    const map = new Map();
    this.#byId.clear();
    this.entries.forEach((entry, index) => {
      const id = (index + 1) * SPACING;
      if (entry.id !== undefined) map.set(entry.id, id);
      entry.id = id;
      this.#byId.set(id, entry);
    });
    this.base = this.entries.length ? this.entries[0].id : 0;
    this.#emit('renumber', { map });
    this.#rebuild();
  }

  #trimIfFull() {
    const excess = this.entries.length - this.#capacity;
    if (excess <= this.#slack) return;
    const removed = this.entries.splice(0, excess);
    for (const entry of removed) this.#byId.delete(entry.id);
    this.base = this.entries.length ? this.entries[0].id : this.base;
    const cut = lowerBound(this.view, this.base);
    if (cut) this.view.splice(0, cut);
    this.#emit('trim', { base: this.base, viewRemoved: cut });
  }

  clear() {
    this.entries = [];
    this.view = [];
    this.#byId.clear();
    this.#emit('reset');
  }

  setLevelMask(mask) {
    this.#levelMask = mask;
    this.#rebuild();
  }

  get levelMask() {
    return this.#levelMask;
  }

  setMetadataFilter(predicate) {
    if (predicate === this.#metadataFilter) return;
    this.#metadataFilter = predicate;
    this.#rebuild();
  }

  get hasExtraFilter() {
    return this.#extraFilter !== null;
  }

  get metadataFilter() {
    return this.#metadataFilter;
  }

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

  /** The record `seq` of `worker` in its current run (or the gap that covers it), or `undefined`. */
  findSeq(seq, worker) {
    const run = this.#workers.get(worker)?.run ?? 0;
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const entry = this.entries[i];
      if (entry.worker !== worker || entry.run !== run) continue;
      if (entry.kind === Kind.record && entry.seq === seq) return entry;
      if (entry.kind === Kind.gap && entry.from <= seq && seq <= entry.to) return entry;
    }
    return undefined;
  }

  positionOf(id) {
    return lowerBound(this.view, id);
  }
}
