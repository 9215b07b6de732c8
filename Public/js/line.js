// Draws one log line into an element: seq (a permalink), time, level, logger and the message with its
// ANSI colours and search highlights. Shared by the console and the dashboard's mini-consoles.

import { ansiRuns } from './ansi.js';
import { LEVELS, formatFullTime, formatTime } from './levels.js';
import { Kind } from './store.js';

const KIND_CLASS = ['record', 'gap', 'restart', 'end', 'note'];

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

/** Fills `container` with `entry.text`, coloured by its ANSI runs and with `ranges` highlighted. */
export function fillMessage(container, entry, ranges = [], maxChars = Infinity) {
  const text = entry.text.length > maxChars ? entry.text.slice(0, maxChars) : entry.text;
  if (entry.runs === undefined) entry.runs = entry.raw !== undefined && entry.raw !== text ? ansiRuns(entry.raw) : null;
  const runs = entry.runs;
  if (!runs?.length && !ranges.length) {
    container.textContent = text;
    return;
  }
  const cuts = new Set([0, text.length]);
  for (const run of runs ?? []) cuts.add(Math.min(run.start, text.length)).add(Math.min(run.end, text.length));
  for (const [start, end] of ranges) cuts.add(Math.min(start, text.length)).add(Math.min(end, text.length));
  const points = [...cuts].sort((a, b) => a - b);
  const fragment = document.createDocumentFragment();
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
    fragment.append(segment(text.slice(start, end), run, highlighted));
  }
  container.replaceChildren(fragment);
}

/**
 * Draws `entry` into the row element `row`.
 * `options`: `timeMode` ('local' | 'utc' | 'off'), `ranges` (search highlights), `showSeq`, `showLogger`,
 * `maxChars` (longer messages are cut on screen; search, copy of the full line and exports use all of it).
 */
export function drawLine(row, entry, options) {
  const { timeMode = 'local', ranges = [], showSeq = true, showLogger = true, maxChars = 4000 } = options;
  row.dataset.id = entry.id;
  row.dataset.run = entry.run;
  if (entry.kind !== Kind.record) {
    row.className = `line marker ${KIND_CLASS[entry.kind]}`;
    delete row.dataset.seq;
    delete row.dataset.level;
    row.textContent = entry.text;
    if (entry.kind === Kind.gap) {
      row.dataset.from = entry.from;
      row.dataset.to = entry.to;
    }
    return;
  }
  row.className = `line lv-${LEVELS[entry.lv] ?? 'INFO'}`;
  row.dataset.seq = entry.seq;
  row.dataset.level = entry.level;
  const parts = [];
  if (showSeq) {
    const link = document.createElement('a');
    link.className = 'seq';
    link.href = `#L${entry.seq}`;
    link.textContent = entry.seq;
    link.title = 'permalink to this line';
    parts.push(link);
  }
  if (timeMode !== 'off') {
    const time = document.createElement('span');
    time.className = 'ts';
    time.textContent = formatTime(entry.ts, entry.ms, timeMode);
    time.title = formatFullTime(entry.ts, entry.ms, timeMode);
    parts.push(time);
  }
  const level = document.createElement('span');
  level.className = 'lv';
  level.textContent = entry.level;
  parts.push(level);
  if (showLogger && entry.logger) {
    const logger = document.createElement('span');
    logger.className = 'lg';
    logger.textContent = entry.logger;
    if (entry.source) logger.title = entry.source;
    parts.push(logger);
  }
  const message = document.createElement('span');
  message.className = 'msg';
  fillMessage(message, entry, ranges, maxChars);
  parts.push(message);
  row.replaceChildren(...parts);
}

/** The line as plain text (for exports and copies): time, level, logger, message without ANSI codes. */
export function lineText(entry, timeMode = 'utc') {
  if (entry.kind !== Kind.record) return entry.text;
  const time = timeMode === 'off' ? '' : `${formatFullTime(entry.ts, entry.ms, timeMode)} `;
  return `${time}${entry.level.padEnd(8)} ${entry.logger ? `[${entry.logger}] ` : ''}${entry.text}`;
}
