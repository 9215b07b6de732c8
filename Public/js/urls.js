// URLs of the gateway's API and streams, relative to the page (so the UI also works under a sub-path
// behind a proxy), carrying the page's `access_token` query parameter when there is one.

const pageParams = new URLSearchParams(location.search);

/** Worker ids as the protocol allows them. */
export const WORKER_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** The page's query parameter `name`, or `null`. */
export function pageParam(name) {
  return pageParams.get(name);
}

function resolve(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
  }
  const token = pageParams.get('access_token');
  if (token) url.searchParams.set('access_token', token);
  return url;
}

/** An HTTP URL (string) of the gateway, e.g. `apiURL('api/workers')`. */
export function apiURL(path, params) {
  return resolve(path, params).href;
}

/** A link to another page of the UI (`console.html`, `./`), keeping the token. */
export function pageURL(path, params) {
  return resolve(path, params).href;
}

/** Run epochs (the gateway's names of a worker's runs: 1–32 characters of `a-z0-9`). */
export const EPOCH = /^[a-z0-9]{1,32}$/;

/** The API path of one run of a worker (`api/workers/ID/runs/EPOCH`), relative to the page. */
export function runPath(workerId, epoch) {
  return `api/workers/${workerId}/runs/${encodeURIComponent(epoch)}`;
}

/**
 * The WebSocket URL of a worker's stream: its live stream (`ws/workers/ID`, which follows the worker
 * from run to run), or with `epoch` the stream of that one run (`ws/workers/ID/runs/EPOCH`).
 */
export function streamURL(workerId, params, epoch = null) {
  const path = epoch ? `ws/workers/${workerId}/runs/${encodeURIComponent(epoch)}` : `ws/workers/${workerId}`;
  const url = resolve(path, params);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/** The worker's console page (following its current run), or with `run` the console of that run. */
export function consoleURL(workerId, run = null) {
  return pageURL('console.html', { worker: workerId, run });
}

/** The WebSocket URL of `path` (`ws/streams`, …) with `params`. */
export function socketURL(path, params) {
  const url = resolve(path, params);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/**
 * Worker selections: ids, and prefix patterns (`strategy-*`, `*` for every worker), as
 * `/ws/streams?workers=` takes them (docs/PROTOCOL.md, "Many workers on one socket").
 */
export const WORKER_PATTERN = /^(?:[A-Za-z0-9][A-Za-z0-9._:-]{0,126})?\*$/;

/** Whether `name` is a worker id or a prefix pattern. */
export function isSelection(name) {
  return WORKER_ID.test(name) || WORKER_PATTERN.test(name);
}

/** Whether worker `id` is selected by `name` (an id or a prefix pattern). */
export function selects(name, id) {
  return name.endsWith('*') ? id.startsWith(name.slice(0, -1)) : name === id;
}

/** The merged console of `names` (ids and patterns). */
export function mergedConsoleURL(names) {
  return pageURL('console.html', { workers: names.join(',') });
}
