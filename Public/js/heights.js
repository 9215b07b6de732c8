// The heights of a windowed list's rows, most of which are one line tall: only the rows of another
// height are listed (their ids, ascending, and the running sum of their differences from one line), so
// that the offset of any row is a multiplication plus a binary search among the few tall rows, and
// appending, dropping the oldest rows and changing a row's height stay cheap with 200,000 rows.
//
// Rows are named by ids that only grow in the list's order (the console's line ids), so "the rows
// before row `id`" are the rows with a smaller id.

import { lowerBound } from './store.js';

/** Differences below this (px) count as none. */
const EPSILON = 0.01;

export class RowHeights {
  /** The height of a one-line row (px). */
  unit;
  /** Ids of the rows whose height is not `unit`, ascending. */
  #ids = [];
  /** Their heights minus `unit`. */
  #deltas = [];
  /** `#sums[i]` = the differences of `#ids[0…i]`, plus `#dropped`; right below index `#valid`. */
  #sums = [];
  #valid = 0;
  /** The differences of rows dropped from the front (subtracted from `#sums`). */
  #dropped = 0;

  constructor(unit = 18) {
    this.unit = unit;
  }

  /** Forgets every row (all are one line tall again), with `unit` as the new one-line height. */
  clear(unit = this.unit) {
    this.unit = unit;
    this.#ids = [];
    this.#deltas = [];
    this.#sums = [];
    this.#valid = 0;
    this.#dropped = 0;
  }

  /** The number of rows whose height is not `unit`. */
  get size() {
    return this.#ids.length;
  }

  /** Sets the height (px) of row `id`. */
  set(id, height) {
    let delta = height - this.unit;
    if (Math.abs(delta) < EPSILON) delta = 0;
    const ids = this.#ids;
    const n = ids.length;
    if (n === 0 || id > ids[n - 1]) {
      // The common case: a row after every listed one (a new line arriving).
      if (delta === 0) return;
      ids.push(id);
      this.#deltas.push(delta);
      this.#sums.push(0);
      return;
    }
    const index = lowerBound(ids, id);
    if (ids[index] === id) {
      if (delta === 0) {
        ids.splice(index, 1);
        this.#deltas.splice(index, 1);
        this.#sums.splice(index, 1);
      } else if (this.#deltas[index] !== delta) {
        this.#deltas[index] = delta;
      } else {
        return;
      }
    } else {
      if (delta === 0) return;
      ids.splice(index, 0, id);
      this.#deltas.splice(index, 0, delta);
      this.#sums.splice(index, 0, 0);
    }
    this.#valid = Math.min(this.#valid, index);
  }

  /** The height (px) of row `id`. */
  height(id) {
    const ids = this.#ids;
    const n = ids.length;
    if (n === 0 || id > ids[n - 1] || id < ids[0]) return this.unit;
    const index = lowerBound(ids, id);
    return ids[index] === id ? this.unit + this.#deltas[index] : this.unit;
  }

  /** The sum of the differences from `unit` of the rows before row `id` (px). */
  before(id) {
    const ids = this.#ids;
    if (ids.length === 0 || id <= ids[0]) return 0;
    const index = lowerBound(ids, id);
    this.#update(index);
    return this.#sums[index - 1] - this.#dropped;
  }

  /** The sum of every row's difference from `unit` (px). */
  total() {
    const n = this.#ids.length;
    if (n === 0) return 0;
    this.#update(n);
    return this.#sums[n - 1] - this.#dropped;
  }

  /** Forgets the rows before row `id`; returns the sum of their differences from `unit` (px). */
  dropBefore(id) {
    const ids = this.#ids;
    if (ids.length === 0 || id <= ids[0]) return 0;
    const index = lowerBound(ids, id);
    this.#update(index);
    const removed = this.#sums[index - 1] - this.#dropped;
    this.#dropped = this.#sums[index - 1];
    ids.splice(0, index);
    this.#deltas.splice(0, index);
    this.#sums.splice(0, index);
    this.#valid = Math.max(0, this.#valid - index);
    if (ids.length === 0) this.clear();
    return removed;
  }

  /** Brings `#sums` up to date below index `end`. */
  #update(end) {
    let valid = this.#valid;
    if (valid >= end) return;
    const sums = this.#sums;
    const deltas = this.#deltas;
    let sum = valid > 0 ? sums[valid - 1] : this.#dropped;
    for (; valid < end; valid++) {
      sum += deltas[valid];
      sums[valid] = sum;
    }
    this.#valid = valid;
  }
}
