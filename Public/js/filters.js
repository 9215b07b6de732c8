// The console's search box holds text to search for and metadata filters: words `key:value`
// (`symbol:002050.SZ`, `stream:stderr`) keep only the records whose metadata has that value; the rest
// of the box is the text searched (in messages and metadata) and highlighted.
//
//   key:value      metadata `key` is `value` (`*` in a value matches any characters: `symbol:0020*`)
//   key:"a value"  a value with spaces (`\"` and `\\` inside quotes)
//   key:*          records that have `key`
//   -key:value     records whose `key` is not `value` (or that have no `key`)
//
// Keys start with a letter or `_` (so `09:31` is text, and `http://…` too: a value does not start
// with `/`). Filters on the same key are alternatives (`stream:stdout stream:stderr`), filters on
// different keys must all hold. With the regex flag values are regular expressions (matching the whole
// value); without the case flag values and keys are compared ignoring case.

const FILTER = /(^|\s)(-?)([A-Za-z_][\w.-]*):("(?:[^"\\]|\\.)*"|[^\s"/]\S*)(?=\s|$)/g;

/** Splits the search box's `query` into `{text, filters: [{key, value, negate}]}`. */
export function parseQuery(query) {
  const filters = [];
  const text = query.replace(FILTER, (whole, space, negate, key, value) => {
    if (value.startsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    filters.push({ key, value, negate: negate === '-' });
    return '';
  });
  return { text: filters.length ? text.trim() : query, filters };
}

/** The words of `filters` as they are typed in the box. */
export function formatFilter({ key, value, negate = false }) {
  const plain = /^[^\s"/][^\s]*$/.test(value) && !value.startsWith('"');
  return `${negate ? '-' : ''}${key}:${plain ? value : `"${value.replace(/["\\]/g, '\\$&')}"`}`;
}

function valueTest(value, { regex, caseSensitive }) {
  if (value === '*') return () => true;
  const flags = caseSensitive ? '' : 'i';
  const source = regex ? value : value.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  const pattern = new RegExp(`^(?:${source})$`, flags);
  return (text) => pattern.test(text);
}

/**
 * A predicate on entries (`entry.metadata`) for `filters`, or `null` when there are none.
 * Throws on a bad regular expression (with the regex flag).
 */
export function metadataFilter(filters, { regex = false, caseSensitive = false } = {}) {
  if (!filters.length) return null;
  const groups = new Map();
  for (const filter of filters) {
    const key = caseSensitive ? filter.key : filter.key.toLowerCase();
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { include: [], exclude: [] }));
    (filter.negate ? group.exclude : group.include).push(valueTest(filter.value, { regex, caseSensitive }));
  }
  const lookup = (metadata, key) => {
    if (!metadata) return undefined;
    if (caseSensitive) return Object.hasOwn(metadata, key) ? metadata[key] : undefined;
    for (const name in metadata) if (name.toLowerCase() === key) return metadata[name];
    return undefined;
  };
  const predicate = (entry) => {
    for (const [key, group] of groups) {
      const value = lookup(entry.metadata, key);
      if (group.include.length && (value === undefined || !group.include.some((test) => test(value)))) return false;
      if (value !== undefined && group.exclude.some((test) => test(value))) return false;
    }
    return true;
  };
  return predicate;
}
