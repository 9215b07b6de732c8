// Draws one log line into an element: seq (a permalink), time, level, logger, the message with its
// ANSI colours and search highlights, and the record's metadata as `key=value` chips. A message with
// several lines (a Python traceback) shows all of them, one under the other after the line's prefix; a
// long one is collapsed to its first and last lines around an expander. Shared by the console and the
// dashboard's mini-consoles.
//
// Unless lines are wrapped, a row's height is known without drawing it: `rowCount(entry, collapse)`
// lines, exactly what `drawLine` draws.

import { ansiRuns } from './ansi.js';
import { workerColorIndex } from './merge.js';
import { LEVELS, formatFullTime, formatTime } from './levels.js';
import { Kind } from './store.js';

const KIND_CLASS = ['record', 'gap', 'restart', 'end', 'note'];

/**
 * How multi-line messages are shown: a message of more than `after` lines shows its first `head` and
 * last `tail` lines, and between them a line "⋯ N more lines" (a button when `expandable`, which shows
 * every line, and then a last line to collapse it again). A Python traceback keeps its first lines and
 * its last frame with the exception.
 */
export const COLLAPSE = Object.freeze({ after: 14, head: 8, tail: 3, expandable: true });
/** The dashboard's mini-consoles: the first and the last line of a longer message. */
export const MINI_COLLAPSE = Object.freeze({ after: 3, head: 1, tail: 1, expandable: false });

/** Metadata values longer than this are cut on screen (search and exports use all of them). */
const MAX_VALUE_CHARS = 200;

/** The line numbers (0-based) of `entry`'s message that are shown, and where the expander goes. */
function shownLines(entry, collapse) {
  const count = entry.nl ?? 1;
  if (count <= collapse.after) return { lines: count, head: count, hidden: 0, open: false };
  if (collapse.expandable && entry.open) return { lines: count, head: count, hidden: 0, open: true };
  return { lines: collapse.head + collapse.tail, head: collapse.head, hidden: count - collapse.head - collapse.tail, open: false };
}

/** The number of lines `drawLine` draws for `entry` (unwrapped). */
export function rowCount(entry, collapse = COLLAPSE) {
  if (entry.kind !== Kind.record) return 1;
  const count = entry.nl ?? 1;
  if (count <= collapse.after) return count;
  if (collapse.expandable && entry.open) return count + 1;
  return collapse.head + 1 + collapse.tail;
}

/** Whether `entry`'s message has lines collapsed away (or is expanded and can be collapsed again). */
export function isCollapsible(entry, collapse = COLLAPSE) {
  return entry.kind === Kind.record && (entry.nl ?? 1) > collapse.after && collapse.expandable;
}

/** Whether text position `index` of `entry` is on a line hidden by collapsing. */
export function isHidden(entry, index, collapse = COLLAPSE) {
  const shown = shownLines(entry, collapse);
  if (!shown.hidden) return false;
  const spans = entry.spans;
  const firstHidden = spans[2 * shown.head];
  const firstTail = spans[2 * (shown.head + shown.hidden)];
  return index >= firstHidden && index < firstTail;
}

/** `[start, end)` in `entry.text` of line `line` of its message (without its newline). */
function lineSpan(entry, line) {
  if (entry.spans) return [entry.spans[2 * line], entry.spans[2 * line + 1]];
  return [0, entry.text.length];
}

/**
 * About how many lines `entry` takes when its lines wrap at `columns` characters (the prefix —
 * seq, time, level, logger — takes `prefix` of them on every line): for a row's height before it is
 * measured.
 */
export function estimateRows(entry, { collapse = COLLAPSE, columns = 120, prefix = 0, showMeta = true, maxChars = 4000 } = {}) {
  if (entry.kind !== Kind.record) return 1; // marker lines do not wrap
  const width = Math.max(10, columns - prefix);
  const shown = shownLines(entry, collapse);
  const meta = showMeta && entry.metaText ? entry.metaText.length + 2 : 0;
  let rows = (shown.hidden ? 1 : 0) + (shown.open ? 1 : 0);
  for (let k = 0; k < shown.lines; k++) {
    const line = k < shown.head ? k : k + shown.hidden;
    const [start, end] = lineSpan(entry, line);
    let chars = Math.min(end - start, maxChars + 24);
    if (k === shown.lines - 1) chars += meta;
    rows += Math.max(1, Math.ceil(chars / width));
  }
  return rows;
}

/** The width in characters of a line's prefix (seq, time, level, logger), as `estimateRows` wants it. */
export function prefixColumns(entry, { timeMode = 'local', showSeq = true, showLogger = true } = {}) {
  if (entry.kind !== Kind.record) return 16;
  return (entry.worker ? Math.min(entry.worker.length, 24) + 2 : 0) + (showSeq ? 12 : 0) + (timeMode === 'off' ? 0 : 13) + 9 + (showLogger && entry.logger ? entry.logger.length + 3 : 0) + 2;
}

/** Makes a styled segment element (or a text node) for `text`. */
function segment(text, run, highlighted) {
  if (!run && !highlighted) return document.createTextNode(text);
  const element = document.createElement(highlighted ? 'mark' : 'span');
  if (run) {
    element.className = run.className;
    if (run.color) element.style.color = run.color;
    if (run.background) element.style.backgroundColor = run.background;
  }
  element.textContent = text;
  return element;
}

/**
 * Appends `text.slice(from, to)` to `parent`, coloured by `runs` (ANSI) and with `ranges` highlighted
 * (both in positions of `text`, sorted).
 */
function appendText(parent, text, from, to, runs, ranges) {
  if (to <= from) return;
  if (!runs?.length && !ranges.length) {
    parent.append(text.slice(from, to));
    return;
  }
  const cuts = new Set([from, to]);
  const clip = (position) => Math.max(from, Math.min(to, position));
  for (const run of runs ?? []) if (run.end > from && run.start < to) cuts.add(clip(run.start)).add(clip(run.end));
  for (const [start, end] of ranges) if (end > from && start < to) cuts.add(clip(start)).add(clip(end));
  const points = [...cuts].sort((a, b) => a - b);
  let runIndex = 0;
  let rangeIndex = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const start = points[i];
    const end = points[i + 1];
    if (end <= start) continue;
    while (runs && runIndex < runs.length && runs[runIndex].end <= start) runIndex++;
    while (rangeIndex < ranges.length && ranges[rangeIndex][1] <= start) rangeIndex++;
    const run = runs && runIndex < runs.length && runs[runIndex].start <= start ? runs[runIndex] : null;
    const highlighted = rangeIndex < ranges.length && ranges[rangeIndex][0] <= start;
    parent.append(segment(text.slice(start, end), run, highlighted));
  }
}

function ansiOf(entry) {
  if (entry.runs === undefined) entry.runs = entry.raw !== undefined && entry.raw !== entry.text ? ansiRuns(entry.raw) : null;
  return entry.runs;
}

/** Fills `container` with `entry.text` (its first `maxChars`), coloured by its ANSI runs and with `ranges` highlighted. */
export function fillMessage(container, entry, ranges = [], maxChars = Infinity) {
  container.replaceChildren();
  appendText(container, entry.text, 0, Math.min(entry.text.length, maxChars), ansiOf(entry), ranges);
}

/** `text` on one line: line breaks shown as `↵` (one character each, so positions in it stay the same). */
function oneLine(text) {
  return text.includes('\n') || text.includes('\r') ? text.replace(/[\n\r]/g, '↵') : text;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The expander's line: "⋯ N more lines" (a button in the console, text in the mini-consoles). */
function expander(entry, shown, collapse) {
  const text = shown.open ? '▴ fewer lines' : `⋯ ${shown.hidden.toLocaleString('en-US')} more line${shown.hidden === 1 ? '' : 's'}`;
  if (!collapse.expandable) return element('span', 'more', text);
  const button = element('button', shown.open ? 'more less' : 'more', text);
  button.type = 'button';
  button.title = shown.open ? 'Show only the first and last lines of this message' : 'Show every line of this message';
  button.setAttribute('aria-expanded', String(shown.open));
  return button;
}

/** Draws the message of `entry` (its shown lines, the expander) into `container`. */
function drawMessage(container, entry, ranges, maxChars, collapse) {
  const text = entry.text;
  const runs = ansiOf(entry);
  const shown = shownLines(entry, collapse);
  for (let k = 0; k < shown.lines; k++) {
    if (k > 0 && k !== shown.head) container.append('\n');
    if (k === shown.head && shown.hidden) container.append(expander(entry, shown, collapse));
    const line = k < shown.head ? k : k + shown.hidden;
    const [start, end] = lineSpan(entry, line);
    const cut = Math.min(end, start + maxChars);
    appendText(container, text, start, cut, runs, ranges);
    if (cut < end) container.append(element('span', 'cut', ` … ${(end - cut).toLocaleString('en-US')} more characters`));
  }
}

/** Appends `text` (at position `offset` of the searched text) with the parts in `ranges` highlighted. */
function appendPlain(parent, text, offset, ranges) {
  appendText(parent, text, 0, text.length, null, ranges
    .filter(([start, end]) => end > offset && start < offset + text.length)
    .map(([start, end]) => [start - offset, end - offset]));
}

/** The metadata chips of `entry` (`ranges`: search highlights in `entry.metaText`). */
function drawMetadata(entry, ranges) {
  const box = element('span', 'chips');
  let offset = 0;
  for (const [key, value] of Object.entries(entry.metadata)) {
    const chip = element('span', 'kv');
    chip.dataset.key = key;
    chip.dataset.value = value;
    chip.title = `${key}=${value} — click to show only the lines with this ${key}`;
    if (key === 'stream') chip.classList.add(`stream-${value.replace(/[^A-Za-z0-9_-]/g, '')}`);
    const k = element('span', 'k');
    appendPlain(k, oneLine(key), offset, ranges);
    const v = element('span', 'v');
    const shown = oneLine(value.length > MAX_VALUE_CHARS ? `${value.slice(0, MAX_VALUE_CHARS)}…` : value);
    appendPlain(v, shown, offset + key.length + 1, ranges);
    chip.append(k);
    appendPlain(chip, '=', offset + key.length, ranges);
    chip.append(v);
    box.append(chip);
    offset += key.length + 1 + value.length + 1;
  }
  return box;
}

/**
 * Draws `entry` into the row element `row`; returns the number of lines drawn (its height in lines,
 * unwrapped).
 * `options`: `timeMode` ('local' | 'utc' | 'off'), `ranges` (search highlights in the message),
 * `metaRanges` (in `entry.metaText`), `showSeq`, `showLogger`, `showMeta` (metadata chips), `collapse`
 * (`COLLAPSE`, `MINI_COLLAPSE`), `maxChars` (longer message lines are cut on screen; search, copy of the
 * full line and exports use all of it).
 */
export function drawLine(row, entry, options) {
  const {
    timeMode = 'local', ranges = [], metaRanges = [], showSeq = true, showLogger = true, showMeta = true,
    collapse = COLLAPSE, maxChars = 4000,
  } = options;
  row.dataset.id = entry.id;
  row.dataset.run = entry.run;
  if (entry.worker) row.dataset.worker = entry.worker;
  else delete row.dataset.worker;
  if (entry.kind !== Kind.record) {
    row.className = `line marker ${KIND_CLASS[entry.kind]}`;
    delete row.dataset.seq;
    delete row.dataset.level;
    delete row.dataset.lines;
    row.textContent = entry.text;
    if (entry.worker) row.classList.add(`wc-${workerColorIndex(entry.worker)}`);
    if (entry.kind === Kind.gap) {
      row.dataset.from = entry.from;
      row.dataset.to = entry.to;
    }
    return 1;
  }
  const lines = entry.nl ?? 1;
  let className = `line lv-${LEVELS[entry.lv] ?? 'INFO'}`;
  if (lines > 1) className += ' multi';
  if (entry.metadata?.stream === 'stderr') className += ' stderr';
  row.className = className;
  row.dataset.seq = entry.seq;
  row.dataset.level = entry.level;
  if (lines > 1) row.dataset.lines = lines;
  else delete row.dataset.lines;
  const parts = [];
  if (entry.worker) {
    // A merged console: the line's worker, in the worker's colour.
    const tag = element('span', `wk wc-${workerColorIndex(entry.worker)}`, entry.worker);
    tag.title = `worker ${entry.worker}`;
    parts.push(tag);
  }
  if (showSeq) {
    const link = document.createElement('a');
    link.className = 'seq';
    link.href = entry.worker ? `#L${entry.worker}:${entry.seq}` : `#L${entry.seq}`;
    link.textContent = entry.seq;
    link.title = entry.metadata?.stream === 'stderr' ? 'permalink to this line (stderr)' : 'permalink to this line';
    parts.push(link);
  }
  if (timeMode !== 'off') {
    const time = element('span', 'ts', formatTime(entry.ts, entry.ms, timeMode));
    time.title = formatFullTime(entry.ts, entry.ms, timeMode);
    parts.push(time);
  }
  parts.push(element('span', 'lv', oneLine(entry.level)));
  if (showLogger && entry.logger) {
    const logger = element('span', 'lg', oneLine(entry.logger));
    if (entry.source) logger.title = entry.source;
    parts.push(logger);
  }
  const message = element('span', 'msg');
  drawMessage(message, entry, ranges, maxChars, collapse);
  if (showMeta && entry.metadata && entry.metaText) message.append(drawMetadata(entry, metaRanges));
  const shown = shownLines(entry, collapse);
  if (shown.open) message.append(expander(entry, shown, collapse));
  parts.push(message);
  row.replaceChildren(...parts);
  return rowCount(entry, collapse);
}

/** The line as plain text (for exports and copies): time, level, logger, message without ANSI codes, metadata. */
export function lineText(entry, timeMode = 'utc') {
  if (entry.kind !== Kind.record) return entry.text;
  const time = timeMode === 'off' ? '' : `${formatFullTime(entry.ts, entry.ms, timeMode)} `;
  const worker = entry.worker ? `${entry.worker} ` : '';
  return `${worker}${time}${entry.level.padEnd(8)} ${entry.logger ? `[${entry.logger}] ` : ''}${entry.text}${entry.metaText ? `  ${entry.metaText}` : ''}`;
}
