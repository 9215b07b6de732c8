// Text and regular-expression search over the console's visible lines — their messages and their
// metadata (`key=value`) — which lines match, where the matches are in a line (for highlights), and
// the current match for next/previous.

import { Kind, lowerBound } from './store.js';

const MAX_RANGES_PER_LINE = 200;

export class Search {
  #store;
  #test = null;
  #global = null;
  /** Ids of the matching lines in the view, ascending. */
  matches = [];
  /** Index in `matches` of the current match, or -1. */
  current = -1;
  /** Why the query is invalid, or `''`. */
  error = '';
  query = '';

  constructor(store) {
    this.#store = store;
    store.on('append', (ids) => this.#appended(ids));
    store.on('trim', ({ base }) => this.#trimmed(base));
    store.on('reset', () => this.#rebuild());
  }

  get active() {
    return this.#test !== null;
  }

  /** Sets the query; `regex` treats it as a regular expression, `caseSensitive` as it says. */
  setQuery(query, { regex = false, caseSensitive = false } = {}) {
    this.query = query;
    this.error = '';
    this.#test = null;
    this.#global = null;
    if (query !== '') {
      const source = regex ? query : query.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const flags = caseSensitive ? '' : 'i';
      try {
        const probe = new RegExp(source, flags);
        this.#global = new RegExp(source, `${flags}g`);
        this.#test = (text) => {
          probe.lastIndex = 0;
          return probe.test(text);
        };
      } catch (error) {
        this.error = error.message.replace(/^Invalid regular expression: /, '');
      }
    }
    this.#rebuild();
  }

  /** Whether a line matches the query in its message or its metadata (always false with no query). */
  test(entry) {
    return this.#test !== null && entry.kind === Kind.record
      && (this.#test(entry.text) || (entry.metaText !== '' && entry.metaText !== undefined && this.#test(entry.metaText)));
  }

  /** `[start, end]` pairs of the matches in `text`. */
  ranges(text) {
    const ranges = [];
    if (!this.#global) return ranges;
    const pattern = this.#global;
    pattern.lastIndex = 0;
    let match;
    while (ranges.length < MAX_RANGES_PER_LINE && (match = pattern.exec(text)) !== null) {
      if (match[0].length === 0) {
        pattern.lastIndex++;
        continue;
      }
      ranges.push([match.index, match.index + match[0].length]);
    }
    return ranges;
  }

  /** The id of the current match, or -1. */
  get currentId() {
    return this.current >= 0 ? this.matches[this.current] : -1;
  }

  /** Moves to the next match after line `fromId` (or after the current match); returns its id or -1. */
  next(fromId = this.currentId) {
    if (this.matches.length === 0) return -1;
    const index = fromId < 0 ? 0 : lowerBound(this.matches, fromId + 1);
    this.current = index >= this.matches.length ? 0 : index;
    return this.matches[this.current];
  }

  /** Moves to the previous match before line `fromId` (or before the current match). */
  previous(fromId = this.currentId) {
    if (this.matches.length === 0) return -1;
    const index = fromId < 0 ? this.matches.length - 1 : lowerBound(this.matches, fromId) - 1;
    this.current = index < 0 ? this.matches.length - 1 : index;
    return this.matches[this.current];
  }

  #rebuild() {
    const previousId = this.currentId;
    this.matches = [];
    this.current = -1;
    if (!this.#test) return;
    const store = this.#store;
    for (const id of store.view) {
      if (this.test(store.entry(id))) this.matches.push(id);
    }
    if (previousId >= 0) {
      const index = lowerBound(this.matches, previousId);
      if (index < this.matches.length) this.current = index;
    }
  }

  #appended(ids) {
    if (!this.#test) return;
    const store = this.#store;
    for (const id of ids) if (this.test(store.entry(id))) this.matches.push(id);
  }

  #trimmed(base) {
    const cut = lowerBound(this.matches, base);
    if (!cut) return;
    this.matches.splice(0, cut);
    if (this.current >= 0) this.current = this.current >= cut ? this.current - cut : -1;
  }
}
