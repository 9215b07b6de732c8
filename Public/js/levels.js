// Log levels and timestamps as the pages show them.

/** The protocol's levels, least severe first. */
export const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'NOTICE', 'WARNING', 'ERROR', 'CRITICAL'];
export const ERROR_LEVEL = LEVELS.indexOf('ERROR');
const LEVEL_INDEX = new Map(LEVELS.map((name, index) => [name, index]));

/** The index of a level name (unknown names count as INFO). */
export function levelIndex(name) {
  return LEVEL_INDEX.get(name) ?? 2;
}

/** A mask with every level shown. */
export const ALL_LEVELS = (1 << LEVELS.length) - 1;

/** Milliseconds since the epoch of an ISO-8601 timestamp (microseconds are cut to milliseconds). */
export function timestampMillis(iso) {
  if (typeof iso !== 'string') return NaN;
  const dot = iso.indexOf('.');
  const text = dot > 0 && iso.length > dot + 4 ? `${iso.slice(0, dot + 4)}Z` : iso;
  return Date.parse(text);
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** `HH:MM:SS.mmm` of a timestamp, in UTC or local time; `''` for `off`. */
export function formatTime(iso, millis, mode) {
  if (mode === 'utc') return iso.length >= 23 ? iso.slice(11, 23) : iso;
  if (mode === 'off' || Number.isNaN(millis)) return '';
  const d = new Date(millis);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** The full date and time (for tooltips and exports). */
export function formatFullTime(iso, millis, mode) {
  if (mode !== 'local' || Number.isNaN(millis)) return iso;
  const d = new Date(millis);
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${formatTime(iso, millis, 'local')}`
    + ` ${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
}
