// Windowed rendering: a scrolling box as tall as all the lines, holding elements only for the rows
// in sight (plus a margin), re-used as the view scrolls. The DOM stays the same size whether the
// console holds a hundred lines or two hundred thousand.
//
// Rows have heights of their own (a record whose message has several lines — a Python traceback — or a
// long line wrapped): the source says how tall each row is before it is drawn — exactly, from its
// number of lines, or, with wrapped lines (`measuring`), an estimate that the row's measured height
// replaces once it has been drawn — and every row sits at the sum of the heights before it
// (`RowHeights`), so rows never overlap whatever their heights.

import { RowHeights } from './heights.js';

/** Rows drawn beyond each edge of the box. */
const OVERSCAN = 12;
/** Measure-and-place passes in one frame at most (with measured rows). */
const MAX_PASSES = 3;

export class Viewport {
  #scroller;
  #sizer;
  #layer;
  #pool = [];
  #source;
  #unit = 18;
  #charWidth = 7.5;
  #heights = new RowHeights(18);
  /** Rows are as tall as their content (wrapped lines): each row is measured once drawn. */
  #measuring = false;
  /** Measured heights by id (while measuring). */
  #measured = new Map();
  #expectedTop = 0;
  #height = -1;
  #boxHeight = 0;
  #boxWidth = 0;
  #version = 0;
  #onUserScroll;
  #onRenderNeeded;
  /** Rows drawn but not measured yet (while measuring). */
  #unmeasured = [];
  /** Keeps the last line in sight as lines arrive. */
  follow = true;

  /**
   * `source`: `{count(): number, idAt(position): id, positionOf(id): position, height(id, metrics): px,
   * draw(row, id)}` — `height` is the row's height (exact, or an estimate while measuring); `metrics`:
   * `{unit, charWidth, width}` (one line's height, a character's width, the box's inner width).
   * `onUserScroll({atBottom, up})` is called when the user (not the viewport) scrolls; `onRenderNeeded()`
   * when the rows should be drawn again (the box changed size, rows are still to be measured).
   */
  constructor(scroller, source, { onUserScroll, onRenderNeeded } = {}) {
    this.#scroller = scroller;
    this.#source = source;
    this.#onUserScroll = onUserScroll;
    this.#onRenderNeeded = onRenderNeeded;
    this.#sizer = document.createElement('div');
    this.#sizer.className = 'sizer';
    this.#layer = document.createElement('div');
    this.#layer.className = 'rows';
    scroller.replaceChildren(this.#sizer, this.#layer);
    this.measure();
    new ResizeObserver(() => {
      this.#boxHeight = scroller.clientHeight;
      const width = scroller.clientWidth;
      if (width !== this.#boxWidth) {
        this.#boxWidth = width;
        // Wrapped lines take other heights in another width.
        if (this.#measuring) this.relayout();
      }
      this.#onRenderNeeded?.();
    }).observe(scroller);
    scroller.addEventListener('scroll', () => {
      const top = scroller.scrollTop;
      if (Math.abs(top - this.#expectedTop) <= 1) return;
      const up = top < this.#expectedTop;
      this.#expectedTop = top;
      this.#onUserScroll?.({ atBottom: this.atBottom(), up });
    }, { passive: true });
  }

  /** Measures the height of a line and the width of a character (after a font or theme change). */
  measure() {
    const probe = document.createElement('div');
    probe.className = 'line';
    const text = document.createElement('span');
    text.textContent = 'X'.repeat(64);
    probe.append(text);
    this.#layer.append(probe);
    const height = probe.getBoundingClientRect().height;
    const width = text.getBoundingClientRect().width / 64;
    probe.remove();
    if (height > 0) this.#unit = height;
    if (width > 0) this.#charWidth = width;
    this.#height = -1;
    this.relayout();
  }

  /** The height of a one-line row (px). */
  get rowHeight() {
    return this.#unit;
  }

  /** What `source.height` gets to work out heights with. */
  get metrics() {
    return { unit: this.#unit, charWidth: this.#charWidth, width: this.#boxWidth || this.#scroller.clientWidth };
  }

  /** Whether rows are measured (their heights depend on the width: wrapped lines). */
  get measuring() {
    return this.#measuring;
  }

  /** Measures rows once drawn (`true`: wrapped lines) or takes the source's heights as exact. */
  setMeasuring(on) {
    if (on === this.#measuring) return;
    this.#measuring = on;
    this.relayout();
  }

  /** Forces every row to be drawn again at the next `render()`. */
  invalidate() {
    this.#version++;
  }

  /** The elements currently showing lines. */
  get rows() {
    return this.#pool.filter((row) => !row.hidden);
  }

  // Heights

  #modelHeight(id, metrics) {
    if (this.#measuring) {
      const measured = this.#measured.get(id);
      if (measured !== undefined) return measured;
    }
    return this.#source.height(id, metrics);
  }

  /** Takes every row's height from the source again (the view was rebuilt, or the way lines are shown changed). */
  rebuild() {
    const heights = this.#heights;
    heights.clear(this.#unit);
    const count = this.#source.count();
    const metrics = this.metrics;
    for (let position = 0; position < count; position++) {
      const id = this.#source.idAt(position);
      const height = this.#modelHeight(id, metrics);
      if (height !== this.#unit) heights.set(id, height);
    }
  }

  /**
   * Like `rebuild`, after a change of what the heights depend on (the width, wrapping, what a line
   * shows): forgets the measured heights and keeps the first row in sight where it is.
   */
  relayout() {
    const anchor = this.#anchor();
    this.#measured.clear();
    this.rebuild();
    this.invalidate();
    this.#restore(anchor);
  }

  /** Lines `ids` were added at the end of the view. */
  appended(ids) {
    const metrics = this.metrics;
    const unit = this.#unit;
    for (const id of ids) {
      const height = this.#modelHeight(id, metrics);
      if (height !== unit) this.#heights.set(id, height);
    }
  }

  /** The first `count` lines of the view have left it (the oldest lines were dropped). */
  removedFront(count) {
    const source = this.#source;
    const firstId = source.count() ? source.idAt(0) : Infinity;
    const removed = count * this.#unit + this.#heights.dropBefore(firstId);
    if (this.#measured.size) {
      for (const id of this.#measured.keys()) if (id < firstId) this.#measured.delete(id);
    }
    if (!this.follow && removed) {
      this.#sizeTo(this.total());
      this.#setScrollTop(Math.max(0, this.#scroller.scrollTop - removed));
    }
  }

  /**
   * Line `id` changed height (expanded or collapsed): it is drawn again, and what is in sight stays:
   * a row above the box moves the scroll position by its change; a row cut by the top of the box
   * shows its start.
   */
  heightChanged(id) {
    const source = this.#source;
    const position = source.positionOf(id);
    if (source.idAt(position) !== id) return;
    const before = this.#heights.height(id);
    this.#measured.delete(id);
    const after = this.#modelHeight(id, this.metrics);
    this.#heights.set(id, after);
    for (const row of this.#pool) if (row.tgKey === id) row.tgVersion = -1;
    if (this.follow) return;
    const top = this.offsetOf(position);
    const scroll = this.#scroller.scrollTop;
    this.#sizeTo(this.total());
    if (top + before <= scroll) this.#setScrollTop(scroll + after - before);
    else if (top < scroll) this.#setScrollTop(top);
  }

  /** The height of all the rows (px). */
  total(count = this.#source.count()) {
    return count * this.#unit + this.#heights.total();
  }

  /** The offset (px) of the row at view position `position` from the top of the content. */
  offsetOf(position) {
    const count = this.#source.count();
    if (position >= count) return this.total(count);
    if (position <= 0) return 0;
    return position * this.#unit + this.#heights.before(this.#source.idAt(position));
  }

  /** The height (px) of the row at view position `position`. */
  heightAt(position) {
    return this.#heights.height(this.#source.idAt(position));
  }

  /** The view position of the row at offset `y` (px) of the content. */
  positionAt(y) {
    const count = this.#source.count();
    if (count === 0 || y <= 0) return 0;
    if (this.#heights.size === 0) return Math.min(count - 1, Math.floor(y / this.#unit));
    let low = 0;
    let high = count - 1;
    while (low < high) {
      const mid = (low + high + 1) >>> 1;
      if (this.offsetOf(mid) <= y) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  // Scrolling

  /** The position (in the view) of the first row in sight. */
  topPosition() {
    return this.positionAt(this.#scroller.scrollTop);
  }

  /** The position of the last row in sight (at least partly). */
  bottomPosition() {
    return this.positionAt(this.#scroller.scrollTop + Math.max(1, this.#scroller.clientHeight) - 1);
  }

  /** Rows that fit in the box (one-line rows). */
  pageRows() {
    return Math.max(1, Math.floor(this.#scroller.clientHeight / this.#unit));
  }

  atBottom() {
    const s = this.#scroller;
    return s.scrollHeight - s.clientHeight - s.scrollTop <= this.#unit * 1.5;
  }

  #setScrollTop(top) {
    this.#scroller.scrollTop = top;
    this.#expectedTop = this.#scroller.scrollTop;
  }

  /** Where the view is, to keep it there across a change of the lines before it (`null` when following). */
  anchor() {
    return this.#anchor();
  }

  /** Scrolls back to `anchor` (from `anchor()`) after lines were inserted or removed before it. */
  restoreAnchor(anchor) {
    this.#restore(anchor);
  }

  /** The first row in sight and how far (px) the top of the box is below its top. */
  #anchor() {
    const count = this.#source.count();
    if (this.follow || count === 0) return null;
    const scroll = this.#scroller.scrollTop;
    const position = this.positionAt(scroll);
    return { id: this.#source.idAt(position), within: scroll - this.offsetOf(position) };
  }

  #restore(anchor) {
    if (!anchor) return;
    const position = this.#source.positionOf(anchor.id);
    if (this.#source.idAt(position) !== anchor.id) return;
    this.#sizeTo(this.total());
    this.#setScrollTop(Math.max(0, this.offsetOf(position) + Math.min(anchor.within, this.heightAt(position) - 1)));
  }

  /** Scrolls so that view position `position` is in sight (`align`: 'center' | 'top' | 'nearest'). */
  scrollToPosition(position, align = 'center') {
    const count = this.#source.count();
    this.#sizeTo(this.total(count));
    if (count === 0) return;
    position = Math.max(0, Math.min(count - 1, position));
    const offset = this.offsetOf(position);
    const height = this.heightAt(position);
    const box = this.#scroller.clientHeight;
    const current = this.#scroller.scrollTop;
    let top;
    if (align === 'top') top = offset;
    else if (align === 'nearest') {
      if (offset < current) top = offset;
      else if (offset + height > current + box) top = Math.min(offset, offset + height - box);
      else return;
    } else top = height >= box ? offset : offset - (box - height) / 2;
    this.#setScrollTop(Math.max(0, top));
  }

  #sizeTo(height) {
    if (height !== this.#height) {
      this.#height = height;
      this.#sizer.style.height = `${height}px`;
    }
  }

  // Drawing

  /**
   * Draws the rows in sight (call once per animation frame when something changed).
   *
   * A row element stays with its line while the line is in sight and sits at the line's own offset in
   * the scrolled content, so scrolling moves painted rows instead of drawing them again: only the
   * lines coming into sight are drawn. While measuring, the rows just drawn are measured (one layout)
   * and, when a height differs from its estimate, the rows are placed again in the same frame — keeping
   * the first row in sight where it was — before anything is painted.
   */
  render() {
    const s = this.#scroller;
    const count = this.#source.count();
    const box = this.#boxHeight || s.clientHeight;
    // Work out the scroll position arithmetically, draw the rows, and only then touch the layout
    // (sizer and scroll position), so a frame needs one layout (two while measuring new rows).
    let total = this.total(count);
    let top = this.follow ? Math.max(0, total - box) : Math.max(0, Math.min(s.scrollTop, total - box));
    let moved = false;
    let placed = this.#place(top, box, count);
    if (this.#measuring) {
      let toMeasure = [...this.#unmeasured.filter((row) => !row.hidden && row.tgKey !== undefined), ...placed.drawn];
      this.#unmeasured = [];
      for (let pass = 1; toMeasure.length; pass++) {
        const anchor = this.positionAt(top);
        const anchorOffset = this.offsetOf(anchor);
        let changed = false;
        for (const row of toMeasure) {
          const height = row.getBoundingClientRect().height;
          this.#measured.set(row.tgKey, height);
          if (Math.abs(height - this.#heights.height(row.tgKey)) > 0.01) {
            this.#heights.set(row.tgKey, height);
            changed = true;
          }
        }
        if (!changed) break;
        total = this.total(count);
        if (this.follow) top = Math.max(0, total - box);
        else {
          top = Math.max(0, Math.min(top + this.offsetOf(anchor) - anchorOffset, total - box));
          moved = true;
        }
        placed = this.#place(top, box, count);
        toMeasure = placed.drawn;
        if (pass >= MAX_PASSES && toMeasure.length) {
          // Rows drawn in the last pass are measured in the next frame.
          this.#unmeasured = toMeasure;
          this.#onRenderNeeded?.();
          break;
        }
      }
    }
    this.#sizeTo(total);
    if ((this.follow || moved) && Math.abs(s.scrollTop - top) > 0.5) this.#setScrollTop(top);
    // Let go of rows far beyond what the box needs (after the window was made smaller).
    const free = placed.free;
    if (free.length > 4 * OVERSCAN) {
      const drop = new Set(free.slice(2 * OVERSCAN));
      for (const row of drop) row.remove();
      this.#pool = this.#pool.filter((row) => !drop.has(row));
    }
  }

  /** Puts the rows in sight from offset `top` in place, drawing those not drawn; returns them. */
  #place(top, box, count) {
    const source = this.#source;
    const heights = this.#heights;
    const version = this.#version;
    const ids = [];
    const offsets = [];
    const sizes = [];
    const index = new Map();
    const first = Math.max(0, this.positionAt(top) - OVERSCAN);
    let offset = this.offsetOf(first);
    const end = top + box;
    let beyond = 0;
    for (let position = first; position < count; position++) {
      const id = source.idAt(position);
      const height = heights.height(id);
      index.set(id, ids.length);
      ids.push(id);
      offsets.push(offset);
      sizes.push(height);
      offset += height;
      if (offset >= end && ++beyond > OVERSCAN) break;
    }
    const free = [];
    const kept = new Map();
    for (const row of this.#pool) {
      if (row.tgVersion === version && index.has(row.tgKey) && !kept.has(row.tgKey)) kept.set(row.tgKey, row);
      else free.push(row);
    }
    const drawn = [];
    const measuring = this.#measuring;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      let row = kept.get(id);
      if (!row) {
        row = free.pop();
        if (!row) {
          row = document.createElement('div');
          row.className = 'line';
          this.#layer.append(row);
          this.#pool.push(row);
        }
        source.draw(row, id);
        row.tgKey = id;
        row.tgVersion = version;
        row.hidden = false;
        drawn.push(row);
      }
      if (row.tgOffset !== offsets[i]) {
        row.tgOffset = offsets[i];
        row.style.transform = `translateY(${offsets[i]}px)`;
      }
      // Exact heights are set (a row never paints beyond its place); measured rows take their content's.
      const height = measuring ? -1 : sizes[i];
      if (row.tgHeight !== height) {
        row.tgHeight = height;
        row.style.height = height < 0 ? '' : `${height}px`;
      }
    }
    for (const row of free) {
      if (!row.hidden) row.hidden = true;
      row.tgKey = undefined;
    }
    return { drawn, free };
  }
}
