// Windowed rendering: a scrolling box as tall as all the lines, holding elements only for the rows
// in sight (plus a margin), re-used as the view scrolls. The DOM stays the same size whether the
// console holds a hundred lines or two hundred thousand.

const OVERSCAN = 12;

export class Viewport {
  #scroller;
  #sizer;
  #layer;
  #pool = [];
  #source;
  #rowHeight = 18;
  #expectedTop = 0;
  #height = -1;
  #boxHeight = 0;
  #version = 0;
  #onUserScroll;
  /** Keeps the last line in sight as lines arrive. */
  follow = true;

  /**
   * `source`: `{count(): number, idAt(position): id, draw(row, id)}`.
   * `onUserScroll({atBottom, up})` is called when the user (not the viewport) scrolls.
   */
  constructor(scroller, source, { onUserScroll } = {}) {
    this.#scroller = scroller;
    this.#source = source;
    this.#onUserScroll = onUserScroll;
    this.#sizer = document.createElement('div');
    this.#sizer.className = 'sizer';
    this.#layer = document.createElement('div');
    this.#layer.className = 'rows';
    scroller.replaceChildren(this.#sizer, this.#layer);
    this.measure();
    new ResizeObserver(() => {
      this.#boxHeight = scroller.clientHeight;
    }).observe(scroller);
    scroller.addEventListener('scroll', () => {
      const top = scroller.scrollTop;
      if (Math.abs(top - this.#expectedTop) <= 1) return;
      const up = top < this.#expectedTop;
      this.#expectedTop = top;
      this.#onUserScroll?.({ atBottom: this.atBottom(), up });
    }, { passive: true });
  }

  /** Measures the height of a row (after a font or theme change). */
  measure() {
    const probe = document.createElement('div');
    probe.className = 'line';
    probe.textContent = 'Xg';
    this.#layer.append(probe);
    const height = probe.getBoundingClientRect().height;
    probe.remove();
    if (height > 0) this.#rowHeight = height;
    this.#height = -1;
    this.invalidate();
  }

  get rowHeight() {
    return this.#rowHeight;
  }

  /** Forces every row to be drawn again at the next `render()`. */
  invalidate() {
    this.#version++;
  }

  /** The elements currently showing lines. */
  get rows() {
    return this.#pool.filter((row) => !row.hidden);
  }

  /** The position (in the view) of the first row in sight. */
  topPosition() {
    return Math.floor(this.#scroller.scrollTop / this.#rowHeight);
  }

  /** Rows that fit in the box. */
  pageRows() {
    return Math.max(1, Math.floor(this.#scroller.clientHeight / this.#rowHeight));
  }

  atBottom() {
    const s = this.#scroller;
    return s.scrollHeight - s.clientHeight - s.scrollTop <= this.#rowHeight * 1.5;
  }

  #setScrollTop(top) {
    this.#scroller.scrollTop = top;
    this.#expectedTop = this.#scroller.scrollTop;
  }

  /** Scrolls so that view position `position` is in sight (`align`: 'center' | 'top' | 'nearest'). */
  scrollToPosition(position, align = 'center') {
    const h = this.#rowHeight;
    const box = this.#scroller.clientHeight;
    const current = this.#scroller.scrollTop;
    let top;
    if (align === 'top') top = position * h;
    else if (align === 'nearest') {
      if (position * h < current) top = position * h;
      else if ((position + 1) * h > current + box) top = (position + 1) * h - box;
      else return;
    } else top = position * h - (box - h) / 2;
    this.#sizeTo(this.#source.count());
    this.#setScrollTop(Math.max(0, top));
  }

  /** Moves the scroll position by `rows` rows (to keep the same lines in sight when older ones leave). */
  shift(rows) {
    this.#sizeTo(this.#source.count());
    this.#setScrollTop(Math.max(0, this.#scroller.scrollTop + rows * this.#rowHeight));
  }

  #sizeTo(count) {
    const height = count * this.#rowHeight;
    if (height !== this.#height) {
      this.#height = height;
      this.#sizer.style.height = `${height}px`;
    }
  }

  /**
   * Draws the rows in sight (call once per animation frame when something changed).
   *
   * A row element stays with its line while the line is in sight and sits at the line's own offset in
   * the scrolled content, so scrolling moves painted rows instead of drawing them again: only the
   * lines coming into sight are drawn.
   */
  render() {
    const count = this.#source.count();
    const s = this.#scroller;
    const h = this.#rowHeight;
    const box = this.#boxHeight || s.clientHeight;
    // Work out the scroll position arithmetically, draw the rows, and only then touch the layout
    // (sizer and scroll position), so a frame needs one layout.
    const top = this.follow
      ? Math.max(0, count * h - box)
      : Math.max(0, Math.min(s.scrollTop, count * h - box));
    const first = Math.max(0, Math.floor(top / h) - OVERSCAN);
    const last = Math.min(count, Math.ceil((top + box) / h) + OVERSCAN);
    const version = this.#version;

    const wanted = new Map();
    for (let position = first; position < last; position++) wanted.set(this.#source.idAt(position), position);
    const free = [];
    const placed = new Map();
    for (const row of this.#pool) {
      if (row.tgVersion === version && wanted.has(row.tgKey) && !placed.has(row.tgKey)) placed.set(row.tgKey, row);
      else free.push(row);
    }
    for (const [id, position] of wanted) {
      let row = placed.get(id);
      if (!row) {
        row = free.pop();
        if (!row) {
          row = document.createElement('div');
          row.className = 'line';
          this.#layer.append(row);
          this.#pool.push(row);
        }
        this.#source.draw(row, id);
        row.tgKey = id;
        row.tgVersion = version;
        row.hidden = false;
      }
      const offset = position * h;
      if (row.tgOffset !== offset) {
        row.tgOffset = offset;
        row.style.transform = `translateY(${offset}px)`;
      }
    }
    for (const row of free) {
      if (!row.hidden) row.hidden = true;
      row.tgKey = undefined;
    }
    this.#sizeTo(count);
    if (this.follow && Math.abs(s.scrollTop - top) > 0.5) this.#setScrollTop(top);
    // Let go of rows far beyond what the box needs (after the window was made smaller).
    if (free.length > 4 * OVERSCAN) {
      const drop = new Set(free.slice(2 * OVERSCAN));
      for (const row of drop) row.remove();
      this.#pool = this.#pool.filter((row) => !drop.has(row));
    }
  }
}
