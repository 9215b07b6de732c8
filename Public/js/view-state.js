// What a console shows, in its URL: the search box (text and `key:value` metadata filters), the
// regex, case and "only matching lines" flags, the levels shown and the time display — so that a link
// shows what its sender saw, and each tab keeps its own view (localStorage is shared by every tab).
//
//   q=TEXT            the search box, as typed (`q=stream:stderr Traceback`)
//   regex=1 case=1 only=1
//   levels=WARNING,ERROR,CRITICAL   the levels shown (all when absent; `none`)
//   time=utc|off      (local when absent)
//
// A URL naming any of these describes the whole view: what it leaves out is at its default. A URL
// naming none of them (a console opened from the dashboard) takes the user's last choices. Parameters
// at their default are left out of the URL. The page's other parameters (`worker`, `run`, `tail`,
// `access_token`, …) are kept as they are.

import { ALL_LEVELS, LEVELS } from './levels.js';

export const TIME_MODES = ['local', 'utc', 'off'];

/** The view with nothing filtered. */
export const DEFAULT_VIEW = Object.freeze({ q: '', regex: false, caseSensitive: false, only: false, levels: ALL_LEVELS, time: 'local' });

const PARAMS = ['q', 'regex', 'case', 'only', 'levels', 'time'];

/** Whether `params` (URLSearchParams) name any part of the view. */
export function hasViewState(params) {
  return PARAMS.some((name) => params.has(name));
}

function flag(value) {
  return value !== null && value !== '0' && value.toLowerCase() !== 'false';
}

/** A level mask from `WARNING,ERROR,CRITICAL` (`none`: no level; unknown names are ignored; none known: every level). */
export function parseLevels(text) {
  if (text === null || text === undefined) return ALL_LEVELS;
  if (text.trim().toLowerCase() === 'none') return 0;
  let mask = 0;
  for (const name of text.split(/[,\s]+/)) {
    const index = LEVELS.indexOf(name.trim().toUpperCase());
    if (index >= 0) mask |= 1 << index;
  }
  return mask || ALL_LEVELS;
}

/** `WARNING,ERROR,CRITICAL` for a level mask (`none` for no level). */
export function formatLevels(mask) {
  return LEVELS.filter((_, index) => mask & (1 << index)).join(',') || 'none';
}

/** The view `params` describe; `fallback` (the user's last choices) when they describe none. */
export function readViewState(params, fallback = DEFAULT_VIEW) {
  if (!hasViewState(params)) return { ...DEFAULT_VIEW, ...fallback };
  const time = params.get('time');
  return {
    q: params.get('q') ?? '',
    regex: flag(params.get('regex')),
    caseSensitive: flag(params.get('case')),
    only: flag(params.get('only')),
    levels: parseLevels(params.get('levels')),
    time: TIME_MODES.includes(time) ? time : DEFAULT_VIEW.time,
  };
}

/** Puts `view` in `url`'s query (a `URL`, changed in place): what differs from the default. */
export function writeViewState(url, view) {
  const params = url.searchParams;
  const set = (name, value, isDefault) => {
    if (isDefault) params.delete(name);
    else params.set(name, value);
  };
  set('q', view.q, view.q === '');
  set('regex', '1', !view.regex);
  set('case', '1', !view.caseSensitive);
  set('only', '1', !view.only);
  const levels = view.levels & ALL_LEVELS;
  set('levels', formatLevels(levels), levels === ALL_LEVELS);
  set('time', view.time, view.time === DEFAULT_VIEW.time || !TIME_MODES.includes(view.time));
  return url;
}

/** Whether two views are the same. */
export function sameView(a, b) {
  return a.q === b.q && a.regex === b.regex && a.caseSensitive === b.caseSensitive && a.only === b.only
    && (a.levels & ALL_LEVELS) === (b.levels & ALL_LEVELS) && a.time === b.time;
}
